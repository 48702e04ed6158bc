"""All-or-nothing outputs: write beside the target under a hidden temporary name, then rename.

A crash or error mid-write leaves the target untouched and removes the temporary file or folder.
An existing target is kept unless ``overwrite=True``; an existing *folder* is only replaced when it
holds nothing but ``.dcm`` files (a previous DICOM output), so a mistyped path can never wipe an
unrelated folder. An empty existing folder counts as free (file dialogs often create one).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import VolumeWriteError
from engine.io.guards import describe_failure


@contextmanager
def atomic_output(target: Path, *, folder: bool, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path (file or created folder) that becomes ``target`` when the block succeeds."""
    _check_free(target, folder, overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = _make_temp(target, folder)
    except OSError as exc:
        raise VolumeWriteError(describe_failure("cannot create output", exc), target) from None
    try:
        yield temp
        _check_free(target, folder, overwrite)  # something may have appeared meanwhile
        _commit(temp, target, folder)
    except BaseException as exc:
        _remove(temp)
        if isinstance(exc, OSError):
            raise VolumeWriteError(describe_failure("write failed", exc), target) from None
        raise


def replace_file_atomically(target: Path):
    """For files we own (weights, checkpoints, sidecars): write a temporary file, then replace."""
    return atomic_output(Path(target), folder=False, overwrite=True)


def _make_temp(target: Path, folder: bool) -> Path:
    # Keep the full suffix (".nii.gz") so format-by-extension writers behave the same.
    suffix = "".join(target.suffixes) if not folder else ""
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    for _ in range(100):
        temp = target.parent / f".{stem}.{secrets.token_hex(4)}.partial{suffix}"
        try:
            if folder:
                temp.mkdir()
            else:
                temp.touch(exist_ok=False)
            return temp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def _check_free(target: Path, folder: bool, overwrite: bool) -> None:
    if not target.exists() and not target.is_symlink():
        return
    if target.is_dir() != folder or target.is_symlink():
        kind = "folder" if target.is_dir() else "file"
        raise VolumeWriteError(f"exists as a {kind}; choose another output path", target)
    if folder:
        entries = list(target.iterdir())
        if not entries:
            return
        if not overwrite:
            raise VolumeWriteError("output folder exists and is not empty (overwrite not allowed)", target)
        if not all(e.is_file() and e.suffix.lower() == ".dcm" for e in entries):
            raise VolumeWriteError(
                "output folder holds files other than .dcm; refusing to replace it", target
            )
    elif not overwrite:
        raise VolumeWriteError("output file exists (overwrite not allowed)", target)


def _commit(temp: Path, target: Path, folder: bool) -> None:
    if not folder:
        with open(temp, "rb+") as fh:  # data on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(temp, target)
        return
    if not target.exists():
        os.rename(temp, target)
        return
    if not any(target.iterdir()):
        target.rmdir()
        os.rename(temp, target)
        return
    backup = target.parent / f".{target.name}.{secrets.token_hex(4)}.replaced"
    os.rename(target, backup)
    try:
        os.rename(temp, target)
    except OSError:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _remove(temp: Path) -> None:
    if temp.is_dir():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        temp.unlink(missing_ok=True)
