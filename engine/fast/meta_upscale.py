"""Meta-Upscale decoding at interactive speed: the weight-prediction MLP folded into the features.

Meta-SR (Hu et al., CVPR 2019) predicts a 3x3xC kernel per output pixel from (oy, ox, 1/s) with an
MLP 3 -> hidden (ReLU) -> 9C and contracts it with the 3x3 feature neighbourhood of the pixel's LR
position p. The second layer is linear, so with z = W1 (oy, ox, 1/s) + b1 the residual is

    r(i, j) = sum_k relu(z_k(i, j)) * G_k(p) + G_bias(p),

where G_k is the trunk features convolved with the second layer's weights of hidden unit k, once per
slice. z separates into a row term u(i) = w_row*oy + w_scale/s + b1 and a column term v(j) = w_col*ox,
and relu(u + v) = max(u, -v) + v. So a pixel costs a maximum and a multiply-add per hidden unit,
instead of predicting its 9C kernel (hidden x 9C multiply-adds: zoom scales rarely repeat offsets).

Units whose pre-activation has one sign over every offset and scale served are linear (or zero):
they, the bias and every v term fold into four LR maps (r = oy*Qy + ox*Qx + Qs/s + Q0 + ...), so the
convolution at encode computes 4 + (number of "mixed" units) maps, not hidden + 1 (``MetaMaps``).

Where ``engine.fast.native`` is built, a request is one native pass (``native``: the pixelwise sum
with each pixel's units in AVX2 vectors, 2-5x faster than either torch form). Otherwise, two exact
torch formulations, chosen by an operation-count cost model:

- ``gemm``: when offsets repeat (integer and simple rational scales) the coefficients of each offset
  class are applied to every LR pixel of the region in one GEMM, then each output pixel picks its
  class: costs (classes / s^2) times the per-pixel form, at GEMM speed.
- ``pixelwise``: the mixed units evaluated per pixel, on output rows grouped by LR row (G gathered
  once per group and output column), in bands small enough to stay in cache: maximum, multiply, sum.

All three equal ``MetaSRGAN.decode`` up to float32 summation order (tests: within 1e-4).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.fast import native as native_kernels
from engine.fast.resample import bicubic_resize_box
from engine.models.blocks import source_coordinates
from engine.models.meta_srgan import MetaSRGAN
from engine.models.registry import output_size

# Cost model, nanoseconds per element, fitted to 512^2 viewports on the development CPU (Zen 5, one
# thread, torch 2.13; bench/zoom_engine.py prints the plans it picks): the pixelwise form's
# maximum + multiply + sum per (slot, unit); a gathered G element; the GEMM form's read of one G
# element of the region and its multiply-add per offset class (memory-bound: few classes).
# (Also measured: folding the units whose sign is fixed over a box and gathering the others per band
# never paid for its gather; grouping columns never beat one gathered G vector per output column.)
NS_PIXELWISE = 0.28
NS_GATHER = 0.2
NS_GEMM_READ = 0.45
NS_GEMM_MAC = 0.024
_BAND_ELEMENTS = 1 << 20  # working set of one band of the pixelwise form (4 MB of float32)
_SCALE_TABLES = 32  # per-scale row/column tables kept (a zoom sequence revisits its scales)
_OFFSET_RANGE = (-0.5, 1.0)  # centred offsets: [0, 1) inside the image, down to -0.5 at a clamped border


@dataclass(frozen=True)
class MetaMaps:
    """What one slice needs for any number of decodes, pixel-major at LR resolution: the four linear
    maps q (N, h, w, 4) = (Qy, Qx, Qs, Q0), the mixed units' maps g (N, h, w, M) and the LR input
    (N, 1, h, w) for the bicubic skip."""

    q: torch.Tensor
    g: torch.Tensor
    lr: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.lr.shape[-2]), int(self.lr.shape[-1])

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.q, self.g, self.lr))


@dataclass(frozen=True)
class _Axis:
    """One output axis of a box: per output index its LR pixel, its exact offset class, its offset."""

    pixel: torch.Tensor  # (n,) int64
    remainder: torch.Tensor  # (n,) int64: offset = remainder / den exactly
    offset: torch.Tensor  # (n,) float32


def _axis(in_size: int, out_size: int, start: int, stop: int) -> _Axis:
    num, den = source_coordinates(in_size, out_size, start, stop)
    pixel = torch.div(num, den, rounding_mode="floor").clamp(0, in_size - 1)
    remainder = num - pixel * den
    return _Axis(pixel, remainder, (remainder.double() / den).float())


@dataclass(frozen=True)
class _Groups:
    """Output indices of one axis grouped by LR pixel, at most ``n`` per group (padded slots)."""

    n: int
    pixel: torch.Tensor  # (groups,) LR pixel of each group
    slot: torch.Tensor  # (len,) slot (group * n + position) of every output index
    source: torch.Tensor  # (groups * n,) the output index (box-relative) in each slot; padding -> 0

    @property
    def count(self) -> int:
        return len(self.pixel)


def _groups(pixel: np.ndarray, n: int) -> _Groups:
    """Split runs of equal LR pixel into groups of at most n consecutive output indices."""
    length = len(pixel)
    new_run = np.ones(length, dtype=bool)
    new_run[1:] = pixel[1:] != pixel[:-1]
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(length), 0))
    position = np.arange(length) - run_start
    new_group = new_run | (position % n == 0)
    group = np.cumsum(new_group) - 1
    slot = group * n + position % n
    source = np.zeros(int(group[-1] + 1) * n, dtype=np.int64)
    source[slot] = np.arange(length)
    return _Groups(n, torch.from_numpy(pixel[new_group].copy()), torch.from_numpy(slot),
                   torch.from_numpy(source))


def _slot_counts(pixel: np.ndarray, n: int) -> tuple[int, int]:
    """(slots, groups) of ``_groups(pixel, n)`` without building it."""
    _, counts = np.unique(pixel, return_counts=True)
    groups = int(np.sum(-(-counts // n)))
    return groups * n, groups


@dataclass(frozen=True)
class DecodePlan:
    """How one box is decoded, and the cost model's estimates in nanoseconds (for benchmarks, tests)."""

    method: str  # "gemm" or "pixelwise"
    classes: int  # unique (row offset, column offset) pairs in the box
    mixed: int  # hidden units evaluated per pixel by the pixelwise form (or per class by the GEMM)
    group: tuple[int, int]  # output rows / columns per LR-pixel group (pixelwise)
    cost_gemm: float
    cost_pixelwise: float


class FastMetaUpscale:
    """``MetaSRGAN.decode`` reformulated for speed, from a copy of the model's MLP tensors."""

    def __init__(self, model: MetaSRGAN):
        if model.channels != 1:
            raise ValueError("the fast Meta-Upscale handles single-channel networks")
        self.card = model.card  # type: ignore[attr-defined]
        first, second = model.weight_mlp[0], model.weight_mlp[2]
        with torch.no_grad():
            w1, b1 = first.weight.detach().float().clone(), first.bias.detach().float().clone()
            hidden = int(w1.shape[0])
            # (hidden + 1, C, 3, 3): one 3x3 kernel per hidden unit, and the output bias's.
            kernels = torch.cat([second.weight.detach(), second.bias.detach()[:, None]], dim=1).t()
            kernels = kernels.float().reshape(hidden + 1, model.width, 3, 3)
            lo_s, hi_s = self.card.scale_range
            z_min, z_max = b1.clone(), b1.clone()
            for weight, (lo, hi) in ((w1[:, 0], _OFFSET_RANGE), (w1[:, 1], _OFFSET_RANGE),
                                     (w1[:, 2], (1.0 / hi_s, 1.0 / lo_s))):
                z_min += torch.minimum(weight * lo, weight * hi)
                z_max += torch.maximum(weight * lo, weight * hi)
            linear, mixed = z_min >= 0, (z_min < 0) & (z_max > 0)
            self.mixed = torch.nonzero(mixed).flatten()
            # Linear maps: linear units contribute w.(oy, ox, 1/s) + b1, mixed units their +v = w_col*ox.
            coeff = torch.zeros(4, hidden + 1)
            coeff[0, :hidden] = torch.where(linear, w1[:, 0], 0.0)
            coeff[1, :hidden] = torch.where(linear | mixed, w1[:, 1], 0.0)
            coeff[2, :hidden] = torch.where(linear, w1[:, 2], 0.0)
            coeff[3, :hidden] = torch.where(linear, b1, 0.0)
            coeff[3, hidden] = 1.0
            linear_kernels = torch.einsum("qk,kcab->qcab", coeff, kernels)
            self.map_weight = torch.cat([linear_kernels, kernels[self.mixed]]).contiguous()
            self.w_row, self.w_col = w1[self.mixed, 0].contiguous(), w1[self.mixed, 1].contiguous()
            self.w_scale, self.b1 = w1[self.mixed, 2].contiguous(), b1[self.mixed].contiguous()
        self.hidden = hidden
        self._typed_weights: tuple | None = None
        self._tables: OrderedDict[tuple, tuple[_Axis, _Axis]] = OrderedDict()
        self._lock = threading.Lock()  # the viewer may decode from several worker threads

    @property
    def n_mixed(self) -> int:
        return len(self.mixed)

    # --- per slice ------------------------------------------------------------------------------
    def maps(self, features: torch.Tensor, lr: torch.Tensor) -> MetaMaps:
        """The maps of trunk features (N, C, h, w): 3x3 convolutions to 4 linear and M mixed-unit maps,
        written channels-last so that the pixel-major views need no copy."""
        linear_weight, mixed_weight = self._map_weights(features)
        q = F.conv2d(features, linear_weight, padding=1).permute(0, 2, 3, 1)
        g = F.conv2d(features, mixed_weight, padding=1).permute(0, 2, 3, 1)
        return MetaMaps(q.contiguous(), g.contiguous(), lr)

    def _map_weights(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (like.dtype, like.device)
        if self._typed_weights is None or self._typed_weights[0] != key:
            weight = self.map_weight.to(like).contiguous(memory_format=torch.channels_last)
            self._typed_weights = (key, weight[:4], weight[4:])
        return self._typed_weights[1], self._typed_weights[2]

    # --- per request ----------------------------------------------------------------------------
    def decode(self, maps: MetaMaps, scale: float, box: tuple[int, int, int, int] | None = None,
               method: str = "auto") -> torch.Tensor:
        """The (N, 1, y1-y0, x1-x0) region box = (y0, x0, y1, x1) of ``MetaSRGAN.decode`` at ``scale``."""
        scale = self.check_scale(scale)
        h, w = maps.shape
        size = output_size(h, w, scale)
        y0, x0, y1, x1 = box if box is not None else (0, 0, *size)
        if not (0 <= y0 < y1 <= size[0] and 0 <= x0 < x1 <= size[1]):
            raise ValueError(f"box {(y0, x0, y1, x1)} is not inside the {size[0]}x{size[1]} output")
        rows, cols = self._box_axes(h, w, scale, (y0, x0, y1, x1))
        if method == "native" or (method == "auto" and self._native_fits(maps)):
            return self._native(maps, rows, cols, scale, size, (y0, x0, y1, x1))
        plan, parts = self._plan(rows, cols, scale, method)
        decode = self._gemm if plan.method == "gemm" else self._pixelwise
        per_image = zip(maps.q, maps.g, strict=True)
        residual = torch.stack([decode(q, g, rows, cols, scale, parts) for q, g in per_image])
        return bicubic_resize_box(maps.lr, size, (y0, x0, y1, x1)) + residual[:, None].to(maps.lr)

    @staticmethod
    def _native_fits(maps: MetaMaps) -> bool:
        return (native_kernels.available() and maps.g.dtype == torch.float32
                and maps.g.device.type == "cpu" and maps.g.shape[-1] <= native_kernels.MAX_UNITS)

    def _native(self, maps: MetaMaps, rows: _Axis, cols: _Axis, scale: float, size: tuple[int, int],
                box: tuple[int, int, int, int]) -> torch.Tensor:
        """The box in one native pass per image (``engine.fast.native.meta_decode``), added into the
        bicubic skip."""
        u, v = self._unit_terms(rows, cols, scale)
        minus_v = (-v).contiguous()
        out = bicubic_resize_box(maps.lr, size, box).contiguous()
        for n in range(out.shape[0]):
            native_kernels.meta_decode(maps.q[n], maps.g[n], scale, rows.pixel, rows.offset, cols.pixel,
                                       cols.offset, u, minus_v, out[n, 0])
        return out

    def plan_for(self, shape: tuple[int, int], scale: float, box: tuple[int, int, int, int],
                 method: str = "auto") -> DecodePlan:
        """The plan ``decode`` follows for this LR shape, scale and box."""
        rows, cols = self._box_axes(shape[0], shape[1], self.check_scale(scale), box)
        return self._plan(rows, cols, scale, method)[0]

    def _plan(self, rows: _Axis, cols: _Axis, scale: float, method: str) -> tuple[DecodePlan, dict]:
        u, v = self._unit_terms(rows, cols, scale)
        uniq_y, class_y = torch.unique(rows.remainder, return_inverse=True)
        uniq_x, class_x = torch.unique(cols.remainder, return_inverse=True)
        classes = len(uniq_y) * len(uniq_x)
        region = _extent(rows) * _extent(cols)
        m_all = self.n_mixed
        cost_gemm = region * (m_all + 4) * (NS_GEMM_READ + NS_GEMM_MAC * (classes + 3))

        py, px = rows.pixel.numpy(), cols.pixel.numpy()
        cost_pixelwise, ny, nx = _pixelwise_cost(py, px, scale, m_all)
        cost_pixelwise += region * 4 * (NS_GEMM_READ + NS_GEMM_MAC * 3)
        if method == "auto":
            method = "gemm" if cost_gemm <= cost_pixelwise else "pixelwise"
        elif method not in ("gemm", "pixelwise"):
            raise ValueError(f"unknown Meta-Upscale method {method!r}")
        plan = DecodePlan(method, classes, m_all, (ny, nx), cost_gemm, cost_pixelwise)
        if method == "gemm":
            first_y, first_x = _first_index(class_y, len(uniq_y)), _first_index(class_x, len(uniq_x))
            table = torch.maximum(u[first_y][:, None, :], -v[first_x][None, :, :]).reshape(classes, m_all)
            return plan, {"table": table, "class": class_y[:, None] * len(uniq_x) + class_x[None, :]}
        gy, gx = _groups(py, ny), _groups(px, nx)
        return plan, {
            "u": u[gy.source].view(gy.count, gy.n, m_all).contiguous(),
            "minus_v": (-v)[gx.source].view(gx.count, gx.n, m_all).contiguous(),
            "groups": (gy, gx),
        }

    def _unit_terms(self, rows: _Axis, cols: _Axis, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixed units' row terms u (bh, M) and column terms v (bw, M): z = u(i) + v(j)."""
        u = rows.offset[:, None] * self.w_row + (self.w_scale / scale + self.b1)
        return u.contiguous(), cols.offset[:, None] * self.w_col

    # --- the two torch formulations -------------------------------------------------------------------
    @staticmethod
    def _linear_weight(scale: float) -> torch.Tensor:
        """(4, 3): the maps (Qy, Qx, Qs, Q0) -> the (oy, ox, constant) coefficients at this scale."""
        return torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0 / scale], [0, 0, 1.0]])

    def _gemm(self, q: torch.Tensor, g: torch.Tensor, rows: _Axis, cols: _Axis, scale: float,
              parts: dict) -> torch.Tensor:
        r0, r1 = int(rows.pixel[0]), int(rows.pixel[-1]) + 1
        c0, c1 = int(cols.pixel[0]), int(cols.pixel[-1]) + 1
        dev = g.device
        table = parts["table"].to(g)
        classes = table.shape[0]
        lin = torch.matmul(q[r0:r1, c0:c1], self._linear_weight(scale).to(g))  # (hr, wr, 3)
        iy, ix = (rows.pixel - r0).to(dev), (cols.pixel - c0).to(dev)
        at = lin.index_select(0, iy).index_select(1, ix)
        out = at[..., 0] * rows.offset.to(g)[:, None] + at[..., 1] * cols.offset.to(g)[None, :] + at[..., 2]
        if g.shape[-1] == 0:
            return out
        region = g[r0:r1, c0:c1]
        per_class = torch.matmul(region, table.t())  # (hr, wr, classes)
        flat = (iy[:, None] * (c1 - c0) + ix[None, :]) * classes + parts["class"].to(dev)
        return out + per_class.reshape(-1)[flat]

    def _pixelwise(self, q: torch.Tensor, g: torch.Tensor, rows: _Axis, cols: _Axis, scale: float,
                   parts: dict) -> torch.Tensor:
        dev = g.device
        r0, r1 = int(rows.pixel[0]), int(rows.pixel[-1]) + 1
        c0, c1 = int(cols.pixel[0]), int(cols.pixel[-1]) + 1
        lin = torch.matmul(q[r0:r1, c0:c1], self._linear_weight(scale).to(g))  # (hr, wr, 3)
        iy, ix = (rows.pixel - r0).to(dev), (cols.pixel - c0).to(dev)
        at = lin.index_select(0, iy).index_select(1, ix)  # (bh, bw, 3)
        out = torch.addcmul(at[..., 2], at[..., 0], rows.offset.to(g)[:, None])
        out.addcmul_(at[..., 1], cols.offset.to(g)[None, :])
        m = g.shape[-1]
        if m == 0:
            return out
        # The mixed units, per group of output pixels sharing an LR pixel (G read once per group), in
        # bands that stay in cache: maximum, multiply, sum.
        gy, gx = parts["groups"]
        u, minus_v = parts["u"].to(g), parts["minus_v"].to(g)
        row_pixel, col_pixel = gy.pixel.to(dev), gx.pixel.to(dev)
        per_group_row = gy.n * gx.count * gx.n * m
        band = max(1, _BAND_ELEMENTS // per_group_row)
        slots = torch.empty(gy.count, gy.n, gx.count, gx.n, dtype=g.dtype, device=dev)
        work_buffer = torch.empty(min(band, gy.count) * per_group_row, dtype=g.dtype, device=dev)
        for start in range(0, gy.count, band):
            stop = min(gy.count, start + band)
            g_band = g.index_select(0, row_pixel[start:stop]).index_select(1, col_pixel)  # (b, Cx, M)
            work = work_buffer[: (stop - start) * per_group_row].view(stop - start, gy.n, gx.count, gx.n, m)
            torch.maximum(u[start:stop, :, None, None, :], minus_v[None, None], out=work)
            work.mul_(g_band[:, None, :, None, :])
            torch.sum(work, dim=-1, out=slots[start:stop])
        slots = slots.view(gy.count * gy.n, gx.count * gx.n)
        return out.add_(slots.index_select(0, gy.slot.to(dev)).index_select(1, gx.slot.to(dev)))

    # --- helpers --------------------------------------------------------------------------------
    def check_scale(self, scale: float | None) -> float:
        if scale is None or not self.card.serves(float(scale)):
            lo, hi = self.card.scale_range
            raise ValueError(f"meta_srgan serves scales {lo:g}-{hi:g}, not {scale}")
        return float(scale)

    def _box_axes(self, h: int, w: int, scale: float, box: tuple[int, int, int, int]) -> tuple[_Axis, _Axis]:
        key = (h, w, scale)
        with self._lock:
            full = self._tables.get(key)
            if full is not None:
                self._tables.move_to_end(key)
        if full is None:
            size = output_size(h, w, scale)
            full = (_axis(h, size[0], 0, size[0]), _axis(w, size[1], 0, size[1]))
            with self._lock:
                self._tables[key] = full
                while len(self._tables) > _SCALE_TABLES:
                    self._tables.popitem(last=False)
        y0, x0, y1, x1 = box
        return _slice(full[0], y0, y1), _slice(full[1], x0, x1)


def _slice(axis: _Axis, start: int, stop: int) -> _Axis:
    return _Axis(axis.pixel[start:stop], axis.remainder[start:stop], axis.offset[start:stop])


def _extent(axis: _Axis) -> int:
    return int(axis.pixel[-1] - axis.pixel[0]) + 1


def _pixelwise_cost(py: np.ndarray, px: np.ndarray, scale: float, units: int) -> tuple[float, int, int]:
    """(cost, rows per group, columns per group) of the cheapest grouping of the output pixels.

    Columns are never grouped (one G vector gathered per output column: measured faster than any
    column grouping, whose padded slots and broadcast multiply cost more than the gather); rows are
    grouped by LR row, at most ``ny`` per group, trading padded slots against gathered G rows.
    """
    width = len(px)
    best = (math.inf, 1, 1)
    for ny in range(1, math.ceil(scale) + 2):
        sy, gy = _slot_counts(py, ny)
        best = min(best, ((NS_PIXELWISE * sy + NS_GATHER * gy) * width * units, ny, 1))
    return best


def _first_index(inverse: torch.Tensor, n: int) -> torch.Tensor:
    """For each of n classes, the first position that has it."""
    first = torch.full((n,), len(inverse), dtype=torch.int64)
    return first.scatter_reduce(0, inverse, torch.arange(len(inverse)), reduce="amin")
