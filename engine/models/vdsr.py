"""VDSR: a 20-layer 3x3 network with a global residual over the bicubic input.

Paper: J. Kim, J. K. Lee, K. M. Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional
Networks", CVPR 2016. Xu et al. (paper 002, "SDSR") describe it as conv 1->64, 18 conv 64->64 + ReLU,
conv 64->1, and count 667,008 parameters for the RGB version: exactly the bias-free convolutions
(3*64*9 + 18*64*64*9 + 64*3*9), so our convolutions have no bias (the class default follows that
count; with ``channels=3`` we reproduce it).

Departures: the last convolution is zero-initialised so the untrained network is bicubic; bicubic
upsampling is done inside ``forward``; the shipped variant is shallower and narrower than the paper's
(20 layers of 64 channels at HR resolution is too slow to train on two CPU cores).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.blocks import FixedScaleNet, conv2d, zero_init_
from engine.models.registry import ModelCard, register_model


@register_model(
    ModelCard(
        name="vdsr",
        title="VDSR",
        paper="Kim, Lee, Lee, 'Accurate Image Super-Resolution Using Very Deep Convolutional Networks', "
        "CVPR 2016",
        ship_args={"depth": 12, "width": 32},
        paper_params="667,008 (Xu et al., Table 2, RGB, bias-free 20x64)",
        departures="Shipped 12 layers x 32 channels (paper: 20 x 64); zero-initialised last layer; "
        "bicubic upsampling inside forward.",
    )
)
class VDSR(FixedScaleNet):
    """depth 3x3 convolutions (ReLU between) learning the residual over bicubic at HR resolution."""

    pre_upsampling = True

    def __init__(self, scale: int, depth: int = 20, width: int = 64, channels: int = 1):
        super().__init__(scale)
        if depth < 2:
            raise ValueError("VDSR needs at least 2 layers")
        layers: list[nn.Module] = [conv2d(channels, width, bias=False), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [conv2d(width, width, bias=False), nn.ReLU()]
        layers.append(conv2d(width, channels, bias=False))
        self.body = nn.Sequential(*layers)
        self.depth = depth
        zero_init_(self.body[-1])

    def residual(self, up: torch.Tensor) -> torch.Tensor:
        return self.body(up)

    @property
    def hr_radius(self) -> int:
        return self.depth
