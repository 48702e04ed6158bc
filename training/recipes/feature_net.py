"""Train the perceptual-loss feature network on the training subjects (self-supervised).

`python -m training.recipes.feature_net [--steps 600]` writes
resources/weights/perceptual_features.safetensors, used by the GAN trainer instead of ImageNet VGG-19.
"""

from __future__ import annotations

import argparse
import sys

from engine.resources import shipped_weights_dir
from training.data import SliceBank
from training.feature_net import save_feature_net, train_feature_net
from training.gan import FEATURE_NET_FILE
from training.recipes.shipped import DATA
from training.split import split_paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    train, _ = split_paths(DATA)
    bank = SliceBank(train, patch=64)
    net = train_feature_net(bank, args.steps, seed=args.seed)
    accuracy = pretext_accuracy(net, bank, seed=args.seed + 1)
    if accuracy < 2 * CHANCE:
        # A network at chance has collapsed (dead ReLUs: session 14 saw feature std 0.015 and a
        # perceptual loss of 1e-12), and a GAN run would silently train without the perceptual term.
        print(f"feature network did not learn its task: orientation accuracy {accuracy:.1%} on new "
              f"patches (chance {CHANCE:.1%}); not written", file=sys.stderr)
        return 1
    out = shipped_weights_dir() / FEATURE_NET_FILE
    save_feature_net(net, out)
    print(f"wrote {out} (orientation accuracy {accuracy:.1%}, chance {CHANCE:.1%})")
    return 0


CHANCE = 1 / 8


def pretext_accuracy(net, bank: SliceBank, seed: int, n: int = 256) -> float:
    """How often the network tells which of the 8 flips/rotations a fresh patch went through."""
    import numpy as np
    import torch

    from training.feature_net import dihedral

    rng = np.random.default_rng(seed)
    x = torch.from_numpy(bank.sample_hr(rng, n, 64, augment=False))[:, None]
    ks = torch.from_numpy(rng.integers(0, 8, size=n))
    x = torch.cat([dihedral(x[i: i + 1], int(k)) for i, k in enumerate(ks)])
    with torch.no_grad():
        return float((net.classify(x).argmax(dim=1) == ks).float().mean())


if __name__ == "__main__":
    sys.exit(main())
