"""The ``Volume`` record shared by I/O, inference and the viewer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A 3D image in its original units (CT in HU, MR as stored).

    ``data`` is float32 in nibabel's closest-canonical RAS+ orientation: axis 0 runs towards the
    patient's Right (sagittal slices are ``data[i]``), axis 1 towards Anterior (coronal slices
    ``data[:, j]``), axis 2 towards Superior (axial slices ``data[:, :, k]``). ``affine`` maps voxel
    indices (i, j, k) to RAS+ millimetres. ``metadata`` holds loader extras (e.g. the DICOM reference
    header used to write a derived series, other series found beside the one loaded); the keys
    ``engine.io`` sets are listed in its package docstring.
    """

    data: np.ndarray
    affine: np.ndarray
    modality: str = "unknown"  # "CT", "MR" or "unknown"
    description: str = ""
    source: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.data.ndim != 3:
            raise ValueError(f"Volume data must be 3D, got shape {self.data.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along axes 0, 1, 2 (column norms of the affine)."""
        s = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(s[0]), float(s[1]), float(s[2]))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def acquisition_axis(self) -> int:
        """The axis normal to the acquisition plane: the coarsest-spaced axis (axis 2 when isotropic)."""
        sp = np.array(self.spacing)
        if sp.max() > sp.min() * 1.05:
            return int(np.argmax(sp))
        return 2
