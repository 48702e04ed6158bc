"""Gao et al.'s improved SRCNN for CT: a second convolution, overlapping pooling and a link layer.

Paper: Y. Gao, J. Dong, H. Li, G. Feng, "A Deep Convolutional Network for Medical Image
Super-Resolution", Chinese Automation Congress (CAC), 2017 (venue from the publication record; the
text extraction we read, paper 004, carries no venue line). Layers follow its Table I:
conv1 9x9x32 + ReLU, 2x2 stride-1 pooling, conv2 5x5 32->32 + ReLU, 2x2 stride-1 pooling, then two
reconstructions that are added: the link layer (11x11, 32->1) from the second pooling, and
conv3 (7x7, 32->32, ReLU) followed by conv4 (5x5, 32->1).

Our reading where the paper is silent:
- pooling is max pooling (the paper cites Krizhevsky et al.'s overlapping max pooling);
- a 2x2 window with stride 1 shrinks a map by one pixel, so each pooling is padded by one
  replicated row/column on one side (replicating an edge never changes a max, so this equals
  ignoring the missing cell). The first pooling pads right/bottom (its window is shifted +1/2 pixel),
  the second pads left/top (-1/2 pixel): the two shifts cancel and the output stays aligned.

Departures: 'same' padding in every convolution (no cropping); both reconstructions predict a
residual over the bicubic input (output = bicubic + link + conv4), zero-initialised so the untrained
network is bicubic; bicubic upsampling inside ``forward``. No published parameter count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.blocks import FixedScaleNet, conv2d, zero_init_
from engine.models.registry import ModelCard, register_model


class OverlappingMaxPool(nn.Module):
    """2x2 max pooling with stride 1 that keeps the spatial size (one replicated row/column on one side)."""

    def __init__(self, pad_after: bool):
        super().__init__()
        self.pad = (0, 1, 0, 1) if pad_after else (1, 0, 1, 0)  # (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.pad(x, self.pad, mode="replicate"), kernel_size=2, stride=1)


@register_model(
    ModelCard(
        name="srcnn_ct",
        title="Improved SRCNN for CT (second conv, overlapping pooling, link layer)",
        paper="Gao, Dong, Li, Feng, 'A Deep Convolutional Network for Medical Image Super-Resolution', "
        "Chinese Automation Congress (CAC) 2017",
        ship_args={},
        paper_params="not published",
        departures="Residual over the bicubic input (both reconstructions zero-initialised); 'same' "
        "padding; stride-1 pooling padded right/bottom then left/top so the map keeps its size and "
        "alignment; max pooling (our reading).",
    )
)
class SRCNNCT(FixedScaleNet):
    """SRCNN with a second feature conv, two overlapping poolings and a link-layer reconstruction."""

    pre_upsampling = True

    def __init__(self, scale: int, width: int = 32, channels: int = 1):
        super().__init__(scale)
        self.extract = nn.Sequential(
            conv2d(channels, width, 9), nn.ReLU(), OverlappingMaxPool(pad_after=True),
            conv2d(width, width, 5), nn.ReLU(), OverlappingMaxPool(pad_after=False),
        )
        self.link = conv2d(width, channels, 11)
        self.mapping = nn.Sequential(conv2d(width, width, 7), nn.ReLU())
        self.reconstruct = conv2d(width, channels, 5)
        zero_init_(self.link)
        zero_init_(self.reconstruct)

    def residual(self, up: torch.Tensor) -> torch.Tensor:
        pooled = self.extract(up)
        return self.link(pooled) + self.reconstruct(self.mapping(pooled))

    @property
    def hr_radius(self) -> int:
        # conv1 4, pool 1, conv2 2, pool 1, then max(link 5, conv3 3 + conv4 2).
        return 4 + 1 + 2 + 1 + 5
