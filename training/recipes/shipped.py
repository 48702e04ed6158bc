"""Reproduce every shipped weights file: `python -m training.recipes.shipped [--only NAME] [--list]`,
then each list of continued runs in CONTINUED in order (`--continue s11-fixed`), which trains some
shipped files further and replaces them.

Each recipe trains on the training subjects of ../shared/data (see training/split.py) and validates
on the held-out subjects. Fixed-scale networks train x2 from scratch, then x3 and x4 start from the x2
weights (transfer learning: every tensor but the upsampler carries over). Runs are resumable: a run
whose checkpoint exists continues from it; a run whose weights exist is skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, replace
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
    promote: bool = False  # a stage that continues a shipped file: copied over it when it finishes

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
    # meta_srgan: one run from scratch (session 11; its trunk has no batch norm since then). Earlier
    # BN-trunk runs (12 + 12 + 110 min in three stages) reached +0.34 dB at x2 and are gone.
    META_SRGAN := Recipe("meta_srgan", None, 95, lr=5e-4,
                         extra=("--threads", "1", "--lr-step", "1500", "--lr-gamma", "0.8")),
    *fixed_scale("srcnn", 3, 2),
    *fixed_scale("vdsr", 3, 2),
    srcnn_ct_short, srcnn_ct_x2, *fixed_scale("srcnn_ct", 2.5, 6)[1:],
    *fixed_scale("carn", 2.5, 1.25),
    *fixed_scale("wdsr", 2.5, 1.25),
    *fixed_scale("fmen", 2.5, 1.25),
    # SRResNet phase only (L1): the adversarial + perceptual phase (GAN_PHASE below) is not run yet.
    srgan_short, srgan_x2, *fixed_scale("srgan", 2.5, 6)[1:],
]

def more(arch: str, scale: float | None, minutes: float, session: str, lr: float = 2e-4,
         lr_step: int = 1500, **kw) -> Recipe:
    """Continue a shipped file on one thread (two runs share the 2-core CPU), the learning rate cut by
    20 % every ``lr_step`` steps; the result replaces the shipped file when the run finishes."""
    return Recipe(arch, scale, minutes, lr=lr, init=shipped(arch, scale), stage=f"more-{session}",
                  promote=True, extra=("--threads", "1", "--lr-step", str(lr_step), "--lr-gamma", "0.8"),
                  **kw)


# Session 11 (CPU, two one-thread runs side by side, after the patch sampler stopped copying whole
# slices, which had cost 0.2 s per batch): the first runs were a few hundred steps at most.
# meta_srgan restarted from scratch (its trunk dropped batch normalisation, see its model file): the
# RECIPES run, as a stage promoted over the old file.
SESSION_11_META = [replace(META_SRGAN, stage="s11", promote=True)]
SESSION_11_FIXED = [
    more("edsr", 2.0, 30, "s11", lr=3e-4),
    more("srgan", 2.0, 8, "s11", lr=3e-4),
    more("srcnn_ct", 2.0, 8, "s11", lr=5e-4),
    *(more(a, s, m, "s11", lr=2e-4, patch=96) for a, m in (("edsr", 8), ("srgan", 5), ("srcnn_ct", 5))
      for s in (3.0, 4.0)),
]
# Session 12: a lighter meta_srgan for real-time zoom: trunk 8 blocks x 32 channels (the issue's
# calibration size; the 8x48 trunk's slice encode is 364 ms on 2 threads, target 250, 8x32 189 ms) and a
# weight-prediction MLP of 64 hidden units, not 256: a zoom frame costs one max-multiply-add per pixel
# and unit whose ReLU changes sign over the offsets (183 of 256 in the 8x48 file), so 4x fewer units
# make a 512^2 frame about 3x cheaper (one thread: 30-44 ms -> 10-13 ms).
# From scratch on one thread beside the zoom work; replaces the 8x48 file when it finishes.
LIGHT_META_ARGS = '{"blocks": 8, "width": 32, "hidden": 64, "batch_norm": false}'
SESSION_12_LIGHT = [Recipe("meta_srgan", None, 100, lr=5e-4, stage="s12-light", promote=True,
                           extra=("--threads", "1", "--lr-step", "2500", "--lr-gamma", "0.8",
                                  "--arch-args", LIGHT_META_ARGS))]
# Beside it, the two weakest x2 files (vdsr +0.17 dB, carn +0.30 dB over bicubic: 3 and 2.5 minutes of
# training so far), continued on the other thread.
SESSION_12_FIXED = [more("vdsr", 2.0, 25, "s12", lr=5e-4), more("carn", 2.0, 25, "s12", lr=5e-4)]
# Session 13: the light meta_srgan was still improving when its 100 minutes ended (trainer validation
# x4 +1.04 dB at step 4,200, +1.34 at 10,794), so it continues at the learning rate it ended on.
SESSION_13_META = [more("meta_srgan", None, 105, "s13", lr=2e-4, lr_step=2500)]
# Beside it: vdsr and carn x3/x4 had been fine-tuned from x2 files of 3 and 2.5 minutes (+0.17 and
# +0.30 dB at x2); they start again from the x2 files continued in session 12 (+2.32, +2.23 dB).
SESSION_13_FIXED = [Recipe(a, s, m, init=shipped(a, 2.0), patch=96, stage="s13", promote=True,
                           extra=("--threads", "1"))
                    for a, m in (("vdsr", 6), ("carn", 5)) for s in (3.0, 4.0)]
# Session 14: meta_srgan's trainer validation had flattened on 64 px HR patches (x4 +1.41 dB from step
# 9,000 to 9,400), and at x4 a 64 px patch is a 16 px LR input, too little context for the trunk; it
# continues on 96 px patches (LR 24 px at x4) at half the learning rate it had.
SESSION_14_META = [more("meta_srgan", None, 100, "s14", lr=1e-4, lr_step=2500, patch=96)]
# Beside it, after the calibration run: edsr x2, the best fixed-scale x2 file, had had only 2,293 steps
# (most of its minutes were spent before the session-11 sampler fix); it continues on 96 px patches.
SESSION_14_FIXED = [more("edsr", 2.0, 75, "s14", lr=2e-4, lr_step=2500, patch=96)]
# The calibration network (8 residual blocks of 32 channels, L1, 20 minutes, no tuning: +2.7 dB
# x2) trained by our trainer with its defaults, to find out why it beat our x2 files; not shipped.
CALIBRATION_ARGS = '{"blocks": 8, "width": 32, "res_scale": 1.0}'
CALIBRATION = [Recipe("edsr", 2.0, 20, patch=96, lr=2e-4, stage="calib",
                      extra=("--threads", "1", "--arch-args", CALIBRATION_ARGS))]
# Which file each continued run started from is the shipped file of the commit before it (git log).
CONTINUED: dict[str, list[Recipe]] = {"s11-meta": SESSION_11_META, "s11-fixed": SESSION_11_FIXED,
                                      "s12-light": SESSION_12_LIGHT, "s12-fixed": SESSION_12_FIXED,
                                      "s13-meta": SESSION_13_META, "s13-fixed": SESSION_13_FIXED,
                                      "s14-meta": SESSION_14_META, "s14-fixed": SESSION_14_FIXED}
# Runs that answer a question and ship nothing (`--experiment NAME`); outputs stay in runs/stages/.
EXPERIMENTS: dict[str, list[Recipe]] = {"calibration": CALIBRATION}

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
    ap.add_argument("--continue", dest="continued", choices=sorted(CONTINUED), default=None,
                    help="run one list of continued runs (each replaces a shipped file) instead")
    ap.add_argument("--experiment", choices=sorted(EXPERIMENTS), default=None,
                    help="run one experiment (nothing shipped) instead")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--log-dir", type=Path, default=REPO / "runs")
    args = ap.parse_args()
    train, val = split_paths(DATA)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    recipes = (CONTINUED[args.continued] if args.continued else EXPERIMENTS[args.experiment]
               if args.experiment else GAN_PHASE if args.gan_phase else RECIPES)
    for r in recipes:
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
        if r.promote and res.returncode == 0 and r.out.exists():
            target = shipped(r.arch, r.scale)
            shutil.copyfile(r.out, target.with_suffix(".tmp"))
            os.replace(target.with_suffix(".tmp"), target)
            print(f"  {target.name} replaced by {r.out.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
