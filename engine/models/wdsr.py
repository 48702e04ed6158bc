"""WDSR-A: wide-activation residual blocks with weight normalisation and a 5x5 skip branch.

Paper: J. Yu, Y. Fan, J. Yang, N. Xu, Z. Wang, X. Wang, T. Huang, "Wide Activation for Efficient and
Accurate Image Super-Resolution", arXiv:1808.08718, 2018 (NTIRE 2018 winner). Applied to brain MRI by
Ceccarelli (paper 001), whose table gives the configuration used as our class defaults: conv 3->32,
32 residual blocks of 3x3 convs 32->192->32 (expansion 6), a 3x3 conv to 3*s^2 before the shuffle
and a 5x5 conv from the input to 3*s^2 (3,557,232 weights at x4, "about 3 million").

The body (head conv, wide blocks, tail conv) and the skip branch (one 5x5 conv) are each
pixel-shuffled and added, every convolution weight-normalised (torch parametrizations).

Departures: single channel, no RGB mean shift; the output is additionally a residual over bicubic
upsampling (departure: makes short CPU training converge), and both shuffled branches start at
zero (weight-norm gain g = 0), so the untrained network is bicubic; the shipped variant is 8 blocks
of 32 channels with expansion 4.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.blocks import FixedScaleNet, ResidualBlock, SubPixelConv, conv2d, zero_init_
from engine.models.registry import ModelCard, register_model


@register_model(
    ModelCard(
        name="wdsr",
        title="WDSR-A",
        paper="Yu, Fan, Yang, Xu, Wang, Wang, Huang, 'Wide Activation for Efficient and Accurate Image "
        "Super-Resolution', arXiv:1808.08718, 2018",
        ship_args={"blocks": 8, "width": 32, "expansion": 4},
        paper_params="3,557,232 weights at x4 (Ceccarelli's table, RGB, 32 blocks, 32->192->32)",
        departures="Single channel, no mean shift; residual over bicubic (departure: makes short CPU "
        "training converge), both shuffled branches zero-initialised; shipped 8 blocks, expansion 4.",
    )
)
class WDSR(FixedScaleNet):
    """WDSR-A: weight-normalised wide residual body + 5x5 skip, both pixel-shuffled and summed."""

    def __init__(self, scale: int, blocks: int = 32, width: int = 32, expansion: int = 6,
                 res_scale: float = 1.0, channels: int = 1):
        super().__init__(scale)
        self.body = nn.Sequential(
            conv2d(channels, width, weight_norm=True),
            *[ResidualBlock(width, width * expansion, weight_norm=True, res_scale=res_scale)
              for _ in range(blocks)],
        )
        self.tail = SubPixelConv(width, channels, self.scale, weight_norm=True)
        self.skip = SubPixelConv(channels, channels, self.scale, kernel=5, weight_norm=True)
        self.blocks = blocks
        zero_init_(self.tail.conv)
        zero_init_(self.skip.conv)

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(lr)) + self.skip(lr)

    @property
    def lr_radius(self) -> int:
        return 1 + 2 * self.blocks + 1
