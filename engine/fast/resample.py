"""Bicubic interpolation as small banded matrix products: rows, then columns, for an image or a box.

torch's ``interpolate(mode="bicubic")`` evaluates 16 taps per output pixel (0.7 ms for 80^2 -> 320^2
on one core). Bicubic is separable: out = Wy @ x @ Wx^T with per-axis weight matrices (four non-zeros
per row: Keys a = -0.75, taps clamped at the border, align_corners=False, the coordinates of
``engine.models.blocks.bicubic_axis``). The matrices are banded, so each block of output rows is one
matrix product with the few input rows it reads. Same values as ``bicubic_upsample_box`` up to float
summation order. Boxes build the weights of their own rows and columns; whole-axis matrices
(``axis_weights``, for callers that index them) depend only on the sizes and are cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from engine.fast.native import bicubic_box as native_bicubic_box
from engine.models.blocks import bicubic_axis

_CACHE = 64  # axis weight tables kept
_BLOCK = 64  # output rows (columns) per matrix product


@dataclass(frozen=True)
class _AxisWeights:
    matrix: torch.Tensor  # (out, in)
    first: list[int]  # per block of _BLOCK outputs: first input index read
    stop: list[int]  # ... and one past the last

    def blocks(self, start: int, stop: int):
        """(a, b, lo, hi): output range a..b-1 of start..stop-1 and the input range lo..hi-1 it reads."""
        for a in range(start, stop, _BLOCK):
            b = min(stop, a + _BLOCK)
            lo = min(self.first[a // _BLOCK: (b - 1) // _BLOCK + 1])
            hi = max(self.stop[a // _BLOCK: (b - 1) // _BLOCK + 1])
            yield a, b, lo, hi


def _axis_weights(in_size: int, out_size: int, like: torch.Tensor) -> _AxisWeights:
    taps, weights = bicubic_axis(in_size, out_size, 0, out_size)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    matrix.scatter_add_(1, taps, weights)
    first, stop = [], []
    for a in range(0, out_size, _BLOCK):
        block = taps[a: a + _BLOCK]
        first.append(int(block.min()))
        stop.append(int(block.max()) + 1)
    return _AxisWeights(matrix.to(like), first, stop)


_TABLES: OrderedDict[tuple, _AxisWeights] = OrderedDict()
_TABLES_LOCK = threading.Lock()


def _cached(table: OrderedDict, key: tuple, build):
    """``table[key]``, built by ``build()`` on a miss; least recently used entries beyond _CACHE go."""
    with _TABLES_LOCK:
        hit = table.get(key)
        if hit is not None:
            table.move_to_end(key)
            return hit
    hit = build()
    with _TABLES_LOCK:
        table[key] = hit
        while len(table) > _CACHE:
            table.popitem(last=False)
    return hit


def axis_weights(in_size: int, out_size: int, like: torch.Tensor) -> _AxisWeights:
    """The (cached) bicubic weights of one axis, in ``like``'s dtype and device."""
    return _cached(_TABLES, (in_size, out_size, like.dtype, like.device),
                   lambda: _axis_weights(in_size, out_size, like))


def bicubic_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``bicubic_upsample(x, size)``: (N, C, h, w) -> (N, C, H, W)."""
    return bicubic_resize_box(x, size, (0, 0, *size))


def bicubic_resize_box(x: torch.Tensor, size: tuple[int, int],
                       box: tuple[int, int, int, int]) -> torch.Tensor:
    """The region box = (y0, x0, y1, x1) of ``bicubic_resize(x, size)``, computed for that region only.

    The weights are built for the box's rows and columns only (a zoom changes the output size at every
    wheel step, so a cached whole-axis matrix would be rebuilt, 1-3 ms, for every frame), and kept
    for the next call with the same box. With the native kernels built, one native call does it."""
    native = native_bicubic_box(x, size, box)
    if native is not None:
        return native
    y0, x0, y1, x1 = box
    row_blocks = _box_blocks(x.shape[-2], size[0], y0, y1, x)
    col_blocks = _box_blocks(x.shape[-1], size[1], x0, x1, x)
    c_lo, c_hi = min(b[2] for b in col_blocks), max(b[3] for b in col_blocks)
    along_y = x.new_empty(*x.shape[:-2], y1 - y0, c_hi - c_lo)
    for a, b, lo, hi, weights in row_blocks:
        torch.matmul(weights, x[..., lo:hi, c_lo:c_hi], out=along_y[..., a - y0: b - y0, :])
    out = x.new_empty(*x.shape[:-2], y1 - y0, x1 - x0)
    for a, b, lo, hi, weights in col_blocks:
        torch.matmul(along_y[..., lo - c_lo: hi - c_lo], weights.t(), out=out[..., a - x0: b - x0])
    return out


_BOXES: OrderedDict[tuple, list] = OrderedDict()


def _box_blocks(in_size: int, out_size: int, start: int, stop: int, like: torch.Tensor):
    """Per block of at most _BLOCK outputs of start..stop-1: (a, b, lo, hi, weights (b-a, hi-lo)).

    Cached (a few KB each): a fixed-scale network's skip asks for the same whole-image boxes at every
    slice, and building them is ~20 small tensor operations (0.5 ms of an 80^2 -> 320^2 upscale)."""
    return _cached(_BOXES, (in_size, out_size, start, stop, like.dtype, like.device),
                   lambda: _build_box_blocks(in_size, out_size, start, stop, like))


def _build_box_blocks(in_size: int, out_size: int, start: int, stop: int, like: torch.Tensor):
    taps, weights = bicubic_axis(in_size, out_size, start, stop)
    blocks = []
    for a in range(start, stop, _BLOCK):
        b = min(stop, a + _BLOCK)
        t = taps[a - start: b - start]
        lo, hi = int(t.min()), int(t.max()) + 1
        matrix = torch.zeros(b - a, hi - lo, dtype=torch.float64)
        matrix.scatter_add_(1, t - lo, weights[a - start: b - start])
        blocks.append((a, b, lo, hi, matrix.to(like)))
    return blocks
