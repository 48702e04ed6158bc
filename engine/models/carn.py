"""CARN: the convolutional anchored regression network, as Stoian describes it.

Paper: Y. Li, E. Agustsson, S. Gu, R. Timofte, L. Van Gool, "CARN: Convolutional Anchored Regression
Network for Fast and Accurate Single Image Super-Resolution", ECCV Workshops (PIRM) 2018; described,
and benchmarked on fastMRI knee x4, by I.-S. Stoian, "Single image super-resolution for medical
imaging", final project report, ENS Paris-Saclay (paper 000, undated, c. 2020), Sec. 4.1.

A regression block: a 3x3 regressor conv c -> m*d', a 3x3 anchor conv c -> m, softmax over the m
anchors, the softmax-weighted sum of the m regressors (d' channels), plus the block input (residual;
d' = c). Feature extraction (3x3 convs + ReLU) comes first, then the regression blocks, then a 3x3
conv to s^2 channels and a pixel shuffle. Sizes are named blocks-inner-anchors as in Stoian's
Table 1; class defaults d' = m = 16 (Stoian: "CARN uses, by default, d' = 16 and m = 16") with 9 blocks
(Table 1's deepest CARN).

Our reading where the figures are missing: two feature-extraction convs of d' channels; the anchor
softmax is taken over the anchor axis per pixel; no global skip beyond the bicubic one.
Table 1's counts cannot be reproduced by any "B identical blocks + fixed layers" network: between its
rows the count grows by exactly one 3x3-regressor block per block (72*73 = 5,256 at 8-8; 272*145 =
39,440 at 16-16), but CARN-1 equals what a 2-block model would give, and the fixed part it implies
(~57 k at 8-8) is far larger than any feature extraction + reconstruction at 8 channels. We record
Table 1 and do not assert it.

Departures: single channel; the output is a residual over bicubic upsampling (departure: makes short
CPU training converge) with the reconstruction conv zero-initialised, so the untrained network is
bicubic; L2 regularisation of the convs is a training-time choice (weight decay), not part of the module.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.blocks import AnchoredRegression, FixedScaleNet, SubPixelConv, conv2d, zero_init_
from engine.models.registry import ModelCard, register_model


class CARNBlock(nn.Module):
    """x + anchored regression of x (3x3 regressors)."""

    def __init__(self, inner: int, anchors: int):
        super().__init__()
        self.regression = AnchoredRegression(inner, inner, anchors, 3, weight_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.regression(x)


@register_model(
    ModelCard(
        name="carn",
        title="CARN (convolutional anchored regression network)",
        paper="Li, Agustsson, Gu, Timofte, Van Gool, 'CARN: Convolutional Anchored Regression Network for "
        "Fast and Accurate Single Image Super-Resolution', ECCVW (PIRM) 2018; as described by Stoian "
        "(ENS Paris-Saclay report)",
        ship_args={"blocks": 9, "inner": 8, "anchors": 8},
        paper_params="Stoian Table 1: CARN-9-8-8 104,224; CARN-9-16-16 441,344 (x4; not reproducible, "
        "see docs/MODELS.md)",
        departures="Single channel; residual over bicubic (departure: makes short CPU training converge) "
        "with a zero-initialised reconstruction; two feature-extraction convs (figure missing: our "
        "reading).",
    )
)
class CARN(FixedScaleNet):
    """Feature extraction, residual anchored-regression blocks, sub-pixel reconstruction."""

    def __init__(self, scale: int, blocks: int = 9, inner: int = 16, anchors: int = 16,
                 extract_layers: int = 2, channels: int = 1):
        super().__init__(scale)
        layers: list[nn.Module] = []
        for i in range(extract_layers):
            layers += [conv2d(channels if i == 0 else inner, inner), nn.ReLU()]
        self.extract = nn.Sequential(*layers)
        self.body = nn.Sequential(*[CARNBlock(inner, anchors) for _ in range(blocks)])
        self.reconstruct = SubPixelConv(inner, channels, self.scale)
        self.blocks, self.extract_layers = blocks, extract_layers
        zero_init_(self.reconstruct.conv)

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(self.body(self.extract(lr)))

    @property
    def lr_radius(self) -> int:
        return self.extract_layers + self.blocks + 1
