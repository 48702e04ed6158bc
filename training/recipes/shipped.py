"""Reproduce every shipped weights file: `python -m training.recipes.shipped [--only NAME] [--list]`.

Each recipe trains on the training subjects of ../shared/data (see training/split.py) and validates
on the held-out subjects. Fixed-scale networks train x2 from scratch, then x3 and x4 start from the x2
weights (transfer learning: every tensor but the upsampler carries over). Runs are resumable: a run
whose checkpoint exists continues from it; a run whose weights exist is skipped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from engine.resources import shipped_weights_dir
from training.gan import FEATURE_NET_FILE
from training.split import split_paths

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MEDSR_SHARED_DATA", REPO.parent / "shared" / "data"))


STAGES = REPO / "runs" / "stages"  # intermediate weights (L1 pre-training of GAN recipes); not shipped


@dataclass(frozen=True)
class Recipe:
    arch: str
    scale: float | None
    minutes: float
    batch_size: int = 16
    patch: int = 64
    lr: float = 5e-4  # higher than the papers' 1e-4..2e-4: minutes, not days, of training
    loss: str = "l1"
    init: Path | None = None  # weights this run starts from (transfer learning / GAN after L1)
    stage: str = ""  # non-empty: an intermediate file under runs/stages/, not a shipped one
    extra: tuple[str, ...] = field(default_factory=tuple)

    @property
    def out(self) -> Path:
        name = self.arch if self.scale is None else f"{self.arch}_x{self.scale:g}"
        if self.stage:
            return STAGES / f"{name}.{self.stage}.safetensors"
        return shipped_weights_dir() / f"{name}.safetensors"


def shipped(arch: str, scale: float | None) -> Path:
    name = arch if scale is None else f"{arch}_x{scale:g}"
    return shipped_weights_dir() / f"{name}.safetensors"


def fixed_scale(arch: str, x2_minutes: float, other_minutes: float, x2_init: Path | None = None,
                **kw) -> list[Recipe]:
    """x2 on 64px HR patches; x3/x4 fine-tuned from x2 on 96px patches (LR 32/24 px).

    ``x2_init``: the x3/x4 runs start from this file instead of the shipped x2 (when x2 was trained
    further after x3/x4 had been fine-tuned from an earlier x2)."""
    x2_start = x2_init or shipped(arch, 2.0)
    return [
        Recipe(arch, 2.0, x2_minutes, **kw),
        Recipe(arch, 3.0, other_minutes, init=x2_start, patch=96, **kw),
        Recipe(arch, 4.0, other_minutes, init=x2_start, patch=96, **kw),
    ]


def continued_x2(arch: str, first_minutes: float, more_minutes: float, lr: float = 5e-4,
                 extra: tuple[str, ...] = ()) -> tuple[Recipe, Recipe]:
    """x2 in two runs: a short one (an intermediate file), then one more run started from it on one
    thread, beside other runs (how the shipped file was made: the second run came a session later)."""
    first = Recipe(arch, 2.0, first_minutes, stage="short")
    return first, Recipe(arch, 2.0, more_minutes, lr=lr, init=first.out, extra=("--threads", "1", *extra))


HALVE_EVERY_3000 = ("--lr-step", "3000", "--lr-gamma", "0.5")
edsr_short, edsr_x2 = continued_x2("edsr", 10, 17, lr=3e-4, extra=HALVE_EVERY_3000)
srcnn_ct_short, srcnn_ct_x2 = continued_x2("srcnn_ct", 2.5, 22)
srgan_short, srgan_x2 = continued_x2("srgan", 2.5, 22)

# Minutes are wall-clock budgets on the 2-core development CPU (the GPU machine was not lent); the
# cards record the steps each run reached.
RECIPES: list[Recipe] = [
    *fixed_scale("new_carn", 5, 2.5),
    edsr_short, edsr_x2, *fixed_scale("edsr", 10, 4, x2_init=edsr_short.out)[1:],
    # meta_srgan: the L1 phase ran 12 min at 96 px / batch 16 (only ~100 steps on the loaded CPU, still
    # below bicubic), then continued on cheaper 64 px / batch 8 mini-batches at a gentler rate: 12 min
    # on a loaded CPU, then 110 min on one thread beside other runs.
    meta_l1 := Recipe("meta_srgan", None, 12, patch=96, stage="l1"),
    meta_l1b := Recipe("meta_srgan", None, 12, patch=64, batch_size=8, lr=2e-4, init=meta_l1.out,
                       stage="l1b"),
    Recipe("meta_srgan", None, 110, patch=64, batch_size=8, lr=2e-4, init=meta_l1b.out,
           extra=("--threads", "1", "--val-every", "400")),
    *fixed_scale("srcnn", 3, 2),
    *fixed_scale("vdsr", 3, 2),
    srcnn_ct_short, srcnn_ct_x2, *fixed_scale("srcnn_ct", 2.5, 6)[1:],
    *fixed_scale("carn", 2.5, 1.25),
    *fixed_scale("wdsr", 2.5, 1.25),
    *fixed_scale("fmen", 2.5, 1.25),
    # SRResNet phase only (L1): the adversarial + perceptual phase (GAN_PHASE below) is not run yet.
    srgan_short, srgan_x2, *fixed_scale("srgan", 2.5, 6)[1:],
]

# The GAN phase of Tan et al.'s recipe (L1 + 0.001 adversarial + 0.006 perceptual, Adam 1e-4), started
# from the shipped L1 weights; outputs land in runs/stages/ for comparison before any is shipped.
GAN_PHASE: list[Recipe] = [
    Recipe(
        "meta_srgan",
        None,
        6,
        patch=64,
        batch_size=8,
        loss="gan",
        lr=1e-4,
        stage="gan",
        init=shipped("meta_srgan", None),
    ),
    Recipe("srgan", 2.0, 4, loss="gan", lr=1e-4, stage="gan", init=shipped("srgan", 2.0)),
]


def command(r: Recipe, data: list[Path], val: list[Path], threads: int | None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "train",
        "--arch",
        r.arch,
        "--out",
        str(r.out),
        "--minutes",
        str(r.minutes),
        "--batch-size",
        str(r.batch_size),
        "--patch",
        str(r.patch),
        "--lr",
        str(r.lr),
        "--loss",
        r.loss,
        "--progress",
        "json",
        "--val-every",
        "200",
        "--checkpoint-minutes",
        "1",
        "--lr-step",
        "1000000",
        "--data",
        *map(str, data),
        "--val-data",
        *map(str, val),
    ]
    if r.scale is not None:
        cmd += ["--scale", f"{r.scale:g}"]
    ckpt = r.out.with_name(r.out.name.removesuffix(".safetensors") + ".ckpt.safetensors")
    if ckpt.exists():
        cmd += ["--resume", str(ckpt)]
    elif r.init is not None:
        cmd += ["--init", str(r.init)]
    if threads:
        cmd += ["--threads", str(threads)]
    return [*cmd, *r.extra]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", default=None, help="architectures to run (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--gan-phase", action="store_true", help="run the GAN fine-tuning recipes instead")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--log-dir", type=Path, default=REPO / "runs")
    args = ap.parse_args()
    train, val = split_paths(DATA)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    for r in GAN_PHASE if args.gan_phase else RECIPES:
        if args.only and r.arch not in args.only:
            continue
        cmd = command(r, train, val, args.threads)
        if args.list:
            print(" ".join(cmd))
            continue
        if r.out.exists():
            print(f"skip {r.out.name}: exists", flush=True)
            continue
        if r.init is not None and not r.init.exists():
            print(f"skip {r.out.name}: needs {r.init.name} first", flush=True)
            continue
        if r.loss == "gan" and not (shipped_weights_dir() / FEATURE_NET_FILE).exists():
            print("training the perceptual feature network first", flush=True)
            subprocess.run([sys.executable, "-m", "training.recipes.feature_net"], cwd=REPO, check=True)
        r.out.parent.mkdir(parents=True, exist_ok=True)
        log = args.log_dir / (r.out.name.removesuffix(".safetensors") + ".jsonl")
        print(f"train {r.out.name} ({r.minutes} min) -> log {log}", flush=True)
        with open(log, "a") as fh:
            res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        print(f"  exit {res.returncode}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
