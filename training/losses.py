"""Losses: pixel fidelity (L1, MSE), adversarial (SRGAN discriminator), perceptual (our own features).

No ImageNet VGG can be downloaded here, so the perceptual loss compares features of a small network
that the project trains itself on medical slices (``training/feature_net.py``); see the model cards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pixel_loss(kind: str) -> nn.Module:
    if kind == "l1":
        return nn.L1Loss()
    if kind == "mse":
        return nn.MSELoss()
    raise ValueError(f"unknown pixel loss {kind!r} (l1 or mse)")


def adversarial_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)) (the non-saturating form of Ledig et al.)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


class PerceptualLoss(nn.Module):
    """Mean squared distance between frozen feature maps of SR and HR."""

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.features(sr), self.features(hr))
