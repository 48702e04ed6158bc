"""SRCNN, the three-layer pre-upsampling network.

Paper: C. Dong, C. C. Loy, K. He, X. Tang, "Learning a Deep Convolutional Network for Image
Super-Resolution", ECCV 2014; the 9-5-5 filter sizes with 64/32 filters are the setting of the
extended version, "Image Super-Resolution Using Deep Convolutional Networks", IEEE TPAMI 38(2), 2016.
Stoian (paper 000, Table 1) counts this configuration as 57,281 parameters, which ours matches.

Departures from the paper:
- 'same' zero padding, so the output keeps the bicubic input's size (the paper used valid
  convolutions and a cropped, smaller output);
- the convolutions predict a residual over the bicubic input (output = bicubic + net), with the
  reconstruction layer zero-initialised, so the untrained network is bicubic; the paper regresses
  the HR image itself;
- bicubic upsampling is done inside ``forward`` (the paper upsampled as preprocessing).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.blocks import FixedScaleNet, conv2d, zero_init_
from engine.models.registry import ModelCard, register_model


@register_model(
    ModelCard(
        name="srcnn",
        title="SRCNN (9-5-5)",
        paper="Dong, Loy, He, Tang, 'Learning a Deep Convolutional Network for Image Super-Resolution', "
        "ECCV 2014 (9-5-5, 64/32 filters: IEEE TPAMI 2016)",
        ship_args={"n1": 64, "n2": 32},
        paper_params="57,281 (Stoian, Table 1, 'SRCNN original')",
        departures="Residual over the bicubic input (zero-initialised last layer); 'same' padding so the "
        "output is not cropped; bicubic upsampling inside forward.",
    )
)
class SRCNN(FixedScaleNet):
    """Patch extraction (f1), non-linear mapping (f2), reconstruction (f3), all on the bicubic image."""

    pre_upsampling = True

    def __init__(self, scale: int, n1: int = 64, n2: int = 32, f1: int = 9, f2: int = 5, f3: int = 5,
                 channels: int = 1):
        super().__init__(scale)
        self.kernels = (f1, f2, f3)
        self.body = nn.Sequential(
            conv2d(channels, n1, f1), nn.ReLU(), conv2d(n1, n2, f2), nn.ReLU(), conv2d(n2, channels, f3)
        )
        zero_init_(self.body[-1])

    def residual(self, up: torch.Tensor) -> torch.Tensor:
        return self.body(up)

    @property
    def hr_radius(self) -> int:
        return sum(k // 2 for k in self.kernels)
