"""Write a ``Volume`` as a DERIVED DICOM series (one classic file per slice) into a folder.

Geometry (ImageOrientationPatient, ImagePositionPatient, PixelSpacing, slice step) comes from the
volume's affine; slices follow the source's own orientation when known (so a sagittal acquisition
stays sagittal), else axial. Patient and study context is copied from the reference header of the
source series when there is one; the series and every instance get new UIDs.

Pixel values are stored as 16-bit integers with RescaleSlope/Intercept:
- CT: int16, slope 1, intercept 0 (Hounsfield units rounded to the nearest integer);
- integer-valued data that fits int16/uint16: stored exactly, slope 1, intercept 0;
- otherwise: uint16 spanning [min, max], so the error is at most half a quantisation step
  (``(max - min) / 65535 / 2``).
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom.uid as dicom_uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.valuerep import format_number_as_ds

from engine.errors import VolumeWriteError
from engine.io.guards import describe_failure
from engine.io.orientation import reorient, valid_codes
from engine.volume import Volume

DEFAULT_SLICE_ORIENTATION = ("L", "P", "S")  # axial, DICOM's usual row/column directions
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_SOP_CLASS = {
    "CT": dicom_uid.CTImageStorage,
    "MR": dicom_uid.MRImageStorage,
}
# Copied from the source series: who and which study (the frame of reference is unchanged too).
_CONTEXT_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "PatientPosition",
    "BodyPartExamined",
    # acquisition context a derived image keeps (its contrast is that of the source)
    "ScanningSequence",
    "SequenceVariant",
    "MRAcquisitionType",
    "MagneticFieldStrength",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "KVP",
)


@dataclass(frozen=True)
class Quantisation:
    """How float voxels become stored integers: value = stored * slope + intercept."""

    dtype: np.dtype
    slope: float
    intercept: float

    def store(self, values: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        scaled = np.rint((values.astype(np.float64) - self.intercept) / self.slope)
        return np.clip(scaled, info.min, info.max).astype(self.dtype.newbyteorder("<"))


def choose_quantisation(data: np.ndarray, modality: str) -> Quantisation:
    """Pick the 16-bit storage that keeps ``data`` within quantisation (see module docstring)."""
    lo, hi = float(np.min(data)), float(np.max(data))
    if modality == "CT" and -32768 <= round(lo) and round(hi) <= 32767:
        return Quantisation(np.dtype(np.int16), 1.0, 0.0)
    if np.array_equal(data, np.rint(data)):
        if lo >= -32768 and hi <= 32767:
            return Quantisation(np.dtype(np.int16), 1.0, 0.0)
        if lo >= 0 and hi <= 65535:
            return Quantisation(np.dtype(np.uint16), 1.0, 0.0)
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    # Slope and intercept are stored as 16-character decimal strings: quantise with the stored values.
    # (rounding them changes the range by ~1e-10 relative, far below half a step).
    return Quantisation(
        np.dtype(np.uint16), float(format_number_as_ds(slope)), float(format_number_as_ds(lo))
    )


def write_dicom_series(volume: Volume, folder: Path, description: str, derivation: str | None) -> None:
    """Write every slice of ``volume`` as ``0001.dcm``, ``0002.dcm``... into the existing ``folder``."""
    codes = valid_codes(volume.metadata.get("source_orientation")) or DEFAULT_SLICE_ORIENTATION
    data, affine_ras = reorient(volume.data, volume.affine, codes)
    affine = LPS_TO_RAS @ affine_ras  # RAS -> LPS (the matrix is its own inverse)
    quant = choose_quantisation(data, volume.modality)
    template = _series_template(volume, affine, quant, description, derivation, data)
    origin, slice_vec = affine[:3, 3], affine[:3, 2]
    normal = np.cross(template.row_dir, template.col_dir)
    for k in range(data.shape[2]):
        position = origin + k * slice_vec
        ds = _slice_dataset(template.header, k, position, float(np.dot(position, normal)))
        ds.PixelData = quant.store(data[:, :, k].T).tobytes()
        try:
            ds.save_as(folder / f"{k + 1:04d}.dcm", enforce_file_format=True)
        except Exception as exc:
            raise VolumeWriteError(describe_failure("could not write DICOM slice", exc), folder) from None


@dataclass
class _Template:
    header: Dataset
    row_dir: np.ndarray
    col_dir: np.ndarray


def _series_template(
    volume: Volume,
    affine: np.ndarray,
    quant: Quantisation,
    description: str,
    derivation: str | None,
    data: np.ndarray,
) -> _Template:
    """The tags shared by every slice of the new series."""
    col_spacing, row_spacing = (float(np.linalg.norm(affine[:3, i])) for i in (0, 1))
    row_dir = affine[:3, 0] / col_spacing
    col_dir = affine[:3, 1] / row_spacing
    normal = np.cross(row_dir, col_dir)
    step = abs(float(np.dot(affine[:3, 2], normal / np.linalg.norm(normal))))
    reference = volume.metadata.get("dicom_reference")
    now = dt.datetime.now()

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    if isinstance(reference, Dataset):
        for keyword in _CONTEXT_KEYWORDS:
            if keyword in reference:
                element = copy.deepcopy(reference[keyword])  # as stored: no re-validation
                ds[element.tag] = element
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = dicom_uid.generate_uid()
        ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        ds.StudyID = "1"
        ds.StudyDescription = "MedSR Viewer"
    if "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = dicom_uid.generate_uid()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                    "ReferringPhysicianName", "PositionReferenceIndicator"):
        if keyword not in ds:
            setattr(ds, keyword, "")  # type 2: present, may be empty

    modality = volume.modality if volume.modality in _SOP_CLASS else "OT"
    ds.SOPClassUID = _SOP_CLASS.get(volume.modality, dicom_uid.SecondaryCaptureImageStorage)
    ds.Modality = modality
    ds.SeriesInstanceUID = dicom_uid.generate_uid()
    ds.SeriesNumber = _derived_series_number(reference)
    ds.SeriesDescription = description[:64]
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "SECONDARY"]
    if derivation:
        ds.DerivationDescription = derivation[:1024]
    ds.Manufacturer = "MedSR Viewer"
    if modality == "OT":
        ds.ConversionType = "WSD"  # secondary capture: workstation

    ds.ImageOrientationPatient = [format_number_as_ds(float(v)) for v in (*row_dir, *col_dir)]
    ds.PixelSpacing = [format_number_as_ds(row_spacing), format_number_as_ds(col_spacing)]
    ds.SliceThickness = format_number_as_ds(step)
    ds.SpacingBetweenSlices = format_number_as_ds(step)

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(data.shape[1]), int(data.shape[0])
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if quant.dtype == np.int16 else 0
    ds.RescaleSlope = format_number_as_ds(quant.slope)
    ds.RescaleIntercept = format_number_as_ds(quant.intercept)
    ds.RescaleType = "HU" if modality == "CT" else "US"
    centre, width = _window(data)
    ds.WindowCenter, ds.WindowWidth = format_number_as_ds(centre), format_number_as_ds(width)
    return _Template(ds, row_dir, col_dir)


def _slice_dataset(template: Dataset, k: int, position: np.ndarray, location: float) -> Dataset:
    ds = Dataset()
    ds.update(template)
    ds.SOPInstanceUID = dicom_uid.generate_uid()
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [format_number_as_ds(float(v)) for v in position]
    ds.SliceLocation = format_number_as_ds(location)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = dicom_uid.ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _derived_series_number(reference: object) -> int:
    try:
        base = int(reference.SeriesNumber) if isinstance(reference, Dataset) else 0  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        base = 0
    return min(base + 1000, 2**31 - 1)


def _window(data: np.ndarray) -> tuple[float, float]:
    """A display window over the 1st-99th percentile of a subsample (viewers use it as default)."""
    sample = data[::4, ::4, ::2] if data.size > 2**20 else data
    lo, hi = (float(v) for v in np.percentile(sample, [1.0, 99.0]))
    return (lo + hi) / 2.0, max(hi - lo, 1.0)
