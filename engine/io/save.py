"""``save_volume``: write a ``Volume`` as NIfTI or as a derived DICOM series, atomically.

Output format by path: a name ending in ``.nii`` or ``.nii.gz`` is a NIfTI file; any other path is a
folder that receives a DICOM series (one ``.dcm`` file per slice); a path ending in ``.dcm`` is
refused, since a series is a folder, not a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.errors import VolumeWriteError
from engine.io.atomic import atomic_output
from engine.io.dicom_write import write_dicom_series
from engine.io.nifti import is_nifti_path, write_nifti
from engine.volume import Volume


def save_volume(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    description: str | None = None,
    derivation: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``volume`` to ``path`` and return it; never overwrites unless ``overwrite`` is True.

    ``description`` becomes the NIfTI ``descrip`` / DICOM SeriesDescription (default: the volume's
    own); ``derivation`` (model, scale, weights hash) a NIfTI comment extension / DICOM
    DerivationDescription. Failures raise ``VolumeWriteError``.
    """
    text = os.fspath(path)
    target = Path(text)
    as_folder = text.endswith(("/", os.sep)) or not is_nifti_path(target)
    if as_folder and target.suffix.lower() == ".dcm":
        raise VolumeWriteError(
            "a DICOM series is written to a folder: give a folder path, not a .dcm file", target
        )
    _refuse_source(volume, target)
    nonfinite = int(np.size(volume.data) - np.count_nonzero(np.isfinite(volume.data)))
    if nonfinite:
        raise VolumeWriteError(f"volume holds {nonfinite} non-finite voxels; nothing written", target)
    label = volume.description if description is None else description
    with atomic_output(target, folder=as_folder, overwrite=overwrite) as temp:
        if as_folder:
            write_dicom_series(volume, temp, label, derivation)
        else:
            write_nifti(volume, temp, label, derivation)
    return target


def _refuse_source(volume: Volume, target: Path) -> None:
    """Refuse an output that is the input, lies inside it, or contains it."""
    if volume.source is None:
        return
    out, src = target.resolve(), Path(volume.source).resolve()
    if out == src or src in out.parents or out in src.parents:
        raise VolumeWriteError(f"output would overwrite or sit inside the input {src}", target)
