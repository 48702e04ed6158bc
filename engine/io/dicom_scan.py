"""Find DICOM image series in a file or folder by reading headers only.

Each file's header is read with large values deferred (pixel bytes are never loaded here), which
still tells whether the object carries pixel data. Every image frame, classic single-frame file or
one frame of an enhanced multi-frame file, becomes a ``Frame`` with its own geometry and rescale,
so sorting and affine building are the same for both kinds.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from engine.errors import VolumeReadError
from engine.io.guards import CancelFn, ProgressFn, check_cancel, describe_failure, report

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_DEFER_BYTES = 1024  # values larger than this stay on disk while scanning


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found on disk, for a GUI to offer as a choice."""

    uid: str
    description: str
    modality: str  # the DICOM Modality tag as stored ("MR", "CT", "PT", ...)
    rows: int
    cols: int
    n_slices: int  # image frames (files, or frames of multi-frame files)
    files: tuple[Path, ...]


@dataclass(frozen=True)
class Frame:
    """One 2D image: where it sits in a file and how it is placed in patient space (LPS mm)."""

    file: Path
    frame_index: int | None  # index inside a multi-frame file; None for a single-frame file
    rows: int
    cols: int
    samples: int  # samples per pixel (1 for greyscale)
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6 direction cosines)
    position: tuple[float, float, float] | None  # ImagePositionPatient of the first pixel
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns)
    thickness: float | None
    spacing_between: float | None
    slope: float
    intercept: float
    instance: int


@dataclass
class DicomScan:
    """Result of scanning: frames per series, the series listing, and what was passed over."""

    frames: dict[str, list[Frame]] = field(default_factory=dict)
    series: list[SeriesInfo] = field(default_factory=list)
    headers: dict[str, Dataset] = field(default_factory=dict)  # first header of each series
    files_seen: int = 0
    skipped: int = 0  # non-DICOM files, DICOMDIR, DICOM objects without pixel data
    non_image_modalities: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


def list_dicom_series(folder: str | os.PathLike[str]) -> list[SeriesInfo]:
    """Every DICOM image series under ``folder`` (or in one file), largest first; headers only.

    Largest means most slices (image frames), then most pixels per slice.
    """
    return scan_dicom(Path(folder)).series


def scan_dicom(
    path: Path,
    cancel: CancelFn | None = None,
    progress: ProgressFn | None = None,
) -> DicomScan:
    """Read the header of every file under ``path`` and group image frames by SeriesInstanceUID."""
    files = _candidate_files(path)
    scan = DicomScan(files_seen=len(files))
    for n, file in enumerate(files):
        check_cancel(cancel)
        report(progress, n / max(len(files), 1))
        single = path.is_file()
        ds = _read_header(file, scan, single)
        if ds is None:
            continue
        try:
            frames = frames_of(ds, file)
        except VolumeReadError as exc:
            if single:
                raise
            _skip(scan, file, exc.reason)
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "").strip() or f"(no SeriesInstanceUID) {file.parent}"
        scan.frames.setdefault(uid, []).extend(frames)
        scan.headers.setdefault(uid, ds)
    report(progress, 1.0)
    scan.series = sorted(
        (_series_info(uid, frames, scan.headers[uid]) for uid, frames in scan.frames.items()),
        key=lambda s: (s.n_slices, s.rows * s.cols),
        reverse=True,
    )
    return scan


def _candidate_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    problems: list[OSError] = []
    files = []
    for root, dirs, names in os.walk(path, onerror=problems.append, followlinks=False):
        dirs.sort()
        files.extend(Path(root) / name for name in sorted(names))
    if problems and not files:
        raise VolumeReadError(describe_failure("cannot read folder", problems[0]), path)
    return files


def _read_header(file: Path, scan: DicomScan, single: bool) -> Dataset | None:
    """The deferred-read header of an image file, or None (counted in ``scan``) for anything else."""
    if file.name.upper() == "DICOMDIR":
        scan.skipped += 1
        return None
    try:
        if file.stat().st_size == 0:
            if single:
                raise VolumeReadError("file is empty", file)
            scan.skipped += 1
            return None
        ds = pydicom.dcmread(file, defer_size=_DEFER_BYTES)
    except InvalidDicomError:
        if single:
            raise VolumeReadError("not a DICOM file (no DICM preamble) nor a NIfTI file", file) from None
        scan.skipped += 1
        return None
    except VolumeReadError:
        raise
    except Exception as exc:  # pydicom raises many types on damaged headers
        what = "cannot read file" if isinstance(exc, OSError) else "damaged DICOM header"
        if single:
            raise VolumeReadError(describe_failure(what, exc, file), file) from None
        _skip(scan, file, describe_failure(what, exc, file))
        return None
    if len(ds) == 0:  # pydicom stops at an unexpected end of file and returns no element
        reason = "truncated or damaged DICOM file: no data element could be read"
        if single:
            raise VolumeReadError(reason, file)
        _skip(scan, file, reason)
        return None
    meta = getattr(ds, "file_meta", None)
    sop_class = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))
    if sop_class == _DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        scan.skipped += 1
        return None
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        scan.skipped += 1
        scan.non_image_modalities[str(ds.get("Modality", "") or "unknown")] += 1
        return None
    return ds


def _skip(scan: DicomScan, file: Path, reason: str) -> None:
    scan.skipped += 1
    scan.warnings.append(f"{file.name}: skipped, {reason}")


def frames_of(ds: Dataset, file: Path) -> list[Frame]:
    """The image frames of one file: one for classic objects, NumberOfFrames for multi-frame ones.

    Raises ``VolumeReadError`` when the header claims more frames than the file can hold, before
    any per-frame work (a forged NumberOfFrames must not cost minutes or gigabytes).
    """
    n_frames = _int(ds.get("NumberOfFrames"), 1)
    rows, cols = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
    samples = _int(ds.get("SamplesPerPixel"), 1)
    instance = _int(ds.get("InstanceNumber"), 0)
    if n_frames > 1:
        _check_frame_count(ds, file, n_frames, rows, cols, samples)
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, file, n_frames, rows, cols, samples, instance)
    top = _plane_fields(ds, ds, ds, ds, file)
    if n_frames <= 1:
        return [Frame(file, None, rows, cols, samples, instance=instance, **top)]
    # Legacy multi-frame without functional groups: frame positions are not stated.
    top["position"] = None
    return [Frame(file, f, rows, cols, samples, instance=instance, **top) for f in range(n_frames)]


def _check_frame_count(ds: Dataset, file: Path, n_frames: int, rows: int, cols: int, samples: int) -> None:
    """Refuse a NumberOfFrames the file's size cannot back (each frame needs at least one byte of
    native pixel data, or one 8-byte item header when compressed)."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and getattr(syntax, "is_encapsulated", False):
        per_frame = 8
    else:
        bits = max(1, _int(ds.get("BitsAllocated"), 16))
        per_frame = max(1, (max(rows, 0) * max(cols, 0) * max(samples, 1) * bits + 7) // 8)
    try:
        size = file.stat().st_size
    except OSError:
        return
    if n_frames * per_frame > size:
        raise VolumeReadError(
            f"header claims {n_frames:,} frames of {rows}x{cols} pixels, more than the file's "
            f"{size:,} bytes can hold",
            file,
        )


def _enhanced_frames(
    ds: Dataset, file: Path, n_frames: int, rows: int, cols: int, samples: int, instance: int
) -> list[Frame]:
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per_frame = ds.PerFrameFunctionalGroupsSequence
    frames = []
    for f in range(min(n_frames, len(per_frame))):
        item = per_frame[f]

        def group(keyword: str, item: Dataset = item) -> Dataset | None:
            for source in (item, shared):
                if source is not None and keyword in source and source[keyword].value:
                    return source[keyword].value[0]
            return None

        fields = _plane_fields(
            group("PlanePositionSequence"),
            group("PlaneOrientationSequence"),
            group("PixelMeasuresSequence"),
            group("PixelValueTransformationSequence") or ds,
            file,
        )
        frames.append(Frame(file, f, rows, cols, samples, instance=instance, **fields))
    return frames


def _plane_fields(
    position: Dataset | None,
    orientation: Dataset | None,
    measures: Dataset | None,
    rescale: Dataset,
    file: Path,
) -> dict[str, Any]:
    spacing = _floats(measures.get("PixelSpacing") if measures is not None else None, 2)
    if spacing is None and measures is not None:
        spacing = _floats(measures.get("ImagerPixelSpacing"), 2)
    return {
        "orientation": (
            _floats(orientation.get("ImageOrientationPatient"), 6) if orientation is not None else None
        ),
        "position": _floats(position.get("ImagePositionPatient"), 3) if position is not None else None,
        "pixel_spacing": spacing if spacing and min(spacing) > 0 else None,
        "thickness": _positive(measures.get("SliceThickness")) if measures is not None else None,
        "spacing_between": _positive(measures.get("SpacingBetweenSlices")) if measures is not None else None,
        "slope": _rescale(rescale, "RescaleSlope", 1.0, file),
        "intercept": _rescale(rescale, "RescaleIntercept", 0.0, file),
    }


def _rescale(ds: Dataset, keyword: str, default: float, file: Path) -> float:
    """RescaleSlope/Intercept: the default when absent, refused when present but unusable.

    Guessing would put every value in the wrong units (CT off by its -1024 intercept), silently.
    """
    element = ds.get(keyword)
    if element is None or str(element).strip() == "":
        return default
    try:
        value = float(element)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not abs(value) < 1e12 or (keyword == "RescaleSlope" and value == 0):
        shown = str(element).strip()[:20]
        raise VolumeReadError(
            f"{keyword} {shown!r} is unusable: pixel values cannot be put in real units", file
        )
    return value


def _series_info(uid: str, frames: list[Frame], header: Dataset) -> SeriesInfo:
    size = Counter((f.rows, f.cols) for f in frames).most_common(1)[0][0]
    return SeriesInfo(
        uid=uid,
        description=str(header.get("SeriesDescription", "") or ""),
        modality=str(header.get("Modality", "") or ""),
        rows=size[0],
        cols=size[1],
        n_slices=len(frames),
        files=tuple(sorted({f.file for f in frames})),
    )


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats from a multi-valued DICOM element, or None if absent or malformed."""
    if value is None:
        return None
    try:
        items = [float(v) for v in value] if not isinstance(value, (str, bytes)) else []
    except (TypeError, ValueError):
        return None
    if len(items) != n or not all(abs(v) < 1e9 for v in items):  # also rejects NaN/Inf
        return None
    return tuple(items)


def _float(value: object, default: float) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return out if abs(out) < 1e12 else default


def _positive(value: object) -> float | None:
    out = _float(value, 0.0)
    return out if out > 0 else None


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
