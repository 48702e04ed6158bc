"""Load one DICOM series (classic files or enhanced multi-frame) into a canonical ``Volume``.

Slices are ordered by their position along the slice normal (cross product of the two
ImageOrientationPatient directions); the affine comes from ImageOrientationPatient,
ImagePositionPatient, PixelSpacing and the measured slice step, converted from DICOM's LPS to RAS.
Rescale slope/intercept are applied per frame, so CT is in Hounsfield units. Decisions that change
what is loaded (mixed sizes, duplicate positions, missing positions, uneven steps) are listed in
``metadata["warnings"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from engine.errors import VolumeReadError
from engine.geometry import affine_problem
from engine.io.dicom_scan import DicomScan, Frame, scan_dicom
from engine.io.guards import (
    CancelFn,
    ProgressFn,
    check_cancel,
    check_voxel_budget,
    describe_failure,
    replace_nonfinite,
    report,
)
from engine.io.modality import dicom_modality
from engine.io.orientation import axis_codes, to_canonical
from engine.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_SCAN_SHARE = 0.3  # fraction of the progress bar spent reading headers
_SAME_POSITION_MM = 0.01
_SAME_ORIENTATION = 0.01  # max difference of direction cosines within one stack
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass
class _Layout:
    frames: list[Frame]  # in slice order
    affine_lps: np.ndarray


def read_dicom(
    path: Path,
    series_uid: str | None = None,
    cancel: CancelFn | None = None,
    progress: ProgressFn | None = None,
) -> Volume:
    """Load the series ``series_uid`` (default: the largest) from a DICOM file or folder."""
    scan = scan_dicom(path, cancel, _scaled(progress, 0.0, _SCAN_SHARE))
    if not scan.frames:
        raise VolumeReadError(_nothing_found(scan, path), path)
    uid = _choose_series(scan, series_uid, path)
    warnings = list(scan.warnings)
    frames = _majority_stack(scan.frames[uid], warnings)
    first = frames[0]
    if first.samples < 1:
        raise VolumeReadError(f"SamplesPerPixel is {first.samples}: no pixel values to read", first.file)
    if first.samples != 1:
        raise VolumeReadError(
            f"series holds colour images ({first.samples} samples per pixel); only greyscale is supported",
            first.file,
        )
    layout = _slice_layout(frames, warnings)
    shape = (first.cols, first.rows, len(layout.frames))
    check_voxel_budget(shape, first.file if path.is_file() else path)

    data = np.empty(shape, dtype=np.float32)
    reference = _fill_pixels(data, layout.frames, cancel, _scaled(progress, _SCAN_SHARE, 1.0))
    nonfinite = replace_nonfinite(data)
    if nonfinite:
        warnings.append(f"{nonfinite} non-finite voxels replaced by the finite minimum")

    affine = LPS_TO_RAS @ layout.affine_lps
    problem = affine_problem(affine)
    if problem is not None:
        raise VolumeReadError(problem, path)
    canon_data, canon_affine = to_canonical(data, affine)
    header = scan.headers[uid]
    description = str(header.get("SeriesDescription", "") or header.get("ProtocolName", "") or "")
    return Volume(
        data=canon_data,
        affine=canon_affine,
        modality=dicom_modality(header.get("Modality")),
        description=description,
        source=path,
        metadata={
            "format": "dicom",
            "series": list(scan.series),
            "series_uid": uid,
            "dicom_reference": reference,
            "dicom_modality": str(header.get("Modality", "") or ""),
            "source_orientation": axis_codes(affine),
            "skipped_files": scan.skipped,
            "nonfinite_voxels": nonfinite,
            "warnings": warnings,
        },
    )


def _scaled(progress: ProgressFn | None, start: float, stop: float) -> ProgressFn | None:
    if progress is None:
        return None
    return lambda fraction: progress(start + (stop - start) * fraction)


def _nothing_found(scan: DicomScan, path: Path) -> str:
    non_image = sum(scan.non_image_modalities.values())
    if path.is_file() and non_image:
        kinds = ", ".join(scan.non_image_modalities)
        return f"DICOM object without pixel data (Modality {kinds}); nothing to display"
    if scan.files_seen == 0:
        return "folder holds no files"
    parts = []
    if non_image:
        kinds = ", ".join(f"{m} x{n}" for m, n in scan.non_image_modalities.items())
        parts.append(f"{non_image} DICOM objects without pixel data ({kinds})")
    if scan.skipped - non_image:
        parts.append(f"{scan.skipped - non_image} non-DICOM or unreadable files")
    files = f"{scan.files_seen} file{'s' if scan.files_seen != 1 else ''}"
    first = f" (e.g. {scan.warnings[0]})" if scan.warnings else ""
    return f"no DICOM image found among {files}: " + "; ".join(parts) + first


def _choose_series(scan: DicomScan, series_uid: str | None, path: Path) -> str:
    if series_uid is None:
        return scan.series[0].uid  # largest: most slices, then most pixels per slice
    if series_uid not in scan.frames:
        available = ", ".join(
            f"{s.uid} ({s.description or s.modality}, {s.n_slices} slices)" for s in scan.series
        )
        raise VolumeReadError(f"series {series_uid} not found; available: {available}", path)
    return series_uid


def _majority_stack(frames: list[Frame], warnings: list[str]) -> list[Frame]:
    """Keep the frames sharing the most common size and orientation; say so if any are dropped."""
    groups: list[list[Frame]] = []
    for frame in frames:
        for group in groups:
            if _same_stack(group[0], frame):
                group.append(frame)
                break
        else:
            groups.append([frame])
    if len(groups) == 1:
        return frames
    groups.sort(key=len, reverse=True)
    kept = groups[0]
    stacks = ", ".join(f"{len(g)} of {g[0].rows}x{g[0].cols}" for g in groups)
    warnings.append(
        f"series mixes {len(groups)} image sizes or orientations ({stacks}); kept the "
        f"{len(kept)} frames of the most common stack ({kept[0].rows}x{kept[0].cols}), dropped "
        f"{len(frames) - len(kept)}"
    )
    return kept


def _same_stack(a: Frame, b: Frame) -> bool:
    if (a.rows, a.cols, a.samples) != (b.rows, b.cols, b.samples):
        return False
    if a.orientation is None or b.orientation is None:
        return a.orientation is None and b.orientation is None
    return bool(np.max(np.abs(np.subtract(a.orientation, b.orientation))) < _SAME_ORIENTATION)


def _slice_layout(frames: list[Frame], warnings: list[str]) -> _Layout:
    """Order the frames along the slice normal and build the LPS voxel-to-patient affine."""
    first = frames[0]
    row_dir, col_dir = _directions(first.orientation, warnings)
    normal = np.cross(row_dir, col_dir)
    pixel = first.pixel_spacing
    if pixel is None:
        pixel = (1.0, 1.0)
        warnings.append("PixelSpacing missing or invalid: in-plane voxel size set to 1 mm")

    if all(f.position is not None for f in frames) and first.orientation is not None:
        distance = {id(f): float(np.dot(f.position, normal)) for f in frames}  # type: ignore[arg-type]
        ordered = sorted(frames, key=lambda f: (distance[id(f)], f.instance, f.frame_index or 0))
        ordered = _one_per_position(ordered, distance, warnings)
        positions = np.array([f.position for f in ordered], dtype=np.float64)
        if len(ordered) > 1:
            slice_vec = (positions[-1] - positions[0]) / (len(ordered) - 1)
            _warn_if_uneven(np.diff([distance[id(f)] for f in ordered]), warnings)
        else:
            slice_vec = normal * _nominal_step(first, warnings, single=True)
        origin = positions[0]
    else:
        if len(frames) > 1:
            warnings.append(
                "ImagePositionPatient missing: slices ordered by InstanceNumber, slice step taken "
                "from SpacingBetweenSlices/SliceThickness"
            )
        elif first.position is None:
            warnings.append("ImagePositionPatient missing: the slice is placed at the origin")
        ordered = sorted(frames, key=lambda f: (f.instance, str(f.file), f.frame_index or 0))
        slice_vec = normal * _nominal_step(first, warnings, single=len(ordered) == 1)
        origin = np.array(first.position if first.position is not None else (0.0, 0.0, 0.0))

    affine = np.eye(4)
    affine[:3, 0] = row_dir * pixel[1]  # column index runs along the row direction
    affine[:3, 1] = col_dir * pixel[0]
    affine[:3, 2] = slice_vec
    affine[:3, 3] = origin
    return _Layout(ordered, affine)


def _directions(orientation: tuple[float, ...] | None, warnings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    if orientation is not None:
        iop = np.asarray(orientation, dtype=np.float64)
        row, col = iop[:3], iop[3:]
        nr, nc = np.linalg.norm(row), np.linalg.norm(col)
        if nr > 0.5 and nc > 0.5 and np.linalg.norm(np.cross(row / nr, col / nc)) > 0.5:
            return row / nr, col / nc
    warnings.append("ImageOrientationPatient missing or invalid: assumed axial (rows L->R, columns A->P)")
    return np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


def _nominal_step(frame: Frame, warnings: list[str], single: bool) -> float:
    """Slice step when positions cannot be measured; a lone slice is as thick as it was acquired."""
    if single:
        step = frame.thickness or frame.spacing_between
    else:
        step = frame.spacing_between or frame.thickness
    if step is None:
        warnings.append("slice step unknown (no SpacingBetweenSlices/SliceThickness): set to 1 mm")
        return 1.0
    return step


def _one_per_position(ordered: list[Frame], distance: dict[int, float], warnings: list[str]) -> list[Frame]:
    """Keep the first frame at each slice position (several echoes or time points share positions)."""
    kept = [ordered[0]]
    for frame in ordered[1:]:
        if abs(distance[id(frame)] - distance[id(kept[-1])]) > _SAME_POSITION_MM:
            kept.append(frame)
    if len(kept) < len(ordered):
        warnings.append(
            f"series holds {len(ordered)} frames at {len(kept)} positions (several echoes, phases or "
            "time points): kept the first frame at each position"
        )
    return kept


def _warn_if_uneven(steps: np.ndarray, warnings: list[str]) -> None:
    if steps.size < 2:
        return
    mean = float(np.mean(steps))
    if float(np.ptp(steps)) > 0.02 * mean + 1e-3:
        warnings.append(
            f"uneven slice spacing (steps {steps.min():.3f} to {steps.max():.3f} mm, missing slices?): "
            f"the volume assumes a regular {mean:.3f} mm step"
        )


def _fill_pixels(
    data: np.ndarray, frames: list[Frame], cancel: CancelFn | None, progress: ProgressFn | None
) -> Dataset:
    """Decode each file once, put its frames in their slots (rescaled); return the reference header."""
    slots: dict[Path, list[tuple[int, Frame]]] = {}
    for k, frame in enumerate(frames):
        slots.setdefault(frame.file, []).append((k, frame))
    reference: Dataset | None = None
    for n, (file, items) in enumerate(slots.items()):
        check_cancel(cancel)
        report(progress, n / len(slots))
        ds, pixels = _decode(file)
        for k, frame in items:
            plane = pixels[frame.frame_index] if pixels.ndim == 3 else pixels
            if plane.shape != (frame.rows, frame.cols):
                raise VolumeReadError(
                    f"pixel data shape {plane.shape} does not match Rows x Columns "
                    f"{frame.rows}x{frame.cols}",
                    file,
                )
            data[:, :, k] = plane.T.astype(np.float32) * np.float32(frame.slope) + np.float32(
                frame.intercept
            )
        if reference is None:
            reference = _header_only(ds)
    report(progress, 1.0)
    assert reference is not None  # frames is never empty
    return reference


def _decode(file: Path) -> tuple[Dataset, np.ndarray]:
    try:
        ds = pydicom.dcmread(file)
    except Exception as exc:
        raise VolumeReadError(describe_failure("cannot read DICOM file", exc), file) from None
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise VolumeReadError(_decode_failure(ds, exc), file) from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if pixels.ndim != (3 if frames > 1 else 2):
        raise VolumeReadError(f"unexpected pixel array shape {pixels.shape} for greyscale image", file)
    return ds, pixels


def _decode_failure(ds: Dataset, exc: BaseException) -> str:
    """Why pixel data could not be decoded: no decoder for its compression, or damaged data.

    pydicom lists each decoder's own error on the lines after its first; the first of them is kept.
    """
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not getattr(syntax, "is_compressed", False):
        return describe_failure("cannot decode pixel data", exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines).lower()
    if "missing dependencies" in text or "no pixel data decoders" in text:
        return describe_failure(f"no decoder installed for {syntax.name} pixel data", exc)
    if "raised by all available plugins" in text and len(lines) > 1:
        detail = lines[1] if len(lines[1]) <= 160 else lines[1][:157] + "..."
        return f"compressed pixel data damaged or truncated ({syntax.name}; {detail})"
    return describe_failure(f"cannot decode {syntax.name} pixel data", exc)


def _header_only(ds: Dataset) -> Dataset:
    """The header without pixel data or per-frame groups: patient/study context for derived series."""
    for keyword in (*_PIXEL_KEYWORDS, "PerFrameFunctionalGroupsSequence"):
        if keyword in ds:
            delattr(ds, keyword)
    return ds
