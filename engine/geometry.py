"""Voxel-grid geometry shared by I/O and inference: affines of resampled grids, affine sanity checks.

Convention: an affine maps the *centre* of voxel (i, j, k) to millimetres, as in NIfTI and DICOM.
A voxel grid of shape ``n`` therefore covers indices ``-0.5 .. n - 0.5`` along each axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def resampled_affine(
    affine: np.ndarray, in_shape: Sequence[int], out_shape: Sequence[int]
) -> np.ndarray:
    """Affine of ``out_shape`` voxels covering the same field of view as ``in_shape`` voxels.

    Spacing along each axis becomes ``old * in / out``; the outer edges of the field of view stay
    put, so the first voxel's centre moves back by half the old minus half the new spacing.
    """
    a = np.asarray(affine, dtype=np.float64)
    n_in = np.asarray(in_shape, dtype=np.float64)
    n_out = np.asarray(out_shape, dtype=np.float64)
    if a.shape != (4, 4) or n_in.shape != (3,) or n_out.shape != (3,):
        raise ValueError("resampled_affine needs a 4x4 affine and two 3-element shapes")
    if np.any(n_in <= 0) or np.any(n_out <= 0):
        raise ValueError(f"shapes must be positive, got {tuple(in_shape)} -> {tuple(out_shape)}")
    ratio = n_in / n_out  # new voxel size in old voxels
    out = a.copy()
    out[:3, :3] = a[:3, :3] * ratio  # scales each column (axis)
    first_centre_old_index = (ratio - 1.0) / 2.0  # -0.5 (old edge) + ratio / 2
    out[:3, 3] = a[:3, :3] @ first_centre_old_index + a[:3, 3]
    return out


def affine_problem(affine: np.ndarray) -> str | None:
    """Why ``affine`` cannot place voxels in space (non-finite, zero or singular), or None if usable."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        return f"affine has shape {a.shape}, expected 4x4"
    if not np.all(np.isfinite(a)):
        return "voxel-to-world affine holds non-finite values"
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    if np.any(spacing < 1e-6) or np.any(spacing > 1e6):
        return f"implausible voxel size {tuple(round(float(s), 6) for s in spacing)} mm"
    # Scale-free singularity test: the unit columns must span 3D.
    if abs(np.linalg.det(a[:3, :3] / spacing)) < 1e-6:
        return "voxel axes are degenerate (singular affine)"
    return None
