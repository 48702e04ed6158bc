"""Run any registered network on a slice, a region of a slice, or a whole volume.

Intensities are normalised inside and inverted on the way out, so results keep the input's units.
Large inputs run in overlapping tiles whose halo covers the network's receptive field, so the tiled
result equals the untiled one (MONAI's sliding-window idea). A CUDA out-of-memory retries with smaller
tiles, then on the CPU, and says so in ``Upscaler.notes``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from engine.devices import is_out_of_memory, resolve_device
from engine.errors import Cancelled, ModelError
from engine.fast.inference_form import inference_form
from engine.geometry import resampled_affine
from engine.models import build_model, get_card
from engine.models.registry import ModelCard, get_entry, output_size
from engine.normalization import Normalizer
from engine.volume import Volume
from engine.weights import load_weights, shipped_weights_path

log = logging.getLogger(__name__)

DEFAULT_TILE = 256  # LR pixels per tile side
MIN_TILE = 48
PLANE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


@dataclass(frozen=True)
class Progress:
    """One step of long work: ``done`` of ``total`` units finished."""

    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


class Upscaler:
    """A network ready to run: weights loaded, device chosen, fused for inference where possible.

    ``model`` is the network as trained (parameter names intact); ``runner`` is what runs: its fast
    inference form (``engine.fast.inference_form``, equal outputs within 1e-4), or the model itself
    with ``fast=False``.
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        *,
        scale: float | None,
        device: str | torch.device = "auto",
        weights_sha256: str = "",
        weights_card: dict | None = None,
        weights_path: Path | None = None,
        tile: int = DEFAULT_TILE,
        fast: bool = True,
    ):
        self.name = name
        self.card: ModelCard = get_card(name)
        self.scale = scale  # fixed scale of the weights; None for arbitrary-scale networks
        self.weights_sha256 = weights_sha256
        self.weights_card = weights_card or {}
        self.weights_path = weights_path
        self.tile = tile
        self.notes: list[str] = []
        self.device = resolve_device(device)
        self.model = prepare_for_inference(model).to(self.device)
        self.fast = fast
        self.runner = inference_form(self.model) if fast else self.model

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        name: str,
        scale: float,
        *,
        weights: Path | None = None,
        device: str | torch.device = "auto",
        fast: bool = True,
    ) -> Upscaler:
        """The shipped (or given) weights of ``name`` for ``scale``; bicubic needs none.
        ``fast=False`` runs the eager model instead of its inference form (a reference for tests)."""
        card = get_card(name)
        if not card.serves(scale):
            raise ModelError(f"{name} does not serve x{scale:g}" + _served(card))
        if not getattr(get_entry(name).cls, "needs_weights", True) and weights is None:
            return cls(name, build_model(name, scale), scale=None, device=device, fast=fast)
        path = Path(weights) if weights is not None else shipped_weights_path(name, scale)
        if weights is None and not path.exists():
            raise ModelError(
                f"{name} x{scale:g} has no trained weights yet ({path.name} missing); train them with "
                f"`medsr train --arch {name} --scale {scale:g} --data DIR --out {path.name}` "
                "or pass --weights"
            )
        loaded = load_weights(
            path, expected_arch=name, expected_scale=None if card.arbitrary_scale else scale
        )
        return cls(
            name,
            loaded.model,
            scale=loaded.scale,
            device=device,
            weights_sha256=loaded.sha256,
            weights_card=loaded.card,
            weights_path=path,
            fast=fast,
        )

    @property
    def label(self) -> str:
        """Short provenance label: model, weights hash."""
        short = self.weights_sha256[:12] if self.weights_sha256 else "no weights"
        return f"{self.name} ({short})"

    def check_scale(self, scale: float) -> None:
        if self.scale is not None and abs(scale - self.scale) > 1e-6:
            raise ModelError(f"{self.name} weights serve x{self.scale:g}, not x{scale:g}")
        if not self.card.serves(scale):
            raise ModelError(f"{self.name} does not serve x{scale:g}" + _served(self.card))

    # --- normalised tensors ---------------------------------------------------------------------
    @torch.inference_mode()
    def run_normalized(self, lr: torch.Tensor, scale: float) -> torch.Tensor:
        """(N,1,h,w) normalised LR -> (N,1,H,W) normalised SR, tiled, with OOM fallback."""
        self.check_scale(scale)
        tile = self.tile
        while True:
            try:
                return self._run_tiled(lr.to(self.device), scale, tile).cpu()
            except RuntimeError as exc:
                if not is_out_of_memory(exc) or self.device.type == "cpu":
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if tile > MIN_TILE:
                    tile = max(MIN_TILE, tile // 2)
                    self._note(f"{self.device} out of memory: retrying {self.name} with {tile}px tiles")
                else:
                    self._note(
                        f"{self.device} out of memory even with small tiles: {self.name} now runs on CPU"
                    )
                    self.device = torch.device("cpu")
                    self.model = self.model.to(self.device)
                    self.runner = self.runner.to(self.device)

    def _note(self, text: str) -> None:
        log.warning(text)
        self.notes.append(text)

    def _forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return self.runner(x, scale)

    def _run_tiled(self, lr: torch.Tensor, scale: float, tile: int) -> torch.Tensor:
        h, w = lr.shape[-2:]
        if hasattr(self.model, "encode"):
            return self._run_encode_decode(lr, scale, tile)
        if (h <= tile and w <= tile) or not float(scale).is_integer():
            return self._forward(lr, scale)
        s = int(scale)
        halo = int(getattr(self.model, "receptive_radius", 16)) + 2
        out = torch.empty((lr.shape[0], 1, h * s, w * s), dtype=lr.dtype, device=lr.device)
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
                ya, xa = max(0, y0 - halo), max(0, x0 - halo)
                yb, xb = min(h, y1 + halo), min(w, x1 + halo)
                sr = self._forward(lr[..., ya:yb, xa:xb], scale)
                oy, ox = (y0 - ya) * s, (x0 - xa) * s
                out[..., y0 * s : y1 * s, x0 * s : x1 * s] = sr[
                    ..., oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s
                ]
        return out

    def _run_encode_decode(self, lr: torch.Tensor, scale: float, tile: int) -> torch.Tensor:
        """Arbitrary-scale networks: encode once, decode the output in bands of rows (bounded memory)."""
        enc = self.runner.encode(lr)
        oh, ow = output_size(lr.shape[-2], lr.shape[-1], scale)
        band = max(8, (tile * tile) // max(1, ow))
        parts = [self.runner.decode(enc, scale, (y0, 0, min(oh, y0 + band), ow)) for y0 in range(0, oh, band)]
        return torch.cat(parts, dim=-2)

    # --- arrays in original units ---------------------------------------------------------------
    def upscale_slice(
        self, image: np.ndarray, scale: float, normalizer: Normalizer | None = None
    ) -> np.ndarray:
        """One 2D slice in original units -> its SR in the same units."""
        return self.upscale_stack(np.asarray(image)[None], scale, normalizer)[0]

    def upscale_stack(
        self, stack: np.ndarray, scale: float, normalizer: Normalizer | None = None, batch: int | None = None
    ) -> np.ndarray:
        """(N, h, w) slices -> (N, H, W); one normaliser for the whole stack (fitted on it if None)."""
        out = None
        for item in self.iter_stack(stack, scale, normalizer, batch):
            if isinstance(item, np.ndarray):
                out = item
        assert out is not None
        return out

    def iter_stack(
        self,
        stack: np.ndarray,
        scale: float,
        normalizer: Normalizer | None = None,
        batch: int | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> Iterator[Progress | np.ndarray]:
        """Yield Progress after each batch of slices, then the (N, H, W) result in original units."""
        stack = np.asarray(stack, dtype=np.float32)
        norm = normalizer or Normalizer.fit(stack)
        n, h, w = stack.shape
        batch = batch or self.default_batch(h, w)
        oh, ow = output_size(h, w, scale)
        out = np.empty((n, oh, ow), dtype=np.float32)
        label = f"{self.name} x{scale:g}"

        def run(i: int) -> np.ndarray:
            x = torch.from_numpy(norm.forward(stack[i : i + batch]))[:, None]
            return norm.inverse(self.run_normalized(x, scale)[:, 0].numpy())

        starts = list(range(0, n, batch))
        workers = self.stack_workers(len(starts))
        if workers <= 1:
            for i in starts:
                if cancel is not None and cancel():
                    raise Cancelled()
                out[i : i + batch] = run(i)
                yield Progress(min(n, i + batch), n, label)
        else:
            yield from self._iter_parallel(run, starts, batch, n, out, workers, label, cancel)
        yield out

    def stack_workers(self, batches: int) -> int:
        """Batches run side by side on the CPU, one intra-op thread each: small-op networks (the CARN
        family) use two cores far better that way than with two threads per op (New CARN x2, 256^2
        slices: 2.5-5x the throughput on the development CPU under load). 1 on a GPU."""
        if self.device.type != "cpu":
            return 1
        return max(1, min(torch.get_num_threads(), batches))

    def _iter_parallel(self, run, starts, batch, n, out, workers, label, cancel) -> Iterator[Progress]:
        """``workers`` batches in flight, results and Progress in order. torch's thread count is per OS
        thread (workers set 1), but threads created meanwhile inherit the last setting: restored after."""
        threads = torch.get_num_threads()
        pool = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,))
        try:
            pending: deque = deque()
            queued = 0
            while queued < len(starts) or pending:
                if cancel is not None and cancel():
                    raise Cancelled()
                while queued < len(starts) and len(pending) < workers:
                    pending.append((starts[queued], pool.submit(run, starts[queued])))
                    queued += 1
                i, future = pending.popleft()
                out[i : i + batch] = future.result()
                yield Progress(min(n, i + batch), n, label)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)

    def default_batch(self, h: int, w: int) -> int:
        """Slices per forward pass. On the CPU a 256^2 slice already amortises every op, and batches
        only add memory traffic (New CARN x2 of 256x256x176: batch 1, 4, 8 within 5 %, 16 four times
        slower: bench/models.py --volume), so ~64k LR pixels per pass; a GPU wants ~1M."""
        budget = 1 << 20 if self.device.type == "cuda" else 1 << 16
        return int(min(16, max(1, budget // max(1, h * w))))

    def timed_slice(
        self, image: np.ndarray, scale: float, normalizer: Normalizer | None = None
    ) -> tuple[np.ndarray, float]:
        """Upscale one slice and return (result, milliseconds)."""
        t0 = time.perf_counter()
        res = self.upscale_slice(image, scale, normalizer)
        return res, (time.perf_counter() - t0) * 1000.0


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """Eval mode, re-parameterised blocks fused (FMEN), weight-norm parametrisations baked into plain
    weights (otherwise every forward recomputes them: 5x slower for New CARN at 256^2)."""
    model = model.eval()
    fuse = getattr(model, "fuse", None)
    if callable(fuse):
        model = fuse() or model
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def _served(card: ModelCard) -> str:
    if card.scale_range:
        return f" (serves {card.scale_range[0]:g}-{card.scale_range[1]:g})"
    return " (serves " + ", ".join(f"x{s:g}" for s in card.scales) + ")"


def plane_axis(volume: Volume, plane: str | int | None) -> int:
    """The axis normal to the slicing plane: default = the acquisition plane (finest two axes)."""
    if plane is None or plane == "acquisition":
        return volume.acquisition_axis
    if isinstance(plane, int) or (isinstance(plane, str) and plane.isdigit()):
        axis = int(plane)
        if axis not in (0, 1, 2):
            raise ModelError(f"plane axis must be 0, 1 or 2, got {axis}")
        return axis
    try:
        return PLANE_AXES[plane.lower()]
    except KeyError:
        raise ModelError(
            f"unknown plane {plane!r} (axial, coronal, sagittal, acquisition or 0/1/2)"
        ) from None


def upscale_volume(
    volume: Volume,
    upscaler: Upscaler,
    scale: float,
    *,
    plane: str | int | None = None,
    batch: int | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, Volume]:
    """Upscale every slice in-plane; yields Progress, returns the new Volume (generator return value).

    The two in-plane axes grow by ``scale``; the affine keeps the physical extent and origin.
    """
    axis = plane_axis(volume, plane)
    stack = np.moveaxis(volume.data, axis, 0)
    if min(stack.shape[1:]) < 2:
        raise ModelError(
            f"{volume.source}: the plane is {stack.shape[1]}x{stack.shape[2]}, too small to upscale"
        )
    norm = Normalizer.fit(volume.data)
    result = None
    for item in upscaler.iter_stack(stack, scale, norm, batch, cancel):
        if isinstance(item, Progress):
            yield item
        else:
            result = item
    assert result is not None
    data = np.moveaxis(result, 0, axis)
    affine = resampled_affine(volume.affine, volume.shape, data.shape)
    meta = {k: v for k, v in volume.metadata.items() if k != "series"}
    meta["derived_from"] = str(volume.source) if volume.source else ""
    meta["sr"] = {
        "model": upscaler.name,
        "scale": float(scale),
        "weights_sha256": upscaler.weights_sha256,
        "plane_axis": axis,
        "note": "super-resolved (SR), not acquired data; not for primary diagnosis",
    }
    desc = f"SR {upscaler.name} x{scale:g} of {volume.description}".strip()
    return Volume(data, affine, volume.modality, desc, volume.source, meta)


def run_to_completion(
    gen: Generator[Progress, None, Volume], on_progress: Callable[[Progress], None] | None = None
) -> Volume:
    """Drive an ``upscale_volume`` generator and return its Volume."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(p)
