"""New CARN: Stoian's cheaper CARN (1x1 regressors, weight-normalised convs, interleaved features).

Paper: I.-S. Stoian, "Single image super-resolution for medical imaging", final project report,
ENS Paris-Saclay (paper 000, undated, c. 2020), Sec. 4.2, built on Li et al.'s CARN (ECCVW 2018) and
Yu et al.'s WDSR ideas. Changes to CARN: the regressor conv is 1x1 instead of 3x3 (~9x fewer
operations), every convolution is weight-normalised (no L2 regularisation), each regression block
gains a linear 3x3 feature conv, and feature extraction is interleaved with the regression blocks.
Sizes are named blocks-inner-anchors (Table 1); the default is her best, New CARN-13-8-8.

Our reading where Fig. 3/4 are missing: one 3x3 head conv (1 -> d'); each block is
x + F(R(x)) with R the anchored regression (1x1 regressors d' -> m*d', 3x3 anchors d' -> m, softmax)
and F the linear 3x3 feature conv, which is the "interleaved" feature extraction feeding the next
block; a 3x3 conv to s^2 channels and a pixel shuffle reconstruct. Table 1's New CARN counts are
not reproducible (they grow between rows by exactly one *3x3*-regressor CARN block per block, and
the fixed part they imply is negative, e.g. 15,592 - 3 x 5,256 < 0 for 3-8-8); we record them only.

Departures: single channel; the output is a residual over bicubic upsampling (departure: makes short
CPU training converge) with the reconstruction's weight-norm gain zero-initialised, so the untrained
network is bicubic.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.blocks import AnchoredRegression, FixedScaleNet, SubPixelConv, conv2d, zero_init_
from engine.models.registry import ModelCard, register_model


class NewCARNBlock(nn.Module):
    """x + linear 3x3 feature conv of the anchored regression (1x1 regressors) of x; all weight-normalised."""

    def __init__(self, inner: int, anchors: int):
        super().__init__()
        self.regression = AnchoredRegression(inner, inner, anchors, 1, weight_norm=True)
        self.features = conv2d(inner, inner, weight_norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.features(self.regression(x))


@register_model(
    ModelCard(
        name="new_carn",
        title="New CARN (1x1 regressors, weight norm, interleaved features)",
        paper="Stoian, 'Single image super-resolution for medical imaging', final project report, "
        "ENS Paris-Saclay (c. 2020), building on Li et al., CARN, ECCVW 2018",
        ship_args={"blocks": 13, "inner": 8, "anchors": 8},
        paper_params="Stoian Table 1: New CARN-13-8-8 68,152 (x4; not reproducible, see docs/MODELS.md)",
        departures="Single channel; residual over bicubic (departure: makes short CPU training converge) "
        "with a zero-gain reconstruction; block layout x + F(R(x)) is our reading of the missing figures.",
    )
)
class NewCARN(FixedScaleNet):
    """Head conv, residual blocks of (1x1-regressor anchored regression -> linear 3x3), sub-pixel tail."""

    def __init__(self, scale: int, blocks: int = 13, inner: int = 8, anchors: int = 8, channels: int = 1):
        super().__init__(scale)
        self.head = conv2d(channels, inner, weight_norm=True)
        self.body = nn.Sequential(*[NewCARNBlock(inner, anchors) for _ in range(blocks)])
        self.reconstruct = SubPixelConv(inner, channels, self.scale, weight_norm=True)
        self.blocks = blocks
        zero_init_(self.reconstruct.conv)

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(self.body(self.head(lr)))

    @property
    def lr_radius(self) -> int:
        return 1 + 2 * self.blocks + 1
