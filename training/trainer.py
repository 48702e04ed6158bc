"""The plain trainer (pixel losses) and the GAN trainer that extends it.

One loop for every registered network: a budget in steps and/or minutes, validation against bicubic
at intervals, an EMA of the weights (used for validation and export), atomic checkpoints at an
interval and on cancel (SIGINT/SIGTERM), exact resume (models, optimisers, schedulers, step, RNGs),
JSON-line progress for the viewer, and DistributedDataParallel when started by torchrun.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from engine.devices import resolve_device
from engine.errors import MedSRError
from engine.metrics import psnr, ssim
from engine.models import build_model, count_parameters, get_card
from engine.models.registry import bicubic_upsample
from engine.weights import load_weights, save_weights
from training.checkpoint import load_checkpoint, save_checkpoint
from training.data import META_SCALES, PatchSampler, SliceBank, ValidationSet, build_validation
from training.losses import pixel_loss


@dataclass
class TrainConfig:
    arch: str
    scale: float | None  # None: an arbitrary-scale network (one scale per mini-batch, 1.1-4.0)
    data: list[Path]
    out: Path
    val_data: list[Path] = field(default_factory=list)
    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 16
    patch: int = 96
    lr: float = 2e-4
    lr_step: int | None = None  # steps between learning-rate cuts (default: a fifth of the steps)
    lr_gamma: float = 0.8  # Tan et al.: cut by 20 % at fixed intervals
    loss: str = "l1"  # l1 | mse | gan
    blur: bool = False
    seed: int = 0
    device: str = "auto"
    init: Path | None = None
    resume: Path | None = None
    checkpoint: Path | None = None
    checkpoint_minutes: float = 5.0
    checkpoint_every: int | None = None  # steps; deterministic alternative to checkpoint_minutes
    val_every: int = 250
    log_every: int = 10
    ema: float = 0.999
    arch_args: dict[str, Any] = field(default_factory=dict)
    # GAN only
    adv_weight: float = 1e-3
    perceptual_weight: float = 6e-3
    pretrain_steps: int | None = None
    feature_net: Path | None = None
    card_extra: dict[str, Any] = field(default_factory=dict)

    def total_steps(self) -> int:
        if self.steps:
            return self.steps
        return 10**9 if self.minutes else 1000

    def checkpoint_path(self) -> Path:
        return self.checkpoint or self.out.with_name(
            self.out.name.removesuffix(".safetensors") + ".ckpt.safetensors"
        )

    def scales(self) -> tuple[float, ...]:
        return META_SCALES if self.scale is None else (float(self.scale),)

    def validation_scales(self) -> tuple[float, ...]:
        return (2.0, 4.0) if self.scale is None else (float(self.scale),)


Emit = Callable[[dict[str, Any]], None]


class StopFlag:
    """Set by SIGINT/SIGTERM or a caller; the loop checks it between steps."""

    def __init__(self) -> None:
        self.stop = False
        self.reason = ""

    def install(self) -> None:
        def handler(signum, _frame):
            self.stop, self.reason = True, signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, handler)
            except ValueError:  # not the main thread (tests): the caller sets the flag itself
                pass


class EMA:
    """Exponential moving average of a model's parameters and buffers (warm-up for short runs)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.shadow)


class Trainer:
    """Pixel-loss training of any registered network."""

    def __init__(self, cfg: TrainConfig, emit: Emit | None = None, stop: StopFlag | None = None):
        self.cfg = cfg
        self.emit_fn = emit or (lambda ev: None)
        self.stop = stop or StopFlag()
        self.rank, self.world = _dist_rank_world()
        self.device = resolve_device(cfg.device) if self.world == 1 else _ddp_device(self.rank)
        card = get_card(cfg.arch)
        if cfg.scale is None and not card.arbitrary_scale:
            raise MedSRError(f"{cfg.arch} is a fixed-scale network: give --scale")
        if cfg.scale is not None and not card.serves(cfg.scale):
            raise MedSRError(f"{cfg.arch} does not serve x{cfg.scale:g}")
        if card.arbitrary_scale:
            cfg.scale = None
        self.card = card
        self.arch_args = {**card.ship_args, **cfg.arch_args}
        self._seed_everything(cfg.seed + self.rank)
        self.model = build_model(cfg.arch, cfg.scale, **self.arch_args).to(self.device)
        self.init_note = self._load_init(cfg.init) if cfg.init else ""
        self.ema = EMA(self.model, cfg.ema)
        self.train_module: nn.Module = self.model
        if self.world > 1:
            self.train_module = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        lr_step = cfg.lr_step or max(1, cfg.total_steps() // 5 if cfg.steps else 2000)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=lr_step, gamma=cfg.lr_gamma
        )
        self.pixel = pixel_loss("l1" if cfg.loss == "gan" else cfg.loss)
        self.bank = SliceBank(
            cfg.data, patch=cfg.patch, on_skip=lambda m: self.emit({"event": "warning", "message": m})
        )
        self.sampler = PatchSampler(
            self.bank, cfg.scales(), cfg.batch_size, cfg.blur, cfg.seed * 1000 + self.rank
        )
        self.validation: ValidationSet | None = None
        if cfg.val_data and self.rank == 0:
            self.validation = build_validation(cfg.val_data, cfg.validation_scales(), blur=cfg.blur)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, Any]] = []
        self.last_val: dict[str, Any] = {}

    # --- hooks the GAN trainer extends ------------------------------------------------------------
    def train_step(self, lr: torch.Tensor, hr: torch.Tensor, scale: float) -> dict[str, float]:
        sr = self.train_module(lr, scale)
        loss = self.pixel(sr, hr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {self.cfg.loss if self.cfg.loss != "gan" else "l1": float(loss.detach())}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def schedulers(self) -> list[Any]:
        return [self.scheduler]

    # --- the loop ------------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        if self.rank == 0:
            self.emit_fn(event)

    def run(self) -> Path | None:
        """Train to the budget; returns the exported weights (rank 0), or None if cancelled / not rank 0."""
        cfg = self.cfg
        if cfg.resume:
            self.load_state(load_checkpoint(cfg.resume))
            self.emit({"event": "resumed", "step": self.step, "checkpoint": str(cfg.resume)})
        total = cfg.total_steps()
        self.emit(
            {
                "event": "start",
                "arch": cfg.arch,
                "scale": cfg.scale,
                "total_steps": cfg.steps,
                "minutes": cfg.minutes,
                "parameters": count_parameters(self.model),
                "device": str(self.device),
                "slices": self.bank.n_slices,
                "volumes": len(self.bank.volumes),
                "world_size": self.world,
                "init": self.init_note,
            }
        )
        start = time.perf_counter() - self.elapsed
        last_ckpt = time.perf_counter()
        self.model.train()
        losses: dict[str, list[float]] = {}
        while self.step < total:
            if self._should_stop(start):
                break
            batch = self.sampler.next()
            out = self.train_step(batch.lr.to(self.device), batch.hr.to(self.device), batch.scale)
            for sch in self.schedulers():
                sch.step()
            self.step += 1
            self.ema.update(self.model, self.step)
            for k, v in out.items():
                losses.setdefault(k, []).append(v)
            self.elapsed = time.perf_counter() - start
            if self.step % cfg.log_every == 0 or self.step == total:
                self._emit_progress(losses, total)
                losses = {}
            if self.validation is not None and self.step % cfg.val_every == 0:
                self.validate()
            due = (
                (self.step % cfg.checkpoint_every == 0)
                if cfg.checkpoint_every
                else (time.perf_counter() - last_ckpt > cfg.checkpoint_minutes * 60)
            )
            if self.rank == 0 and due and self.step < total:
                self.save_checkpoint()
                last_ckpt = time.perf_counter()
        finished = self.step >= total or (cfg.minutes is not None and self.elapsed >= cfg.minutes * 60)
        if self.rank == 0:
            if self.validation is not None and (not self.last_val or self.last_val.get("step") != self.step):
                self.validate()
            self.save_checkpoint()
        if self.stop.stop and not finished:
            self.emit(
                {
                    "event": "cancelled",
                    "step": self.step,
                    "checkpoint": str(cfg.checkpoint_path()),
                    "reason": self.stop.reason,
                }
            )
            _dist_cleanup(self.world)
            return None
        path = self.export() if self.rank == 0 else None
        self.emit(
            {
                "event": "done",
                "step": self.step,
                "weights": str(path) if path else None,
                "elapsed_s": round(self.elapsed, 1),
                "validation": self.last_val,
            }
        )
        _dist_cleanup(self.world)
        return path

    def _should_stop(self, start: float) -> bool:
        local = self.stop.stop or (
            self.cfg.minutes is not None and time.perf_counter() - start >= self.cfg.minutes * 60
        )
        if self.world > 1:  # every rank must leave the loop at the same step
            flag = torch.tensor([1.0 if local else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            local = bool(flag.item() > 0)
            if local and not self.stop.stop and self.cfg.minutes is None:
                self.stop.stop, self.stop.reason = True, "another rank stopped"
        return local

    def _emit_progress(self, losses: dict[str, list[float]], total: int) -> None:
        rate = self.step / self.elapsed if self.elapsed > 0 else 0.0
        remaining = []
        if self.cfg.steps:
            remaining.append((total - self.step) / rate if rate > 0 else math.inf)
        if self.cfg.minutes:
            remaining.append(self.cfg.minutes * 60 - self.elapsed)
        eta = min(remaining) if remaining else None
        frac = []
        if self.cfg.steps:
            frac.append(self.step / total)
        if self.cfg.minutes:
            frac.append(self.elapsed / (self.cfg.minutes * 60))
        ev = {
            "event": "progress",
            "step": self.step,
            "total_steps": self.cfg.steps,
            "fraction": round(min(1.0, max(frac)) if frac else 0.0, 4),
            "loss": {k: float(np.mean(v)) for k, v in losses.items()},
            "lr": self.optimizer.param_groups[0]["lr"],
            "elapsed_s": round(self.elapsed, 1),
            "eta_s": None if eta is None or not math.isfinite(eta) else round(max(0.0, eta), 1),
        }
        self.history.append(ev)
        self.emit(ev)

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """PSNR/SSIM on the foreground of fixed validation slices, for the EMA model and bicubic."""
        assert self.validation is not None
        eval_model = build_model(self.cfg.arch, self.cfg.scale, **self.arch_args).to(self.device)
        self.ema.copy_to(eval_model)
        eval_model.eval()
        result: dict[str, Any] = {"event": "validation", "step": self.step, "scales": {}}
        for s, pairs in self.validation.pairs.items():
            rows = []
            border = math.ceil(s)
            for lr, hr in pairs:
                sr = eval_model(lr.to(self.device), s).cpu()[0, 0].numpy()
                bic = bicubic_upsample(lr, hr.shape[-2:])[0, 0].numpy()
                h = hr[0, 0].numpy()
                rows.append(_scores(sr, bic, h, border))
            m = np.nanmean(np.array(rows), axis=0)
            result["scales"][f"{s:g}"] = {
                "psnr_fg": float(m[0]),
                "ssim_fg": float(m[1]),
                "bicubic_psnr_fg": float(m[2]),
                "bicubic_ssim_fg": float(m[3]),
                "gain_db": float(m[0] - m[2]),
                "slices": len(rows),
            }
        self.last_val = result
        self.emit(result)
        return result

    # --- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "config": json.loads(json.dumps(asdict(self.cfg), default=str)),
            "step": self.step,
            "elapsed": self.elapsed,
            "model": self.model.state_dict(),
            "ema": self.ema.shadow,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "history_tail": self.history[-50:],
            "last_val": self.last_val,
            "extra": self.extra_state(),
        }

    def load_state(self, st: dict[str, Any]) -> None:
        saved = st.get("config", {})
        if saved.get("arch") != self.cfg.arch:
            raise MedSRError(f"checkpoint is for {saved.get('arch')}, not {self.cfg.arch}", self.cfg.resume)
        self.step = int(st["step"])
        self.elapsed = float(st["elapsed"])
        self.model.load_state_dict(st["model"])
        self.ema.shadow = {k: v.to(self.device) for k, v in st["ema"].items()}
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.sampler.set_state(st["sampler"])
        torch.set_rng_state(st["torch_rng"])
        random.setstate(st["python_rng"])
        self.history = list(st.get("history_tail", []))
        self.last_val = st.get("last_val", {})
        self.load_extra_state(st.get("extra", {}))

    def save_checkpoint(self) -> None:
        save_checkpoint(self.cfg.checkpoint_path(), self.state())
        self.emit({"event": "checkpoint", "step": self.step, "path": str(self.cfg.checkpoint_path())})

    def export(self) -> Path:
        """Write the EMA weights with their card (data, recipe, steps, time, validation vs bicubic)."""
        model = build_model(self.cfg.arch, self.cfg.scale, **self.arch_args)
        self.ema.copy_to(model)
        cfg = self.cfg
        card = {
            "arch": cfg.arch,
            "args": self.arch_args,
            "scale": cfg.scale,
            "scales_trained": list(cfg.scales()),
            "parameters": count_parameters(model),
            "data": [str(_rel(p)) for p in cfg.data],
            "validation_data": [str(_rel(p)) for p in cfg.val_data],
            "training_spacing_mm": [
                round(min(self.bank.in_plane_spacing), 4),
                round(max(self.bank.in_plane_spacing), 4),
            ],
            "modalities": sorted(self.bank.modalities),
            "recipe": {
                "loss": cfg.loss,
                "optimizer": "Adam",
                "lr": cfg.lr,
                "lr_gamma": cfg.lr_gamma,
                "lr_step": self.scheduler.step_size,
                "batch_size": cfg.batch_size * self.world,
                "patch": cfg.patch,
                "blur": cfg.blur,
                "ema": cfg.ema,
                "seed": cfg.seed,
                "init": str(_rel(cfg.init)) if cfg.init else None,
                **self.recipe_extra(),
            },
            "steps": self.step,
            "train_seconds": round(self.elapsed, 1),
            "device": str(self.device),
            "validation": self.last_val.get("scales", {}),
            "paper": self.card.paper,
            "departures": self.card.departures,
            **cfg.card_extra,
        }
        save_weights(model, cfg.out, arch=cfg.arch, args=self.arch_args, scale=cfg.scale, card=card)
        return cfg.out

    def recipe_extra(self) -> dict[str, Any]:
        return {}

    # --- helpers -------------------------------------------------------------------------------
    def _seed_everything(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _load_init(self, path: Path) -> str:
        """Transfer learning: copy every tensor whose name and shape match (upsamplers may differ)."""
        loaded = load_weights(path, expected_arch=self.cfg.arch)
        src = loaded.model.state_dict()
        dst = self.model.state_dict()
        taken = {k: v for k, v in src.items() if k in dst and dst[k].shape == v.shape}
        dst.update(taken)
        self.model.load_state_dict(dst)
        return f"initialised {len(taken)}/{len(dst)} tensors from {Path(path).name}"


def _scores(sr: np.ndarray, bic: np.ndarray, hr: np.ndarray, border: int) -> list[float]:
    from engine.metrics import crop_border, foreground_mask

    s, b, h = crop_border(sr, border), crop_border(bic, border), crop_border(hr, border)
    rng = float(h.max() - h.min()) or 1.0
    mask = foreground_mask(h)
    return [psnr(s, h, rng, mask), ssim(s, h, rng, mask), psnr(b, h, rng, mask), ssim(b, h, rng, mask)]


def _rel(p: Path | None) -> Path | None:
    if p is None:
        return None
    p = Path(p)
    for anchor in ("shared/data/",):
        text = str(p)
        if anchor in text:
            return Path(text[text.index(anchor) :])
    return Path(p.name)


def _dist_rank_world() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    if world > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _ddp_device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _dist_cleanup(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def json_line_emitter(stream=None) -> Emit:
    stream = stream or sys.stdout

    def emit(ev: dict[str, Any]) -> None:
        stream.write(json.dumps(ev) + "\n")
        stream.flush()

    return emit
