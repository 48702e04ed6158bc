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
    out = shipped_weights_dir() / FEATURE_NET_FILE
    save_feature_net(net, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
