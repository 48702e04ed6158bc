"""Scroll-to-zoom with arbitrary-scale SR: encode a slice once, then render any visible region at any
display scale, fast enough to follow the mouse wheel (no Qt here: the viewer calls it from workers).

``ZoomEngine`` wraps an arbitrary-scale ``Upscaler`` (Meta-SRGAN). ``encode(key, slice, normalizer)``
runs the trunk and the per-slice Meta-Upscale maps once and keeps them in a small LRU cache by key
(e.g. (volume id, axis, slice index)); ``render(key, scale, box)`` returns exactly the region
box = (y0, x0, y1, x1) (output pixels at that scale, end exclusive) of the SR at exactly that scale
(never snapped to a nearby one), in the slice's original units; ``placeholder(slice, scale, box)``
returns bicubic of the same region, to show while SR is computed. The halo the network needs comes
from the whole encoded slice, so a region equals the same crop of the whole SR image (LIIF's
"encode once, query in chunks").

Outside the trained range the result says what it is, never silently: below it, bicubic; above it,
SR at the top of the range then bicubic the rest of the way (``source``, ``note``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from engine.devices import intra_op_threads
from engine.errors import ModelError
from engine.fast import native
from engine.fast.inference_form import FastMetaSRGAN, inference_form
from engine.fast.meta_upscale import MetaMaps
from engine.fast.resample import axis_weights, bicubic_resize_box
from engine.inference import Upscaler
from engine.models.blocks import bicubic_axis
from engine.models.registry import output_size
from engine.normalization import Normalizer

Box = tuple[int, int, int, int]
Source = Literal["sr", "bicubic", "sr+bicubic"]
DEFAULT_CAPACITY = 4  # encoded slices kept (about 50 MB each for a 256^2 slice and the shipped network)


@dataclass(frozen=True)
class ZoomResult:
    """One rendered region: ``image`` (y1-y0, x1-x0) float32 in original units; ``shown``, where asked
    for, the same windowed to uint8 for display (see ``windowed``)."""

    image: np.ndarray
    scale: float
    box: Box
    source: Source
    note: str = ""
    shown: np.ndarray | None = None


def windowed(values: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    """``values`` as pyqtgraph shows them through ``levels``: (v - lo) * 255 / (hi - lo), clipped to
    0..255, truncated to uint8. A display image built here paints without pyqtgraph's float pass."""
    lo, hi = levels
    gain = np.float32(255.0 / (hi - lo if hi != lo else 1.0))
    out = (np.asarray(values, dtype=np.float32) - np.float32(lo)) * gain
    return np.clip(out, 0.0, 255.0, out=out).astype(np.uint8)


@dataclass(frozen=True)
class EncodedSlice:
    """What ``encode`` keeps per slice."""

    key: Hashable
    image: np.ndarray  # the slice in original units (for bicubic below the trained range)
    normalizer: Normalizer
    maps: MetaMaps
    encode_ms: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.maps.shape

    @property
    def nbytes(self) -> int:
        return self.maps.nbytes + self.image.nbytes


def range_source(scale: float, sr_range: tuple[float, float]) -> tuple[Source, str]:
    """What ``render`` returns at ``scale`` for a network trained on ``sr_range``, and the note that says
    so (empty inside the range): a viewer can label a view before its SR is ready."""
    lo, hi = sr_range
    if scale < lo - 1e-9:
        return "bicubic", f"below trained range ({lo:g}-{hi:g}): bicubic x{scale:.3g}"
    if scale <= hi + 1e-9:
        return "sr", ""
    return "sr+bicubic", f"beyond trained range: SR x{hi:g} + bicubic x{scale / hi:.3g}"


def clip_box(box: Box, size: tuple[int, int]) -> Box | None:
    """``box`` intersected with an output of ``size`` (H, W); None when nothing of it is visible."""
    y0, x0, y1, x1 = max(0, box[0]), max(0, box[1]), min(size[0], box[2]), min(size[1], box[3])
    return (y0, x0, y1, x1) if y0 < y1 and x0 < x1 else None


def _check_box(box: Box, size: tuple[int, int], scale: float) -> Box:
    y0, x0, y1, x1 = (int(v) for v in box)
    if not (0 <= y0 < y1 <= size[0] and 0 <= x0 < x1 <= size[1]):
        raise ValueError(f"box {box} is not inside the {size[0]}x{size[1]} output at x{scale:g} "
                         "(clip it with engine.zoom.clip_box)")
    return y0, x0, y1, x1


def _check_scale(scale: float) -> float:
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale}")
    return scale


class ZoomEngine:
    """Encode once per slice, render regions at any scale (see the module docstring)."""

    def __init__(self, upscaler: Upscaler, capacity: int = DEFAULT_CAPACITY):
        if not upscaler.card.arbitrary_scale or not hasattr(upscaler.model, "encode"):
            raise ModelError(f"{upscaler.name} is not an arbitrary-scale SR network (zoom needs meta_srgan)")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.upscaler = upscaler
        runner = upscaler.runner
        fast = runner if isinstance(runner, FastMetaSRGAN) else inference_form(upscaler.model)
        self.net: FastMetaSRGAN = fast
        self.sr_range: tuple[float, float] = upscaler.card.scale_range  # type: ignore[assignment]
        self.capacity = capacity
        self._cache: OrderedDict[Hashable, EncodedSlice] = OrderedDict()
        self._lock = threading.Lock()

    # --- the cache ------------------------------------------------------------------------------
    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._cache

    def keys(self) -> list[Hashable]:
        """Encoded keys, least recently used first."""
        with self._lock:
            return list(self._cache)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._cache.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._cache.values())

    def encoded(self, key: Hashable) -> EncodedSlice:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                raise LookupError(f"slice {key!r} is not encoded (call ZoomEngine.encode first)")
            self._cache.move_to_end(key)
            return entry

    # --- work -----------------------------------------------------------------------------------
    def encode(self, key: Hashable, image: np.ndarray, normalizer: Normalizer | None = None,
               threads: int | None = None) -> EncodedSlice:
        """Run the trunk and the Meta-Upscale maps of one 2D slice (original units) and cache them.

        Pass the volume's normaliser so that every slice is normalised alike (fitted on the slice if None);
        ``threads``: torch CPU threads for this encode (default: the caller's).
        """
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2 or min(image.shape) < 2:
            raise ValueError(f"encode needs a 2D slice of at least 2x2 pixels, got shape {image.shape}")
        norm = normalizer or Normalizer.fit(image)
        t0 = time.perf_counter()
        lr = torch.from_numpy(norm.forward(image))[None, None].to(self.upscaler.device)
        with torch.inference_mode(), intra_op_threads(threads):
            maps = self.net.encode(lr)
        entry = EncodedSlice(key, image, norm, maps, (time.perf_counter() - t0) * 1000.0)
        with self._lock:
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return entry

    def output_shape(self, key: Hashable, scale: float) -> tuple[int, int]:
        """(H, W) of the whole slice at ``scale``: boxes live inside it."""
        h, w = self.encoded(key).shape
        return output_size(h, w, _check_scale(scale))

    def render(self, key: Hashable, scale: float, box: Box, *, method: str = "auto") -> ZoomResult:
        """The region ``box`` of the slice ``key`` at display scale ``scale``, in original units."""
        entry = self.encoded(key)
        scale = _check_scale(scale)
        h, w = entry.shape
        size = output_size(h, w, scale)
        box = _check_box(box, size, scale)
        hi = self.sr_range[1]
        source, note = range_source(scale, self.sr_range)
        if source == "bicubic":
            return ZoomResult(_bicubic_region(entry.image, size, box), scale, box, source, note)
        with torch.inference_mode():
            if source == "sr":
                sr = self.net.decode(entry.maps, scale, box, method)
                return ZoomResult(self._original_units(sr, entry), scale, box, "sr")
            # Beyond the trained range: SR at the top of the range, then bicubic the rest of the way,
            # reading only the region of the SR image that the requested box needs.
            top = output_size(h, w, hi)
            like = entry.maps.lr
            wy, wx = axis_weights(top[0], size[0], like), axis_weights(top[1], size[1], like)
            r0, r1 = _support(top[0], size[0], box[0], box[2])
            c0, c1 = _support(top[1], size[1], box[1], box[3])
            sr = self.net.decode(entry.maps, hi, (r0, c0, r1, c1), method)
            rows, cols = wy.matrix[box[0]:box[2], r0:r1], wx.matrix[box[1]:box[3], c0:c1]
            up = torch.matmul(torch.matmul(rows, sr), cols.t())
        return ZoomResult(self._original_units(up, entry), scale, box, source, note)

    @staticmethod
    def placeholder(image: np.ndarray, scale: float, box: Box,
                    levels: tuple[float, float] | None = None) -> ZoomResult:
        """Bicubic of the region ``box`` of ``image`` (original units) at ``scale``, until SR is ready
        (needs no encoded slice: a viewer shows it before the first encode is done). With ``levels``,
        also ``shown``: the region windowed for display."""
        image = np.asarray(image, dtype=np.float32)
        scale = _check_scale(scale)
        size = output_size(image.shape[0], image.shape[1], scale)
        box = _check_box(box, size, scale)
        # one native call where built: no torch call, each of which would give the GIL up to workers
        fused = native.bicubic_box_shown(image, size, box, levels) if levels is not None else None
        if fused is not None:
            region, shown = fused
        else:
            region = _bicubic_region(image, size, box)
            shown = windowed(region, levels) if levels is not None else None
        return ZoomResult(region, scale, box, "bicubic", "placeholder", shown)

    @staticmethod
    def _original_units(sr: torch.Tensor, entry: EncodedSlice) -> np.ndarray:
        return entry.normalizer.inverse(sr.reshape(sr.shape[-2:]).cpu().numpy())


def _bicubic_region(image: np.ndarray, size: tuple[int, int], box: Box) -> np.ndarray:
    region = native.bicubic_box(image, size, box)  # no torch call: each would release the GIL
    if region is not None:
        return region
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
        return bicubic_resize_box(x, size, box)[0, 0].numpy()


def _support(in_size: int, out_size: int, start: int, stop: int) -> tuple[int, int]:
    """The input range that output indices start..stop-1 of a bicubic axis read."""
    taps, _ = bicubic_axis(in_size, out_size, start, stop)
    return int(taps.min()), int(taps.max()) + 1
