"""EDSR: residual blocks without batch normalisation, residual scaling, pixel-shuffle upsampler.

Paper: B. Lim, S. Son, H. Kim, S. Nah, K. M. Lee, "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPR Workshops (NTIRE) 2017. Applied to brain MRI by Ceccarelli (paper 001,
University of Bologna MSc thesis, 2020), whose table lists the 32-block, 256-channel model (weights
only: 6,912 + 64 x 589,824 + 589,824 + 2,359,296 per x2 stage + 6,912, "more than 40 million").
Class defaults are that model (Lim et al.: 43 M parameters at x4, residual scaling 0.1).

Departures: single channel, no RGB mean shift; the network predicts a residual over bicubic
upsampling (output = bicubic + net) and its last convolution is zero-initialised, so the untrained
network is bicubic (makes short CPU training converge); the shipped variant is small (8 blocks x 48
channels, no residual scaling, like Lim et al.'s baseline which also drops it).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.blocks import FixedScaleNet, PixelShuffleUpsampler, ResidualBlock, conv2d, zero_init_
from engine.models.registry import ModelCard, register_model


@register_model(
    ModelCard(
        name="edsr",
        title="EDSR",
        paper="Lim, Son, Kim, Nah, Lee, 'Enhanced Deep Residual Networks for Single Image "
        "Super-Resolution', CVPRW 2017",
        ship_args={"blocks": 8, "width": 48, "res_scale": 1.0},
        paper_params="43 M at x4 (Lim et al.; RGB, 32 blocks x 256); 40.7 M weights at x2 (Ceccarelli)",
        departures="Single channel, no mean shift; residual over bicubic (departure: makes short CPU "
        "training converge) with a zero-initialised last conv; shipped 8 blocks x 48 channels.",
    )
)
class EDSR(FixedScaleNet):
    """Head conv, residual body with a closing conv and long skip, pixel-shuffle upsampler, output conv."""

    def __init__(self, scale: int, blocks: int = 32, width: int = 256, res_scale: float = 0.1,
                 channels: int = 1):
        super().__init__(scale)
        self.head = conv2d(channels, width)
        self.body = nn.Sequential(
            *[ResidualBlock(width, res_scale=res_scale) for _ in range(blocks)], conv2d(width, width)
        )
        self.upsample = PixelShuffleUpsampler(width, self.scale)
        self.tail = conv2d(width, channels)
        self.blocks = blocks
        zero_init_(self.tail)

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        head = self.head(lr)
        return self.tail(self.upsample(head + self.body(head)))

    @property
    def lr_radius(self) -> int:
        return 1 + 2 * self.blocks + 1 + self.upsample.n_convs + 1
