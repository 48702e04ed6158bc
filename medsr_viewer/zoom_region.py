"""Which part of the SR image at the display scale a view shows (no Qt): the request the zoom SR
renders for every zoom or pan step (``medsr_viewer.zoom_sr``).

The display scale is screen (device) pixels per input pixel; the whole SR image at that scale covers
the slice's millimetre extent like the panel's own images, so a box of output pixels has an exact
place in the panel's coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.models.registry import output_size
from engine.zoom import Box, clip_box

HALO_PX = 8  # output pixels rendered beyond each visible edge: a small pan needs no new render


@dataclass(frozen=True)
class ZoomRegion:
    """What to render: ``box`` (output pixels at ``scale``, end exclusive) and where it sits in the
    panel's millimetre coordinates (``rect_mm`` = x, y, width, height)."""

    scale: float
    box: Box
    rect_mm: tuple[float, float, float, float]

    def contains(self, other: ZoomRegion) -> bool:
        a, b = self.box, other.box
        return self.scale == other.scale and a[0] <= b[0] and a[1] <= b[1] and a[2] >= b[2] and a[3] >= b[3]


def display_scale(input_pixel_mm: tuple[float, float], mm_per_screen_px: float) -> float:
    """Screen pixels per input pixel (the finer axis, so neither is under-resolved), to 4 decimals:
    the same zoom then gives the same scale, whose per-scale tables the engine keeps."""
    return round(max(input_pixel_mm) / mm_per_screen_px, 4)


def visible_region(
    view_mm: tuple[float, float, float, float],
    mm_per_screen_px: float,
    input_shape: tuple[int, int],
    extent_mm: tuple[float, float],
    halo: int = HALO_PX,
) -> ZoomRegion | None:
    """The region of the SR image at the display scale that a view (x0, y0, x1, y1 in mm) shows.

    The whole SR image at that scale covers ``extent_mm`` like the panel's own images, so output pixel
    (r, c) sits at (c, r) x its pixel size in mm. None when the view shows nothing of the slice.
    """
    h, w = input_shape
    scale = display_scale((extent_mm[0] / w, extent_mm[1] / h), mm_per_screen_px)
    if not math.isfinite(scale) or scale <= 0:
        return None
    out_h, out_w = output_size(h, w, scale)
    px_w, px_h = extent_mm[0] / out_w, extent_mm[1] / out_h
    x0, y0, x1, y1 = view_mm
    box = clip_box(
        (
            math.floor(y0 / px_h) - halo,
            math.floor(x0 / px_w) - halo,
            math.ceil(y1 / px_h) + halo,
            math.ceil(x1 / px_w) + halo,
        ),
        (out_h, out_w),
    )
    if box is None:
        return None
    r0, c0, r1, c1 = box
    return ZoomRegion(scale, box, (c0 * px_w, r0 * px_h, (c1 - c0) * px_w, (r1 - r0) * px_h))
