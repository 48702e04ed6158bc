"""Display orientation is radiological and consistent; pixels map back to the right voxels."""

from __future__ import annotations

import numpy as np

from engine.volume import Volume
from medsr_viewer.slicing import EDGE_LETTERS, SliceGeometry, display_slice, display_stack, pixel_at, point_of


def _marked_volume():
    data = np.zeros((10, 12, 8), np.float32)
    data[9, 0, 4] = 1.0  # patient's far right (max x), posterior (min y), mid axial slice
    return Volume(data, np.diag([1.0, 2.0, 3.0, 1.0]))


def test_axial_shows_patient_right_on_screen_left_anterior_up():
    vol = _marked_volume()
    img = display_slice(vol.data, 2, 4)
    assert img.shape == (12, 10)  # rows = anterior-posterior, cols = right-left
    r, c = np.argwhere(img == 1.0)[0]
    assert c == 0  # right on the left
    assert r == 11  # posterior at the bottom
    assert EDGE_LETTERS[2] == ("R", "L", "A", "P")


def test_geometry_round_trip_and_extent_use_spacing():
    vol = _marked_volume()
    for axis in range(3):
        geo = SliceGeometry.of(vol, axis, 4 if axis == 2 else (9 if axis == 0 else 0))
        img = display_slice(vol.data, axis, geo.index)
        rows, cols = img.shape
        assert geo.image_shape == (rows, cols)
        w, h = geo.extent_mm
        assert np.isclose(w, cols * geo.pixel_mm[0]) and np.isclose(h, rows * geo.pixel_mm[1])
        r, c = np.argwhere(img == 1.0)[0]
        ijk = geo.voxel_at((c + 0.5) * geo.pixel_mm[0], (r + 0.5) * geo.pixel_mm[1])
        assert ijk == (9, 0, 4)
        assert geo.voxel_at(-1.0, 0.0) is None
        assert geo.voxel_at(*point_of(vol, axis, (9, 0, 4))) == (9, 0, 4)
    stack = display_stack(vol.data, 2)
    assert np.array_equal(stack[4], display_slice(vol.data, 2, 4))


def test_pixel_at_scales_with_resolution():
    assert pixel_at((20, 10), (10.0, 20.0), 9.99, 19.99) == (19, 9)
    assert pixel_at((40, 20), (10.0, 20.0), 9.99, 19.99) == (39, 19)
    assert pixel_at((40, 20), (10.0, 20.0), 10.5, 1.0) is None
