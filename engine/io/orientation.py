"""Voxel-order changes between a file's own orientation and the closest-canonical RAS+ of ``Volume``.

Same result as ``nibabel.as_closest_canonical`` but on a bare float32 array, so no float64 copy is
made. A file's orientation is remembered as three axis codes (e.g. ``("L", "P", "S")``) in
``metadata["source_orientation"]`` so writers can restore it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nibabel import orientations as ornt

CANONICAL = ("R", "A", "S")
_VALID_CODES = {"R", "L", "A", "P", "S", "I"}


def axis_codes(affine: np.ndarray) -> tuple[str, str, str]:
    """Closest anatomical direction of each voxel axis, e.g. ``("L", "A", "S")``."""
    return tuple(str(c) for c in ornt.aff2axcodes(affine))  # type: ignore[return-value]


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip ``data`` to closest-canonical RAS+; return the new (contiguous) data and affine."""
    return reorient(data, affine, CANONICAL)


def reorient(
    data: np.ndarray, affine: np.ndarray, codes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip ``data`` so its axes point closest to ``codes``; the affine follows."""
    start = ornt.io_orientation(affine)
    end = ornt.axcodes2ornt(tuple(codes))
    transform = ornt.ornt_transform(start, end)
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return data, np.asarray(affine, dtype=np.float64)
    new_data = np.ascontiguousarray(ornt.apply_orientation(data, transform))
    new_affine = np.asarray(affine, dtype=np.float64) @ ornt.inv_ornt_aff(transform, data.shape)
    return new_data, new_affine


def valid_codes(codes: object) -> tuple[str, str, str] | None:
    """``codes`` as a tuple if it names three distinct anatomical axes, else None."""
    if not isinstance(codes, (tuple, list)) or len(codes) != 3:
        return None
    if not all(isinstance(c, str) and c in _VALID_CODES for c in codes):
        return None
    axes = {{"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}[c] for c in codes}
    return tuple(codes) if len(axes) == 3 else None  # type: ignore[return-value]
