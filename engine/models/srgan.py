"""SRGAN's generator (SRResNet) and its discriminator.

Paper: C. Ledig, L. Theis, F. Huszar, J. Caballero, A. Cunningham, A. Acosta, A. Aitken, A. Tejani,
J. Totz, Z. Wang, W. Shi, "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network", CVPR 2017. Generator: 9x9 conv + PReLU, B residual blocks (conv-BN-PReLU-conv-BN),
conv + BN with a long skip, pixel-shuffle x2 stages with PReLU, 9x9 output conv. Discriminator:
3x3 convs 64..512 (stride 2 every second), BN and LeakyReLU 0.2, two dense layers, sigmoid.

Xu et al. (paper 002, Table 2) count SRGAN as 5,949,644 parameters: exactly an RGB x4 generator with
5 residual blocks and single-parameter PReLUs (734,219) plus a discriminator whose dense layers follow
a global average pooling (as 1x1 convs 512 -> 1024 -> 1: 5,215,425). We reproduce that figure with
``SRGAN(4, blocks=5, channels=3)`` + ``SRGANDiscriminator(channels=3)``; class defaults follow Ledig
et al. (16 blocks of 64 channels).

Departures: single channel; the generator predicts a residual over bicubic upsampling (departure:
makes short CPU training converge) with a zero-initialised output conv, so the untrained generator is
bicubic; x3 uses one x3 shuffle stage; the discriminator pools globally before the dense layers so it
accepts any patch size, and returns logits (the sigmoid belongs in the loss, BCE-with-logits).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from engine.models.blocks import FixedScaleNet, PixelShuffleUpsampler, ResidualBlock, conv2d, zero_init_
from engine.models.registry import ModelCard, register_model

PReLU = partial(nn.PReLU, num_parameters=1)


class SRResNetTrunk(nn.Module):
    """SRResNet's LR feature trunk: 9x9 head + PReLU, residual blocks, conv + BN, long skip (BN optional)."""

    def __init__(self, channels: int, width: int, blocks: int, batch_norm: bool = True):
        super().__init__()
        self.head = nn.Sequential(conv2d(channels, width, 9), PReLU())
        self.body = nn.Sequential(
            *[ResidualBlock(width, act=PReLU, batch_norm=batch_norm) for _ in range(blocks)],
            conv2d(width, width),
            *([nn.BatchNorm2d(width)] if batch_norm else []),
        )
        self.width, self.blocks = width, blocks

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        head = self.head(lr)
        return head + self.body(head)

    @property
    def radius(self) -> int:
        return 4 + 2 * self.blocks + 1


@register_model(
    ModelCard(
        name="srgan",
        title="SRGAN generator (SRResNet)",
        paper="Ledig et al., 'Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial "
        "Network', CVPR 2017",
        ship_args={"blocks": 8, "width": 48},
        paper_params="5,949,644 (Xu et al., Table 2: RGB x4 generator with 5 blocks 734,219 + "
        "global-pool discriminator 5,215,425)",
        departures="Single channel; residual over bicubic (departure: makes short CPU training converge) "
        "with a zero-initialised output conv; shipped 8 blocks x 48 channels (paper 16 x 64); "
        "discriminator pools globally and returns logits.",
    )
)
class SRGAN(FixedScaleNet):
    """SRResNet generator: trunk, PReLU pixel-shuffle upsampler, 9x9 output conv."""

    def __init__(self, scale: int, blocks: int = 16, width: int = 64, channels: int = 1,
                 batch_norm: bool = True):
        super().__init__(scale)
        self.trunk = SRResNetTrunk(channels, width, blocks, batch_norm)
        self.upsample = PixelShuffleUpsampler(width, self.scale, act=PReLU)
        self.tail = conv2d(width, channels, 9)
        zero_init_(self.tail)

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        return self.tail(self.upsample(self.trunk(lr)))

    @property
    def lr_radius(self) -> int:
        return self.trunk.radius + self.upsample.n_convs + math.ceil(4 / self.scale)


class SRGANDiscriminator(nn.Module):
    """Ledig et al.'s discriminator with global average pooling, so any patch size works. Returns logits.

    Not a registered model: the GAN trainer builds it beside a generator.
    """

    def __init__(self, channels: int = 1, width: int = 64, slope: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [conv2d(channels, width), nn.LeakyReLU(slope)]
        in_ch = width
        for i in range(7):  # 64 s2, 128, 128 s2, 256, 256 s2, 512, 512 s2
            out_ch = width * 2 ** ((i + 1) // 2)
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=2 if i % 2 == 0 else 1, padding=1),
                       nn.BatchNorm2d(out_ch), nn.LeakyReLU(slope)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.classify = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_ch, 16 * width, 1),
            nn.LeakyReLU(slope),
            nn.Conv2d(16 * width, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x)).flatten()
