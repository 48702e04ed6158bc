"""Checks every reader applies: size budget before allocating, non-finite voxels, cancel/progress.

Also ``describe_failure``, which turns a third-party exception into the one-line reason of a
``VolumeReadError`` so users never see a raw traceback from nibabel, pydicom or zlib.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.errors import Cancelled, VolumeReadError

CancelFn = Callable[[], bool]
ProgressFn = Callable[[float], None]

MAX_VOXELS = 2**31  # refuse headers claiming more, whatever the machine
FLOAT32_BYTES = 4


def check_voxel_budget(shape: tuple[int, ...], path: Path) -> None:
    """Refuse, before anything is allocated, a volume too large to hold as float32."""
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_VOXELS:
        raise VolumeReadError(
            f"header claims {'x'.join(str(int(d)) for d in shape)} = {n:,} voxels, "
            f"over the {MAX_VOXELS:,} voxel limit",
            path,
        )
    need = n * FLOAT32_BYTES
    physical = _physical_memory_bytes()
    if physical is not None and need > physical:
        raise VolumeReadError(
            f"volume of {'x'.join(str(int(d)) for d in shape)} voxels needs {need / 2**30:.1f} GiB "
            f"as float32, more than this machine's {physical / 2**30:.1f} GiB of memory",
            path,
        )


def _physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: no memory check beyond MAX_VOXELS
        return None


def replace_nonfinite(data: np.ndarray) -> int:
    """Replace NaN/Inf voxels in place with the finite minimum (0 if none); return how many there were.

    The minimum is the background of both CT (air) and MR, so replaced voxels read as "no signal".
    """
    bad = ~np.isfinite(data)
    count = int(bad.sum())
    if count:
        finite = data[~bad]
        data[bad] = finite.min() if finite.size else 0.0
    return count


def check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def report(progress: ProgressFn | None, fraction: float) -> None:
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))))


def describe_failure(what: str, exc: BaseException, path: Path | None = None) -> str:
    """``what`` plus the exception's first line, short enough for a dialog (``path`` shortened)."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if path is not None:
        detail = detail.replace(str(path), path.name)
    if len(detail) > 160:
        detail = detail[:157] + "..."
    name = type(exc).__name__
    return f"{what} ({name}: {detail})" if detail else f"{what} ({name})"
