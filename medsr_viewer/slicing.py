"""Volume slices as 2D display images, in one consistent radiological convention (no Qt).

Volumes are RAS+ canonical (axis 0 towards the patient's Right, 1 Anterior, 2 Superior). Every panel
shows a slice the way radiologists read it:

* axial: seen from the feet — patient's right on the screen's LEFT, anterior at the top;
* coronal: seen from the front — patient's right on the screen's LEFT, superior at the top;
* sagittal: seen from the patient's left — anterior on the screen's LEFT, superior at the top.

With the two in-plane axes (a, b) in volume order, all three are the same rule:
``image[row, col] = plane[n_a - 1 - col, n_b - 1 - row]``, i.e. ``plane.T[::-1, ::-1]``. Display
coordinates are millimetres, x to the right and y downwards from the image's top-left corner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.volume import Volume

# Letters at the screen's left, right, top and bottom edges, per slicing axis.
EDGE_LETTERS: dict[int, tuple[str, str, str, str]] = {
    2: ("R", "L", "A", "P"),
    1: ("R", "L", "S", "I"),
    0: ("A", "P", "S", "I"),
}


def in_plane_axes(axis: int) -> tuple[int, int]:
    """The two volume axes of a slice normal to ``axis``: (columns' axis, rows' axis)."""
    a, b = (ax for ax in range(3) if ax != axis)
    return a, b


def display_slice(data: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` as a contiguous float32 (rows, cols) display image."""
    key: list = [slice(None)] * 3
    key[axis] = int(index)
    plane = data[tuple(key)]  # a view: np.take would gather element by element holding the GIL
    return np.ascontiguousarray(plane.T[::-1, ::-1], dtype=np.float32)


def display_stack(data: np.ndarray, axis: int) -> np.ndarray:
    """All slices along ``axis`` as a (N, rows, cols) view in display orientation (no copy)."""
    return np.moveaxis(data, axis, 0).transpose(0, 2, 1)[:, ::-1, ::-1]


@dataclass(frozen=True)
class SliceGeometry:
    """Where a display image sits in millimetres, and which voxel a display pixel comes from."""

    axis: int
    index: int
    shape: tuple[int, int, int]  # volume shape
    pixel_mm: tuple[float, float]  # (column width, row height) in mm of the native slice

    @classmethod
    def of(cls, volume: Volume, axis: int, index: int) -> SliceGeometry:
        a, b = in_plane_axes(axis)
        sp = volume.spacing
        return cls(axis, index, volume.shape, (sp[a], sp[b]))

    @property
    def image_shape(self) -> tuple[int, int]:
        a, b = in_plane_axes(self.axis)
        return self.shape[b], self.shape[a]

    @property
    def extent_mm(self) -> tuple[float, float]:
        rows, cols = self.image_shape
        return cols * self.pixel_mm[0], rows * self.pixel_mm[1]

    def voxel_at(self, x_mm: float, y_mm: float) -> tuple[int, int, int] | None:
        """The volume index (i, j, k) under a display point, or None outside the slice."""
        rows, cols = self.image_shape
        col = int(np.floor(x_mm / self.pixel_mm[0]))
        row = int(np.floor(y_mm / self.pixel_mm[1]))
        if not (0 <= row < rows and 0 <= col < cols):
            return None
        a, b = in_plane_axes(self.axis)
        ijk = [0, 0, 0]
        ijk[self.axis] = self.index
        ijk[a] = self.shape[a] - 1 - col
        ijk[b] = self.shape[b] - 1 - row
        return ijk[0], ijk[1], ijk[2]


def point_of(volume: Volume, axis: int, ijk: tuple[int, int, int]) -> tuple[float, float]:
    """Display millimetres (centre of the pixel) of voxel ``ijk`` in its slice normal to ``axis``."""
    a, b = in_plane_axes(axis)
    sp = volume.spacing
    col = volume.shape[a] - 1 - int(ijk[a])
    row = volume.shape[b] - 1 - int(ijk[b])
    return (col + 0.5) * sp[a], (row + 0.5) * sp[b]


def pixel_at(
    image_shape: tuple[int, int], extent_mm: tuple[float, float], x_mm: float, y_mm: float
) -> tuple[int, int] | None:
    """(row, col) of an image covering ``extent_mm`` from the origin, under a display point."""
    rows, cols = image_shape
    if extent_mm[0] <= 0 or extent_mm[1] <= 0:
        return None
    col = int(np.floor(x_mm / extent_mm[0] * cols))
    row = int(np.floor(y_mm / extent_mm[1] * rows))
    if 0 <= row < rows and 0 <= col < cols:
        return row, col
    return None
