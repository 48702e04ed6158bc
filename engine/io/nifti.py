"""NIfTI-1/2 (``.nii``, ``.nii.gz``) reading into a canonical ``Volume`` and writing back.

Reading validates the header (dimensions, data type, geometry, size budget) before any voxel is
allocated, then reads the data as float32 with ``scl_slope``/``scl_inter`` applied. A ``.nii.gz`` is
decompressed whole first, so a corrupt or truncated stream (bad CRC included) is caught rather than
read as garbage. Writing stores float32 in the input's own voxel orientation when known.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from engine.errors import VolumeReadError, VolumeWriteError
from engine.geometry import affine_problem
from engine.io.guards import check_voxel_budget, describe_failure, replace_nonfinite
from engine.io.modality import guess_modality
from engine.io.orientation import axis_codes, reorient, to_canonical, valid_codes
from engine.volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_COMMENT_ECODE = 6  # NIfTI extension code for free-text comments
_GZIP_SLACK_BYTES = 64 * 2**20
_GZIP_MAGIC = b"\x1f\x8b"  # extensions/padding allowed beyond the declared image data


def is_nifti_path(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: Path) -> Volume:
    """Load a 3D NIfTI file (a 4D one with a single volume is accepted) as a canonical ``Volume``."""
    if not _is_gz(path) and _starts_with(path, _GZIP_MAGIC):
        raise VolumeReadError("file is gzip-compressed: name it .nii.gz", path)
    try:
        with np.errstate(all="ignore"):  # odd quaternions/pixdims are judged below
            header_img = nib.load(path, mmap=False)  # reads the header only
    except Exception as exc:  # nibabel/gzip/zlib raise many types for bad files
        raise VolumeReadError(describe_failure("not a readable NIfTI file", exc, path), path) from None
    if not isinstance(header_img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeReadError(f"not a NIfTI image (read as {type(header_img).__name__})", path)

    shape = _validated_shape(header_img, path)
    dtype = header_img.get_data_dtype()
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise VolumeReadError(f"unsupported voxel type {dtype} (only real-valued scalars)", path)
    try:
        with np.errstate(all="ignore"):  # NaN/Inf pixdims: judged below, not warned about
            affine = header_img.affine
    except Exception as exc:
        raise VolumeReadError(describe_failure("invalid geometry in header", exc), path) from None
    problem = affine_problem(affine)
    if problem is not None:
        raise VolumeReadError(problem, path)
    check_voxel_budget(shape, path)

    if _is_gz(path):
        data_img = _image_with_verified_data(header_img, path)
    else:
        _check_file_length(header_img, shape, path)
        data_img = header_img
    try:
        data = np.asarray(data_img.dataobj, dtype=np.float32)
    except Exception as exc:
        reason = describe_failure("image data truncated or unreadable", exc, path)
        raise VolumeReadError(reason, path) from None
    if not data.flags.writeable or not data.flags.owndata:
        data = data.copy()  # own, writable memory (replace_nonfinite writes in place)
    data = data.reshape(shape)

    warnings = []
    if _stored_zero_voxel_size(path, type(header_img.header), len(shape)):
        warnings.append("header voxel size is 0 along an axis: 1 mm assumed there")
    nonfinite = replace_nonfinite(data)
    if nonfinite:
        warnings.append(f"{nonfinite} non-finite voxels replaced by the finite minimum")
    canon_data, canon_affine = to_canonical(data, affine)
    description = _header_text(header_img.header, "descrip")
    qform_code = int(header_img.header["qform_code"])
    sform_code = int(header_img.header["sform_code"])
    metadata = {
        "format": "nifti",
        "source_orientation": axis_codes(affine),
        "nifti_xform_codes": (qform_code, sform_code),
        "nifti_comments": _comments(header_img.header),
        "nonfinite_voxels": nonfinite,
        "warnings": warnings,
    }
    return Volume(
        data=canon_data,
        affine=canon_affine,
        modality=guess_modality(description, canon_data),
        description=description,
        source=path,
        metadata=metadata,
    )


def _validated_shape(img: nib.Nifti1Image, path: Path) -> tuple[int, int, int]:
    try:
        shape = tuple(int(d) for d in img.shape)
    except Exception as exc:
        raise VolumeReadError(describe_failure("invalid dimensions in header", exc), path) from None
    if any(d <= 0 for d in shape):
        raise VolumeReadError(f"header dimensions {shape} include an empty axis", path)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        extra = int(np.prod(shape[3:]))
        raise VolumeReadError(
            f"{len(shape)}D image {'x'.join(map(str, shape))} holds {extra} volumes "
            "(time series or multi-component); only 3D volumes are supported",
            path,
        )
    if len(shape) < 2:
        raise VolumeReadError(f"{len(shape)}D image {shape} is not a picture", path)
    return (shape + (1,))[:3] if len(shape) == 2 else shape  # type: ignore[return-value]


def _stored_zero_voxel_size(path: Path, header_class: type, ndim: int) -> bool:
    """Whether the file itself stores a 0 voxel size (nibabel silently replaces it by 1 on load)."""
    opener = gzip.open if _is_gz(path) else open
    try:
        with opener(path, "rb") as stream:
            raw = header_class.from_fileobj(stream, check=False)
    except Exception:  # already read once successfully; a second failure only skips the check
        return False
    return bool(np.any(np.asarray(raw["pixdim"][1 : 1 + ndim], dtype=np.float64) == 0))


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as stream:
        return stream.read(len(magic)) == magic


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _check_file_length(img: nib.Nifti1Image, shape: tuple[int, ...], path: Path) -> None:
    """An uncompressed file must hold all the bytes its header declares."""
    hdr = img.header
    needed = int(hdr.get_data_offset()) + int(np.prod(shape)) * hdr.get_data_dtype().itemsize
    actual = path.stat().st_size
    if actual < needed:
        raise VolumeReadError(f"file truncated: {actual:,} bytes, header needs {needed:,}", path)


def _image_with_verified_data(img: nib.Nifti1Image, path: Path) -> nib.Nifti1Image:
    """Decompress the whole ``.nii.gz`` (checking its CRC) and parse it from memory."""
    hdr = img.header
    declared = int(hdr.get_data_offset()) + int(np.prod(img.shape)) * hdr.get_data_dtype().itemsize
    limit = declared + _GZIP_SLACK_BYTES
    chunks: list[bytes] = []
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(4 * 2**20):
                total += len(chunk)
                if total > limit:
                    raise VolumeReadError(
                        f"decompresses to more than the {declared:,} bytes its header declares", path
                    )
                chunks.append(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise VolumeReadError(describe_failure("corrupt or truncated gzip data", exc, path), path) from None
    raw = b"".join(chunks)
    del chunks
    if len(raw) < declared:
        raise VolumeReadError(f"image data truncated: {len(raw):,} bytes, header needs {declared:,}", path)
    image_class = type(img)
    try:
        return image_class.from_bytes(raw)
    except Exception as exc:
        raise VolumeReadError(describe_failure("not a readable NIfTI file", exc, path), path) from None


def _header_text(hdr: nib.Nifti1Header, field: str) -> str:
    raw = hdr[field].tobytes() if hasattr(hdr[field], "tobytes") else bytes(hdr[field])
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def _comments(hdr: nib.Nifti1Header) -> list[str]:
    texts = []
    for ext in hdr.extensions:
        if ext.get_code() == _COMMENT_ECODE:
            content = ext.get_content()
            raw = content if isinstance(content, bytes) else str(content).encode()
            texts.append(raw.rstrip(b"\0").decode("utf-8", errors="replace"))
    return texts


def write_nifti(volume: Volume, path: Path, description: str, derivation: str | None) -> None:
    """Write ``volume`` as float32 NIfTI-1 to ``path`` (the temporary file of an atomic write)."""
    codes = valid_codes(volume.metadata.get("source_orientation"))
    data, affine = (volume.data, volume.affine) if codes is None else reorient(
        volume.data, volume.affine, codes
    )
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    hdr = img.header
    hdr.set_data_dtype(np.float32)
    qcode, scode = _xform_codes(volume.metadata.get("nifti_xform_codes"))
    img.set_qform(affine, code=qcode)
    img.set_sform(affine, code=scode)
    hdr.set_xyzt_units(xyz="mm")
    hdr["descrip"] = description.encode("ascii", errors="replace")[:79]
    hdr["scl_slope"] = 1.0
    hdr["scl_inter"] = 0.0
    if derivation:
        hdr.extensions.append(nib.nifti1.Nifti1Extension(_COMMENT_ECODE, derivation.encode("utf-8")))
    try:
        nib.save(img, path)
    except Exception as exc:
        raise VolumeWriteError(describe_failure("could not write NIfTI", exc), path) from None


def _xform_codes(codes: object) -> tuple[int, int]:
    """The input's qform/sform codes when they were meaningful, else scanner (1) for both."""
    if isinstance(codes, (tuple, list)) and len(codes) == 2:
        q, s = (int(c) for c in codes)
        if 0 < q <= 4 and 0 < s <= 4:
            return q, s
        if 0 < s <= 4:
            return s, s
        if 0 < q <= 4:
            return q, q
    return 1, 1
