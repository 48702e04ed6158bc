"""``medsr train``: train any registered network on NIfTI/DICOM volumes; JSON-line or bar progress."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import MedSRError
from training.trainer import StopFlag, TrainConfig, Trainer, json_line_emitter


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medsr train", description="Train a MedSR network on real volumes.")
    p.add_argument("--arch", required=True, help="registered network name (see `medsr models`)")
    p.add_argument("--scale", type=float, default=None, help="2, 3 or 4 (omit for meta_srgan: 1.1-4.0)")
    p.add_argument("--data", nargs="+", required=True, type=Path, help="NIfTI files and/or DICOM folders")
    p.add_argument("--val-data", nargs="*", default=[], type=Path, help="validation volumes (other subjects)")
    p.add_argument("--out", required=True, type=Path, help="weights file to write (.safetensors)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch", type=int, default=96, help="HR patch side in pixels")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lr-step", type=int, default=None)
    p.add_argument("--lr-gamma", type=float, default=0.8)
    p.add_argument("--loss", choices=["l1", "mse", "gan"], default="l1")
    p.add_argument(
        "--blur", action="store_true", help="LR = bicubic downscale then Gaussian blur (k3, sigma 1)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--init", type=Path, default=None, help="start from these weights (transfer learning)")
    p.add_argument("--resume", type=Path, default=None, help="continue from a checkpoint")
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="checkpoint path (default: OUT.ckpt.safetensors)"
    )
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N steps")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument(
        "--arch-args", type=json.loads, default={}, help="JSON constructor overrides, e.g. '{\"blocks\": 8}'"
    )
    p.add_argument("--pretrain-steps", type=int, default=None, help="GAN: L1-only steps first")
    p.add_argument("--feature-net", type=Path, default=None, help="GAN: perceptual feature network weights")
    p.add_argument("--progress", choices=["auto", "json", "bar", "none"], default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    if a.out.suffix != ".safetensors":
        raise MedSRError("weights are written as .safetensors", a.out)
    missing = [p for p in [*a.data, *a.val_data] if not p.exists()]
    if missing:
        raise MedSRError("training data not found", missing[0])
    return TrainConfig(
        arch=a.arch,
        scale=a.scale,
        data=list(a.data),
        val_data=list(a.val_data),
        out=a.out,
        steps=a.steps,
        minutes=a.minutes,
        batch_size=a.batch_size,
        patch=a.patch,
        lr=a.lr,
        lr_step=a.lr_step,
        lr_gamma=a.lr_gamma,
        loss=a.loss,
        blur=a.blur,
        seed=a.seed,
        device=a.device,
        init=a.init,
        resume=a.resume,
        checkpoint=a.checkpoint,
        checkpoint_minutes=a.checkpoint_minutes,
        checkpoint_every=a.checkpoint_every,
        val_every=a.val_every,
        arch_args=a.arch_args,
        pretrain_steps=a.pretrain_steps,
        feature_net=a.feature_net,
    )


class BarEmitter:
    """A terminal progress bar that also prints validation lines."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm
        self.bar = None

    def __call__(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "start":
            total = ev.get("total_steps") or None
            self.bar = self.tqdm(total=total, desc=f"{ev['arch']} x{ev['scale'] or 'any'}", unit="step")
        elif kind == "progress" and self.bar is not None:
            self.bar.n = ev["step"]
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in ev["loss"].items()})
        elif kind == "validation":
            text = ", ".join(
                f"x{s}: {v['psnr_fg']:.2f} dB ({v['gain_db']:+.2f} vs bicubic)"
                for s, v in ev["scales"].items()
            )
            (self.bar.write if self.bar else print)(f"step {ev['step']}: {text}")
        elif kind in ("done", "cancelled", "warning", "resumed"):
            if kind in ("done", "cancelled") and self.bar is not None:
                self.bar.close()
            print(json.dumps(ev), file=sys.stderr)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    mode = args.progress
    if mode == "auto":
        mode = "bar" if sys.stdout.isatty() else "json"
    emit = {"json": json_line_emitter(), "bar": BarEmitter(), "none": lambda ev: None}[mode]
    cfg = config_from_args(args)
    stop = StopFlag()
    stop.install()
    trainer_cls = Trainer
    if cfg.loss == "gan":
        from training.gan import GANTrainer

        trainer_cls = GANTrainer
    try:
        trainer = trainer_cls(cfg, emit=emit, stop=stop)
        trainer.run()
    except MedSRError as exc:
        if mode == "json":
            emit({"event": "error", "message": str(exc)})
        raise
    return 0
