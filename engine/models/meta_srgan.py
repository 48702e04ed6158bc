"""Meta-SRGAN: an SRGAN (SRResNet) trunk with Hu et al.'s Meta-Upscale, one network for any scale.

Paper: C. Tan, J. Zhu, P. Lio, "Arbitrary Scale Super-Resolution for Brain MRI Images", Artificial
Intelligence Applications and Innovations (AIAI), IFIP AICT 583, Springer, 2020 (paper 003); the
Meta-Upscale module is from X. Hu, H. Mu, X. Zhang, Z. Wang, T. Tan, J. Sun, "Meta-SR: A
Magnification-Arbitrary Network for Super-Resolution", CVPR 2019. Trained on scales 1.1-4.0.

Meta-Upscale: every output pixel is computed from the 3x3 neighbourhood of trunk features at the LR
pixel it projects to, with a 3x3xC->1 kernel predicted by a weight-prediction MLP (3 -> 256 -> 9C)
from (offset_y, offset_x, 1/s). The kernel only depends on the offsets, so the MLP runs once per
unique row offset x unique column offset inside the requested box, and the result is applied as a
gather of neighbourhoods + one batched einsum (never one MLP call per pixel), or, when offsets repeat
(every training patch), as one convolution per offset class from which each pixel picks its value.

Coordinates are centred, consistent with bicubic align_corners=False: output pixel i maps to LR
position u = (i + 0.5) * h / H - 0.5 (H = round(h * s), the per-axis ratio torch's bicubic uses; it
equals (i + 0.5) / s - 0.5 when h * s is an integer), the LR pixel is floor(u) clamped to the image
and the offset is u minus that pixel (the fractional part inside the image; at the clamped border it
stays the true signed distance). Computed exactly in integers, so equal offsets are found exactly.

API (LIIF-style, scale always an argument, never stored): ``encode(lr) -> MetaFeatures``,
``decode(enc, scale, box=None)`` returning only the box (y0, x0, y1, x1) of the output, and
``forward(lr, scale) = decode(encode(lr), scale)``.

Departures: single channel; Hu et al. use corner-aligned offsets (i/s - floor(i/s)), we use centred
ones; the output is a residual over bicubic upsampling (departure: makes short CPU training converge)
with the MLP's last layer zero-initialised, so the untrained network is bicubic; the shipped trunk is
8 blocks x 32 channels without batch normalisation (``batch_norm=False``; EDSR and ESRGAN removed it
from SRResNet too) and a 64-unit weight-prediction MLP (Meta-SR: 256; a zoom frame costs one
multiply-add per pixel and hidden unit, see engine/fast/meta_upscale.py). In a side-by-side run on
our data the BN trunk was still 0.7 dB below bicubic after 100 steps where the BN-free one was 0.3 dB
above it. The paper's parameter count is in a table
that did not survive extraction (the text says it is about fifty times smaller than a 43 M EDSR).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.blocks import bicubic_upsample_box, source_coordinates, zero_init_
from engine.models.registry import ModelCard, output_size, register_model
from engine.models.srgan import SRResNetTrunk

_ELEMENT_BUDGET = 1 << 24  # largest gathered or predicted tensor per step, in elements (64 MB of float32)


@dataclass(frozen=True)
class MetaFeatures:
    """What ``encode`` computes once per LR image: trunk features and the LR input (for the bicubic skip)."""

    features: torch.Tensor  # (N, C, h, w)
    lr: torch.Tensor  # (N, channels, h, w)


@dataclass(frozen=True)
class _AxisPlan:
    """Per output row (or column) of a box: its LR pixel and which of the unique offsets it has."""

    pixel: torch.Tensor  # (n,) int64, LR index
    offset_index: torch.Tensor  # (n,) int64, into offsets
    offsets: torch.Tensor  # (U,) float64, unique offsets


def _axis_plan(in_size: int, out_size: int, start: int, stop: int) -> _AxisPlan:
    num, den = source_coordinates(in_size, out_size, start, stop)
    pixel = torch.div(num, den, rounding_mode="floor").clamp(0, in_size - 1)
    remainder = num - pixel * den  # exact: offset = remainder / den
    unique, inverse = torch.unique(remainder, return_inverse=True)
    return _AxisPlan(pixel, inverse, unique.double() / den)


@register_model(
    ModelCard(
        name="meta_srgan",
        title="Meta-SRGAN (SRResNet trunk + Meta-Upscale)",
        paper="Tan, Zhu, Lio, 'Arbitrary Scale Super-Resolution for Brain MRI Images', AIAI 2020 "
        "(Meta-Upscale: Hu et al., 'Meta-SR', CVPR 2019)",
        scales=(2.0, 3.0, 4.0),
        scale_range=(1.1, 4.0),
        ship_args={"blocks": 8, "width": 32, "hidden": 64, "batch_norm": False},
        paper_params="not in the extracted text (table missing; 'about fifty times smaller' than 43 M EDSR)",
        departures="Single channel; centred offsets (Hu et al.: corner-aligned); residual over bicubic "
        "(departure: makes short CPU training converge) with a zero-initialised MLP output; shipped "
        "trunk 8 blocks x 32 channels (SRGAN: 16 x 64) without batch normalisation (as EDSR and ESRGAN "
        "do: with BN it was still below bicubic after 100 CPU steps, without it +0.3 dB) and a weight-"
        "prediction MLP of 64 hidden units (Meta-SR: 256), sized for real-time zoom on a CPU.",
    )
)
class MetaSRGAN(nn.Module):
    """SRResNet trunk at LR, then a Meta-Upscale to any scale in 1.1-4.0 (scale is a call argument)."""

    def __init__(self, blocks: int = 16, width: int = 64, hidden: int = 256, channels: int = 1,
                 batch_norm: bool = True):
        super().__init__()
        self.trunk = SRResNetTrunk(channels, width, blocks, batch_norm)
        self.weight_mlp = nn.Sequential(
            nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, channels * width * 9)
        )
        self.channels, self.width = channels, width
        zero_init_(self.weight_mlp[-1])

    @property
    def receptive_radius(self) -> int:
        # trunk, the 3x3 meta kernel, and up to one pixel between an output position and its LR pixel
        return self.trunk.radius + 1 + 1

    def encode(self, lr: torch.Tensor) -> MetaFeatures:
        return MetaFeatures(features=self.trunk(lr), lr=lr)

    def decode(self, enc: MetaFeatures, scale: float,
               box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """The output region box = (y0, x0, y1, x1) (output pixels, end exclusive; default: all)."""
        scale = self._check_scale(scale)
        h, w = enc.features.shape[-2:]
        size = output_size(h, w, scale)
        y0, x0, y1, x1 = box if box is not None else (0, 0, *size)
        if not (0 <= y0 < y1 <= size[0] and 0 <= x0 < x1 <= size[1]):
            raise ValueError(f"box {(y0, x0, y1, x1)} is not inside the {size[0]}x{size[1]} output")
        rows, cols = _axis_plan(h, size[0], y0, y1), _axis_plan(w, size[1], x0, x1)
        residual = self._meta_upscale(enc.features, rows, cols, scale)
        return bicubic_upsample_box(enc.lr, size, (y0, x0, y1, x1)) + residual

    def forward(self, lr: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        return self.decode(self.encode(lr), scale)

    def _check_scale(self, scale: float | None) -> float:
        if scale is None:
            raise ValueError("meta_srgan needs the scale at call time")
        if not self.card.serves(float(scale)):  # type: ignore[attr-defined]
            lo, hi = self.card.scale_range  # type: ignore[attr-defined]
            raise ValueError(f"meta_srgan serves scales {lo:g}-{hi:g}, not {scale:g}")
        return float(scale)

    def _predict_kernels(self, offsets_y: torch.Tensor, offsets_x: torch.Tensor, scale: float,
                         like: torch.Tensor) -> torch.Tensor:
        """One MLP evaluation per (unique row offset, unique column offset): (Uy, Ux, out, C, 3, 3)."""
        grid_y, grid_x = torch.meshgrid(offsets_y, offsets_x, indexing="ij")
        query = torch.stack([grid_y, grid_x, torch.full_like(grid_y, 1.0 / scale)], dim=-1)
        predicted = self.weight_mlp(query.reshape(-1, 3).to(like))
        return predicted.view(len(offsets_y), len(offsets_x), self.channels, self.width, 3, 3)

    def _meta_upscale(self, features: torch.Tensor, rows: _AxisPlan, cols: _AxisPlan,
                      scale: float) -> torch.Tensor:
        """Gather each output pixel's 3x3 feature neighbourhood and contract it with its predicted kernel.

        Where offsets repeat enough, the per-class convolution replaces the gather (same result).
        Normally one MLP call covers every unique (row, column) offset pair of the box. Only when those
        kernels would not fit the element budget (scales whose offsets hardly repeat, on a large box)
        is the MLP called per band of rows, on that band's unique row offsets.
        """
        device = features.device
        n, c = features.shape[:2]
        kernel_size = len(cols.offsets) * self.channels * c * 9  # elements per unique row offset
        whole_box = len(rows.offsets) * kernel_size <= _ELEMENT_BUDGET
        if whole_box and self._offset_classes_are_few(n, rows, cols):
            kernels = self._predict_kernels(rows.offsets, cols.offsets, scale, features)
            return self._meta_upscale_by_class(features, kernels, rows, cols)
        band = max(1, _ELEMENT_BUDGET // (n * c * 9 * len(cols.pixel)))
        if whole_box:
            kernels = self._predict_kernels(rows.offsets, cols.offsets, scale, features)
        else:
            band = min(band, max(1, _ELEMENT_BUDGET // kernel_size))
        padded = F.pad(features, (1, 1, 1, 1))
        taps = torch.arange(3, device=device)
        row_taps = rows.pixel.to(device).unsqueeze(1) + taps  # (R, 3) in padded coordinates
        col_taps = cols.pixel.to(device).unsqueeze(1) + taps  # (W, 3)
        col_index = cols.offset_index.to(device)
        out = []
        for start in range(0, len(row_taps), band):
            row_index = rows.offset_index[start:start + band]
            if not whole_box:
                used, row_index = torch.unique(row_index, return_inverse=True)
                kernels = self._predict_kernels(rows.offsets[used], cols.offsets, scale, features)
            band_kernels = kernels[row_index.to(device)][:, col_index]  # (r, W, out, C, 3, 3)
            hood = padded[:, :, row_taps[start:start + band]][..., col_taps]  # (N, C, r, 3, W, 3)
            out.append(torch.einsum("ncrawb,rwocab->norw", hood, band_kernels))
        return torch.cat(out, dim=2)

    def _offset_classes_are_few(self, n: int, rows: _AxisPlan, cols: _AxisPlan) -> bool:
        """Whether convolving the LR region once per offset class beats gathering per output pixel.

        The class form costs classes x LR pixels of dense convolution, the gather form output pixels x
        sparse gathers (about ten times slower per multiply-add on the CPU, measured): scales whose
        offsets repeat (2, 2.5, 3.5 ...: every training scale) take the class form, 20-70x faster in
        training; zoom-like boxes with few repeats keep the gather.
        """
        classes = len(rows.offsets) * len(cols.offsets)
        region = int(rows.pixel.max() - rows.pixel.min() + 1) * int(cols.pixel.max() - cols.pixel.min() + 1)
        fits = n * classes * self.channels * region <= _ELEMENT_BUDGET
        return fits and classes * region <= 8 * len(rows.pixel) * len(cols.pixel)

    def _meta_upscale_by_class(self, features: torch.Tensor, kernels: torch.Tensor, rows: _AxisPlan,
                               cols: _AxisPlan) -> torch.Tensor:
        """The same residual as the gather form: one convolution of the LR region with every class's
        kernel, then each output pixel picks its class's value at its LR pixel."""
        n, c = features.shape[:2]
        uy, ux = kernels.shape[:2]
        r0, r1 = int(rows.pixel.min()), int(rows.pixel.max()) + 1
        c0, c1 = int(cols.pixel.min()), int(cols.pixel.max()) + 1
        region = F.pad(features, (1, 1, 1, 1))[:, :, r0:r1 + 2, c0:c1 + 2]
        hb, wb = r1 - r0, c1 - c0
        per_class = F.conv2d(region, kernels.reshape(uy * ux * self.channels, c, 3, 3))  # (N, U*o, hb, wb)
        per_class = per_class.view(n, uy * ux, self.channels, hb * wb).transpose(1, 2)
        per_class = per_class.reshape(n, self.channels, uy * ux * hb * wb)
        device = features.device
        row_part = (rows.offset_index * ux * hb + (rows.pixel - r0)) * wb  # class row, then LR row
        col_part = cols.offset_index * hb * wb + (cols.pixel - c0)
        index = (row_part[:, None] + col_part[None, :]).reshape(-1).to(device)
        picked = per_class.index_select(2, index)
        return picked.view(n, self.channels, len(rows.pixel), len(cols.pixel))
