"""``load_volume``: open a NIfTI file, a DICOM file or a DICOM folder as a canonical ``Volume``."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from engine.errors import VolumeReadError
from engine.io.dicom_read import read_dicom
from engine.io.guards import CancelFn, ProgressFn, check_cancel, describe_failure, report
from engine.io.nifti import is_nifti_path, read_nifti
from engine.volume import Volume


def load_volume(
    path: str | os.PathLike[str],
    series_uid: str | None = None,
    cancel: CancelFn | None = None,
    progress: ProgressFn | None = None,
) -> Volume:
    """Load ``path`` (``.nii``/``.nii.gz``, a DICOM file, or a folder searched for DICOM series).

    ``series_uid`` picks a series in a DICOM folder (default: the largest; all are listed in
    ``metadata["series"]``). ``cancel()`` returning True raises ``Cancelled``; ``progress(fraction)``
    is called between files. Any unreadable input raises ``VolumeReadError`` naming the file.
    """
    path = Path(path)
    check_cancel(cancel)
    report(progress, 0.0)
    try:
        exists = path.exists()
        is_dir = path.is_dir()
    except OSError as exc:
        raise VolumeReadError(describe_failure("cannot access path", exc), path) from None
    if not exists:
        raise VolumeReadError(_missing_reason(path), path)
    if is_dir:
        volume = read_dicom(path, series_uid, cancel, progress)
    else:
        _check_readable(path)
        volume = read_nifti(path) if is_nifti_path(path) else read_dicom(path, series_uid, cancel, progress)
    report(progress, 1.0)
    return volume


def _missing_reason(path: Path) -> str:
    """Why an existing-looking path cannot be followed: a link loop, a dangling link, or absent."""
    if not path.is_symlink():
        return "no such file or folder"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link never reaches a file)"
        return "broken symbolic link (its target does not exist)"
    return "no such file or folder"


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb") as stream:
            first = stream.read(1)
    except OSError as exc:
        raise VolumeReadError(describe_failure("cannot read file", exc), path) from None
    if not first:
        raise VolumeReadError("file is empty", path)
