"""Bicubic interpolation as a registered "model": the baseline every network is compared with."""

from __future__ import annotations

import torch
from torch import nn

from engine.models.registry import ModelCard, bicubic_upsample, output_size, register_model


@register_model(
    ModelCard(
        name="bicubic",
        title="Bicubic interpolation",
        paper="Keys, 'Cubic convolution interpolation for digital image processing', IEEE TASSP 1981",
        scales=(2.0, 3.0, 4.0),
        scale_range=(1.0, 8.0),
        departures="No parameters; torch bicubic (a=-0.75, align_corners=False), "
        "the baseline of every table.",
    )
)
class Bicubic(nn.Module):
    """No learnt parameters: needs no weights file."""

    receptive_radius = 2
    needs_weights = False

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return bicubic_upsample(x, output_size(x.shape[-2], x.shape[-1], scale))
