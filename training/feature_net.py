"""A small feature network for the perceptual loss, trained by us on medical slices.

Tan et al. compare VGG-19 ImageNet features; nothing may be downloaded here, so the perceptual loss
uses this network instead: a VGG-style stack (3x3 convs, ReLU, two poolings) trained self-supervised to
tell which of the 8 flips/rotations was applied to a slice patch (Gidaris et al., ICLR 2018). Telling
orientation needs anatomy-aware edge and texture features, which is what the loss should compare.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class FeatureNet(nn.Module):
    """conv(32)x2 - pool - conv(64)x2 - pool - conv(128)x2; ``forward`` returns the last feature map."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(1, w),
            *block(w, w),
            nn.AvgPool2d(2),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            nn.AvgPool2d(2),
            *block(2 * w, 4 * w),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1),
        )
        self.head = nn.Linear(4 * w, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.body(x)).mean(dim=(2, 3)))


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/rotations of a (N, 1, H, W) batch."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def train_feature_net(
    bank, steps: int, batch: int = 32, patch: int = 64, seed: int = 0, lr: float = 1e-3, log=print
) -> FeatureNet:
    """Self-supervised orientation training on patches from a ``SliceBank``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = FeatureNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(1, steps + 1):
        # Unaugmented patches: the bank's own random flips/rotations would make the label noise.
        x = torch.from_numpy(bank.sample_hr(rng, batch, patch, augment=False))[:, None]
        ks = torch.from_numpy(rng.integers(0, 8, size=batch))
        x = torch.cat([dihedral(x[i : i + 1], int(k)) for i, k in enumerate(ks)])
        loss = F.cross_entropy(net.classify(x), ks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            log(f"feature net step {step}: loss {loss.item():.3f}")
    return net.eval()


def save_feature_net(net: FeatureNet, path: Path) -> None:
    from safetensors.torch import save_file

    from engine.io.atomic import replace_file_atomically

    with replace_file_atomically(path) as tmp:
        save_file(
            {k: v.contiguous() for k, v in net.state_dict().items()},
            str(tmp),
            metadata={"format": "medsr-feature-net/1"},
        )


def load_feature_net(path: Path) -> FeatureNet:
    from safetensors.torch import load_file

    from engine.errors import WeightsError

    try:
        tensors = load_file(str(path))
        net = FeatureNet()
        net.load_state_dict(tensors)
    except Exception as exc:
        raise WeightsError(f"perceptual feature network unreadable ({str(exc)[:120]})", path) from None
    return net.eval()
