"""Volume I/O: every real file loads with its stated geometry; round trips; derived DICOM; bad inputs."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import Cancelled, VolumeReadError, VolumeWriteError
from engine.geometry import resampled_affine
from engine.io import SeriesInfo, list_dicom_series, load_volume, save_volume
from engine.volume import Volume

# (path under shared data, shape, spacing) as MANIFEST.md states them: x.y.z for NIfTI (as stored),
# rows.columns.slices for DICOM, spacing paired with each of those axes.
MANIFEST = [
    ("brain_mri/rorden_chris_t1.nii.gz", (188, 256, 190), (0.88, 0.88, 0.88)),
    ("brain_mri/rorden_chris_PD.nii.gz", (191, 256, 54), (0.8579, 0.8594, 2.4)),
    ("brain_mri/cstar_stroke_T1.nii.gz", (124, 160, 140), (1, 1, 1)),
    ("brain_mri/cstar_stroke_T2.nii.gz", (124, 160, 140), (1, 1, 1)),
    ("brain_mri/cstar_stroke_FLAIR.nii.gz", (124, 160, 140), (1, 1, 1)),
    ("brain_mri/utah_seg3d_MR.nii.gz", (160, 232, 160), (1, 0.8984, 0.8984)),
    ("dicom/rorden_decubitus_HFS_t1_fl2d_sag", (256, 256, 35), (1.016, 1.016, 4.8)),
    ("dicom/rorden_trio_b17_t1_MPRAGE", (256, 256, 176), (1, 1, 1)),
    ("dicom/indiana_xa30_T1w_enhanced", (128, 128, 96), (2, 2, 2)),
    ("ct/totalseg_example_ct_abdomen_pelvis.nii.gz", (122, 101, 112), (3, 3, 3)),
    ("dicom/totalseg_ct_body_jpeg2000", (512, 512, 20), (0.9766, 0.9766, 2)),
    ("body_mri/totalseg_example_mr_sm_abdomen.nii.gz", (117, 91, 20), (3, 3, 3)),
    ("body_mri/monai_test_prostate_t2_tse_tra.nii.gz", (384, 384, 19), (0.5, 0.5, 3)),
    ("msk_spine/sct_t2s_axial_cspine.nii.gz", (320, 320, 11), (0.5, 0.5, 7.5)),
    ("msk_spine/sct_t1w_cspine_crop.nii.gz", (42, 76, 77), (1, 1, 1)),
    ("msk_spine/sct_t2w_cspine_crop.nii.gz", (60, 55, 52), (1, 1, 1)),
    ("msk_spine/vtkdata_knee_sag_3D_GE_1slice.dcm", (512, 512, 1), (0.4297, 0.4297, 0.8)),
    ("msk_spine/nema_MR2_shoulder_T1SE_1slice.dcm", (1024, 1024, 1), (0.1953, 0.1953, 6)),
]
DECUBITUS = "dicom/rorden_decubitus_HFS_t1_fl2d_sag"
CT_J2K = "dicom/totalseg_ct_body_jpeg2000"
ENHANCED = "dicom/indiana_xa30_T1w_enhanced"
PSR_NIFTI = "msk_spine/sct_t2w_cspine_crop.nii.gz"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

_cache: dict[str, Volume] = {}


def _load(shared_data: Path, rel: str) -> Volume:
    """Each real file is loaded once per test session (the loader does not mutate it)."""
    if rel not in _cache:
        _cache[rel] = load_volume(shared_data / rel)
    return _cache[rel]


def _axis_pairs(shape, spacing) -> list[tuple[int, float]]:
    return sorted((int(n), round(float(s), 2)) for n, s in zip(shape, spacing, strict=True))


def _write_nifti(path: Path, data: np.ndarray, affine=None, **header) -> Path:
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, path)
    return path


def _raw_nifti(path: Path, data: np.ndarray, **fields) -> Path:
    """A NIfTI-1 file written byte by byte, so any header field (even an invalid one) is kept."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(data.dtype)
    hdr.set_data_shape(data.shape)
    hdr["vox_offset"] = 352
    for key, value in fields.items():
        hdr[key] = value
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + data.tobytes(order="F"))
    return path


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".dcm")


# --- real data -------------------------------------------------------------------------------


@pytest.mark.parametrize(("rel", "shape", "spacing"), MANIFEST, ids=[m[0] for m in MANIFEST])
def test_real_data_loads_with_manifest_geometry(shared_data, rel, shape, spacing):
    vol = _load(shared_data, rel)
    # Canonical reorientation may permute axes: compare (size, spacing) pairs per axis.
    got, want = _axis_pairs(vol.shape, vol.spacing), _axis_pairs(shape, spacing)
    assert [n for n, _ in got] == [n for n, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=0.011)
    assert vol.data.dtype == np.float32 and np.isfinite(vol.data).all()
    assert np.isfinite(vol.affine).all() and abs(np.linalg.det(vol.affine[:3, :3])) > 0
    # closest canonical RAS+: each axis runs mostly towards +R, +A, +S respectively
    assert np.all(np.argmax(np.abs(vol.affine[:3, :3]), axis=0) == [0, 1, 2])
    assert np.all(np.diag(vol.affine[:3, :3]) > 0)
    assert vol.modality == ("CT" if rel.startswith("ct/") or "_ct_" in rel else "MR")
    assert vol.metadata["nonfinite_voxels"] == 0


def test_ct_dicom_is_in_hounsfield_units(shared_data):
    vol = _load(shared_data, CT_J2K)
    assert vol.modality == "CT" and vol.description == "CT Body 3.0"
    corner = vol.data[:40, :40, :]  # outside the body: air
    assert -1100 < float(np.median(corner)) < -900
    assert vol.data.max() > 300  # bone
    ref = vol.metadata["dicom_reference"]
    assert isinstance(ref, pydicom.Dataset) and "PixelData" not in ref
    assert ref.Modality == "CT" and "StudyInstanceUID" in ref


def test_jpeg2000_series_matches_direct_decode(shared_data):
    folder = shared_data / CT_J2K
    files = _dicom_files(folder)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    expected = 0.0
    for f in files:
        ds = pydicom.dcmread(f)
        expected += float((ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).sum())
    assert float(_load(shared_data, CT_J2K).data.sum(dtype=np.float64)) == pytest.approx(expected)


@pytest.mark.parametrize("rel", [ENHANCED, DECUBITUS])
def test_first_pixel_of_each_frame_lands_on_a_voxel_corner(shared_data, rel):
    """The affine places each frame's ImagePositionPatient on an in-plane corner voxel."""
    vol = _load(shared_data, rel)
    ds = pydicom.dcmread(_dicom_files(shared_data / rel)[0])
    if "PerFrameFunctionalGroupsSequence" in ds:
        positions = [
            g.PlanePositionSequence[0].ImagePositionPatient for g in ds.PerFrameFunctionalGroupsSequence
        ]
    else:
        positions = [ds.ImagePositionPatient]
    inverse = np.linalg.inv(vol.affine)
    for ipp in positions[:: max(1, len(positions) // 8)]:
        ijk = (inverse @ np.append(LPS_TO_RAS @ np.asarray(ipp, float), 1.0))[:3]
        assert np.allclose(ijk, np.round(ijk), atol=1e-3)
        assert np.all(ijk > -1e-3) and np.all(ijk < np.array(vol.shape) - 1 + 1e-3)
        corner_axes = [a for a in range(3) if round(ijk[a]) in (0, vol.shape[a] - 1)]
        assert len(corner_axes) >= 2


def test_enhanced_multiframe_geometry(shared_data):
    vol = _load(shared_data, ENHANCED)
    assert vol.spacing == pytest.approx((2.0, 2.0, 2.0), abs=1e-4)
    assert sorted(vol.shape) == [96, 128, 128]
    assert vol.metadata["warnings"] == []


def test_folder_with_two_series_loads_largest_and_lists_both(shared_data, tmp_path):
    mr_files = _dicom_files(shared_data / DECUBITUS)[10:14]
    ct_files = _dicom_files(shared_data / CT_J2K)[:2]
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for f in mr_files:
        shutil.copy(f, tmp_path / "a" / "deep" / f.stem)  # without the .dcm extension
    for f in ct_files:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "DICOMDIR").write_bytes(b"ignored")

    series = list_dicom_series(tmp_path)
    assert [type(s) for s in series] == [SeriesInfo, SeriesInfo]
    assert [(s.modality, s.n_slices, s.rows, s.cols) for s in series] == [
        ("MR", 4, 256, 256),
        ("CT", 2, 512, 512),
    ]
    assert len(series[1].files) == 2 and all(p.exists() for p in series[1].files)

    vol = load_volume(tmp_path)
    assert vol.modality == "MR" and sorted(vol.shape) == [4, 256, 256]
    assert vol.metadata["series"] == series
    assert vol.metadata["skipped_files"] == 2
    assert vol.metadata["warnings"] == []  # consecutive slices: even spacing

    ct = load_volume(tmp_path, series_uid=series[1].uid)
    assert ct.modality == "CT" and sorted(ct.shape) == [2, 512, 512]
    with pytest.raises(VolumeReadError, match="not found"):
        load_volume(tmp_path, series_uid="1.2.3.4")


def test_missing_slice_and_duplicate_positions_are_reported(shared_data, tmp_path):
    files = _dicom_files(shared_data / DECUBITUS)
    for f in files[:3] + files[4:6]:  # a gap after the third slice
        shutil.copy(f, tmp_path / f.name)
    vol = load_volume(tmp_path)
    assert sorted(vol.shape) == [5, 256, 256]
    assert any("uneven slice spacing" in w for w in vol.metadata["warnings"])

    dup = tmp_path / "dup"
    dup.mkdir()
    for i, f in enumerate(files[:3]):
        shutil.copy(f, dup / f.name)
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = 100 + i  # a second echo at the same positions
        ds.save_as(dup / f"echo2_{i}.dcm")
    vol = load_volume(dup)
    assert sorted(vol.shape) == [3, 256, 256]
    assert any("kept the first frame at each position" in w for w in vol.metadata["warnings"])


def test_missing_positions_fall_back_to_instance_number(shared_data, tmp_path):
    files = _dicom_files(shared_data / DECUBITUS)[:4]
    for f in reversed(files):  # written in reverse so file order alone would be wrong
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.save_as(tmp_path / f"x{99 - int(ds.InstanceNumber)}.dcm")
    vol = load_volume(tmp_path)
    reference = load_volume(shared_data / DECUBITUS)
    assert any("ordered by InstanceNumber" in w for w in vol.metadata["warnings"])
    assert sorted(vol.shape) == [4, 256, 256]
    # slice step from SpacingBetweenSlices (4.8 mm), slice order by InstanceNumber
    assert sorted(vol.spacing) == pytest.approx(sorted(reference.spacing), abs=1e-3)
    first = pydicom.dcmread(files[0]).pixel_array.astype(np.float32)
    axis = int(np.argmax(vol.spacing))
    ends = [np.take(vol.data, i, axis=axis) for i in (0, -1)]
    assert any(
        end.shape == first.T.shape and np.array_equal(np.sort(end.ravel()), np.sort(first.ravel()))
        for end in ends
    )


def test_mixed_sizes_keep_the_majority_and_say_so(shared_data, tmp_path):
    for f in _dicom_files(shared_data / DECUBITUS)[:3]:
        shutil.copy(f, tmp_path / f.name)
    stray = pydicom.dcmread(_dicom_files(shared_data / CT_J2K)[0])
    stray.SeriesInstanceUID = pydicom.dcmread(_dicom_files(shared_data / DECUBITUS)[0]).SeriesInstanceUID
    stray.save_as(tmp_path / "stray.dcm")
    vol = load_volume(tmp_path)
    assert sorted(vol.shape) == [3, 256, 256]
    assert any("kept the 3 frames of the most common stack" in w for w in vol.metadata["warnings"])


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_raises_read_error(tmp_path):
    path = _write_nifti(tmp_path / "locked.nii", np.ones((2, 2, 2), np.int16))
    path.chmod(0)
    with pytest.raises(VolumeReadError, match="locked.nii"):
        load_volume(path)


def test_cancel_and_progress(shared_data):
    seen: list[float] = []
    load_volume(shared_data / DECUBITUS, progress=seen.append)
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 35
    calls = iter(range(1000))
    with pytest.raises(Cancelled):
        load_volume(shared_data / DECUBITUS, cancel=lambda: next(calls) > 5)


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_round_trip_keeps_file_orientation(shared_data, tmp_path, suffix):
    src = shared_data / PSR_NIFTI
    vol = _load(shared_data, PSR_NIFTI)
    out = save_volume(vol, tmp_path / f"out{suffix}", description="round trip", derivation="test x1")
    original, written = nib.load(src), nib.load(out)
    assert written.header.get_data_dtype() == np.float32
    assert nib.aff2axcodes(written.affine) == ("P", "S", "R") == nib.aff2axcodes(original.affine)
    assert np.allclose(written.affine, original.affine, atol=1e-4)
    assert np.array_equal(written.get_fdata(), original.get_fdata())
    again = load_volume(out)
    assert np.array_equal(again.data, vol.data)
    assert np.allclose(again.affine, vol.affine, atol=1e-4)
    assert again.description == "round trip"
    assert again.metadata["nifti_comments"] == ["test x1"]


@pytest.mark.parametrize("rel", [DECUBITUS, CT_J2K])
def test_dicom_round_trip_is_exact_for_integer_data(shared_data, tmp_path, rel):
    vol = _load(shared_data, rel)
    out = save_volume(vol, tmp_path / "series", description="copy")
    again = load_volume(out)
    assert again.shape == vol.shape and again.modality == vol.modality
    assert np.allclose(again.affine, vol.affine, atol=1e-4)
    assert np.array_equal(again.data, vol.data)  # CT stays in HU, MR integers stay exact
    nifti = load_volume(save_volume(vol, tmp_path / "as.nii.gz"))
    assert np.allclose(nifti.affine, vol.affine, atol=1e-4) and np.array_equal(nifti.data, vol.data)


@pytest.mark.parametrize("modality", ["MR", "CT", "unknown"])
def test_dicom_round_trip_of_float_data_stays_within_quantisation(tmp_path, modality):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(12, 10, 5)) * 300 + 40).astype(np.float32)
    affine = np.array([[0.7, 0.05, 0, -30], [-0.04, 0.9, 0.2, 12], [0, -0.1, 2.5, 5], [0, 0, 0, 1.0]])
    vol = Volume(data, affine, modality=modality, metadata={"source_orientation": ("A", "S", "L")})
    again = load_volume(save_volume(vol, tmp_path / "float_series"))
    step = 1.0 if modality == "CT" else float(np.ptp(data)) / 65535
    assert np.max(np.abs(again.data - vol.data)) <= step / 2 + 1e-4
    assert np.allclose(again.affine, vol.affine, atol=1e-4)
    assert again.modality == modality


def test_derived_series_tags(shared_data, tmp_path):
    vol = _load(shared_data, DECUBITUS)
    ref = vol.metadata["dicom_reference"]
    out = save_volume(vol, tmp_path / "sr", description="SR edsr x2", derivation="edsr x2 sha256 0123abcd")
    files = _dicom_files(out)
    headers = [pydicom.dcmread(f) for f in files]
    assert len(files) == 35
    first = headers[0]
    assert list(first.ImageType) == ["DERIVED", "SECONDARY"]
    assert first.SeriesDescription == "SR edsr x2"
    assert first.DerivationDescription == "edsr x2 sha256 0123abcd"
    assert first.SeriesInstanceUID != ref.SeriesInstanceUID
    assert len({h.SeriesInstanceUID for h in headers}) == 1
    assert len({h.SOPInstanceUID for h in headers}) == 35
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "FrameOfReferenceUID"):
        assert first.get(keyword) == ref.get(keyword)
    assert (first.Rows, first.Columns) == (256, 256)
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([1.015625, 1.015625])
    assert float(first.SpacingBetweenSlices) == pytest.approx(4.8, abs=1e-3)
    assert float(first.SliceThickness) == pytest.approx(4.8, abs=1e-3)
    assert [float(v) for v in first.ImageOrientationPatient] == pytest.approx(
        [float(v) for v in ref.ImageOrientationPatient], abs=1e-6
    )
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_derived_series_from_nifti_gets_fresh_context(shared_data, tmp_path):
    vol = _load(shared_data, "ct/totalseg_example_ct_abdomen_pelvis.nii.gz")
    out = save_volume(vol, str(tmp_path / "ct_series") + "/", description="ct")
    first = pydicom.dcmread(_dicom_files(out)[0])
    assert first.Modality == "CT" and first.SOPClassUID == pydicom.uid.CTImageStorage
    assert first.RescaleType == "HU" and "StudyInstanceUID" in first
    assert len(_dicom_files(out)) == 112


def test_upscaled_volume_keeps_field_of_view(shared_data, tmp_path):
    vol = _load(shared_data, DECUBITUS)
    axis = vol.acquisition_axis
    scale = [1 if a == axis else 2 for a in range(3)]
    data = vol.data
    for a in range(3):
        data = np.repeat(data, scale[a], axis=a)
    affine = resampled_affine(vol.affine, vol.shape, data.shape)
    up = Volume(data, affine, vol.modality, vol.description, vol.source, dict(vol.metadata))
    again = load_volume(save_volume(up, tmp_path / "up"))
    assert again.spacing == pytest.approx([s / k for s, k in zip(vol.spacing, scale, strict=True)], abs=1e-4)
    assert np.allclose(again.affine, affine, atol=1e-4)


def test_resampled_affine_keeps_field_of_view_edges():
    affine = np.array([[0, 0, 3.0, 10], [-1.2, 0, 0, 20], [0, 0.8, 0.1, 30], [0, 0, 0, 1]])
    in_shape, out_shape = (10, 20, 5), (25, 40, 5)
    new = resampled_affine(affine, in_shape, out_shape)
    for old_edge, new_edge in [
        ((-0.5,) * 3, (-0.5,) * 3),
        (np.array(in_shape) - 0.5, np.array(out_shape) - 0.5),
    ]:
        assert np.allclose(affine @ np.append(old_edge, 1), new @ np.append(new_edge, 1))
    assert np.allclose(
        np.linalg.norm(new[:3, :3], axis=0), np.linalg.norm(affine[:3, :3], axis=0) * [0.4, 0.5, 1]
    )
    assert np.allclose(resampled_affine(affine, in_shape, in_shape), affine)


# --- writing safety -----------------------------------------------------------------------------


def _small_volume(source: Path | None = None) -> Volume:
    data = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    return Volume(data, np.diag([1.0, 1.0, 2.0, 1.0]), "MR", "small", source)


@pytest.mark.parametrize("name", ["out.nii.gz", "series"])
def test_refuses_to_overwrite_unless_asked(tmp_path, name):
    target = tmp_path / name
    save_volume(_small_volume(), target)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(VolumeWriteError, match="exists"):
        save_volume(_small_volume(), target)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    doubled = _small_volume()
    doubled.data *= 2
    save_volume(doubled, target, overwrite=True)
    assert np.array_equal(load_volume(target).data, doubled.data)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_folder_with_foreign_files_is_never_replaced(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.docx").write_text("precious")
    with pytest.raises(VolumeWriteError, match="other than .dcm"):
        save_volume(_small_volume(), tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "thesis.docx").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    save_volume(_small_volume(), tmp_path / "empty")  # an empty folder is free
    assert len(_dicom_files(tmp_path / "empty")) == 3


@pytest.mark.parametrize("name", ["out.nii.gz", "series"])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, name):
    import engine.io.save as save_module

    def broken(volume, temp, description, derivation):
        if temp.is_dir():
            (temp / "0001.dcm").write_bytes(b"partial")
        else:
            temp.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(save_module, "write_dicom_series", broken)
    monkeypatch.setattr(save_module, "write_nifti", broken)
    with pytest.raises(VolumeWriteError, match="disk full"):
        save_volume(_small_volume(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_refuses_output_over_or_inside_the_input(tmp_path):
    src = _write_nifti(tmp_path / "in.nii.gz", np.ones((4, 4, 4), np.int16))
    vol = load_volume(src)
    with pytest.raises(VolumeWriteError, match="input"):
        save_volume(vol, src, overwrite=True)
    folder_vol = _small_volume(source=tmp_path)
    with pytest.raises(VolumeWriteError, match="input"):
        save_volume(folder_vol, tmp_path / "inside")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


def test_write_refuses_bad_requests(tmp_path):
    with pytest.raises(VolumeWriteError, match="folder"):
        save_volume(_small_volume(), tmp_path / "slice.dcm")
    bad = _small_volume()
    bad.data[0, 0, 0] = np.nan
    with pytest.raises(VolumeWriteError, match="non-finite"):
        save_volume(bad, tmp_path / "nan.nii.gz")
    assert list(tmp_path.iterdir()) == []


# --- awkward but valid inputs -------------------------------------------------------------------


def test_nonfinite_voxels_are_replaced_and_counted(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4) + 5
    data[0, 0, 0], data[1, 1, 1], data[1, 2, 3] = np.nan, np.inf, -np.inf
    vol = load_volume(_write_nifti(tmp_path / "nan.nii", data))
    assert vol.metadata["nonfinite_voxels"] == 3
    assert np.isfinite(vol.data).all() and vol.data.min() == 6.0
    assert np.count_nonzero(vol.data == 6.0) == 4


def test_constant_volume_and_singleton_4d_load(tmp_path):
    vol = load_volume(_write_nifti(tmp_path / "flat.nii.gz", np.full((3, 4, 5), 7, np.int16)))
    assert vol.modality == "unknown" and np.all(vol.data == 7)
    vol4 = load_volume(_write_nifti(tmp_path / "t1.nii.gz", np.zeros((3, 4, 5, 1), np.uint8)))
    assert vol4.shape == (3, 4, 5)


def test_zero_voxel_size_is_reported(tmp_path):
    path = _raw_nifti(tmp_path / "zero.nii", np.ones((4, 4, 4), np.int16), pixdim=[1, 1, 1, 0, 1, 1, 1, 1])
    vol = load_volume(path)
    assert vol.spacing == pytest.approx((1, 1, 1))
    assert any("voxel size is 0" in w for w in vol.metadata["warnings"])


def test_nifti_scaling_is_applied(tmp_path):
    path = _raw_nifti(
        tmp_path / "scaled.nii", np.array([[[0, 1], [2, 3]]], np.int16), scl_slope=2, scl_inter=-1024
    )
    vol = load_volume(path)
    assert sorted(vol.data.ravel().tolist()) == [-1024, -1022, -1020, -1018]


# --- bad inputs ---------------------------------------------------------------------------------


def _valid_gz(tmp_path: Path) -> bytes:
    path = _write_nifti(tmp_path / "valid.nii.gz", np.arange(4000, dtype=np.int16).reshape(10, 20, 20))
    return path.read_bytes()


def _nopixel_dicom(shared_data: Path, path: Path) -> Path:
    ds = pydicom.dcmread(_dicom_files(shared_data / DECUBITUS)[0])
    del ds.PixelData
    ds.save_as(path)
    return path


def _huge_header(path: Path) -> Path:
    return _raw_nifti(path, np.ones(32, np.int16), dim=[3, 30000, 30000, 30000, 1, 1, 1, 1])


def _make_bad_input(kind: str, tmp_path: Path, shared_data: Path) -> Path:
    rng = np.random.default_rng(1)
    if kind.startswith("empty ."):
        path = tmp_path / ("empty" + kind.removeprefix("empty "))
        path.touch()
        return path
    if kind.startswith("random "):
        path = tmp_path / ("noise" + kind.removeprefix("random ").replace("noext", ""))
        path.write_bytes(rng.bytes(2000))
        return path
    if kind == "truncated .nii.gz":
        raw = _valid_gz(tmp_path)
        (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
        return tmp_path / "cut.nii.gz"
    if kind == "corrupt gzip crc":
        raw = bytearray(_valid_gz(tmp_path))
        raw[-8] ^= 0xFF  # CRC32 of the trailer: nibabel alone would not notice
        (tmp_path / "crc.nii.gz").write_bytes(bytes(raw))
        return tmp_path / "crc.nii.gz"
    if kind == "corrupt gzip stream":
        raw = bytearray(_valid_gz(tmp_path))
        raw[40:80] = rng.bytes(40)
        (tmp_path / "garbled.nii.gz").write_bytes(bytes(raw))
        return tmp_path / "garbled.nii.gz"
    if kind == "gzip named .nii":
        (tmp_path / "packed.nii").write_bytes(_valid_gz(tmp_path))
        return tmp_path / "packed.nii"
    if kind == "truncated .nii":
        path = _write_nifti(tmp_path / "short.nii", np.ones((10, 10, 10), np.float32))
        path.write_bytes(path.read_bytes()[:1000])
        return path
    if kind == "4D NIfTI":
        return _write_nifti(tmp_path / "fmri.nii.gz", np.zeros((4, 4, 4, 3), np.int16))
    if kind == "complex NIfTI":
        return _write_nifti(tmp_path / "complex.nii", np.ones((4, 4, 4), np.complex64))
    if kind == "singular sform":
        return _raw_nifti(
            tmp_path / "flat.nii", np.ones((4, 4, 4), np.int16), sform_code=1, srow_z=[0, 0, 0, 5]
        )
    if kind == "huge header":
        return _huge_header(tmp_path / "huge.nii")
    if kind == "huge header .nii.gz":
        raw = _huge_header(tmp_path / "h.nii").read_bytes()
        (tmp_path / "huge.nii.gz").write_bytes(gzip.compress(raw))
        return tmp_path / "huge.nii.gz"
    if kind == "empty folder":
        (tmp_path / "nothing_here").mkdir()
        return tmp_path / "nothing_here"
    if kind == "folder without DICOM":
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "readme.txt").write_text("hello")
        return tmp_path / "docs"
    if kind == "DICOM without pixel data":
        return _nopixel_dicom(shared_data, tmp_path / "rtstruct_like.dcm")
    if kind == "folder of non-image DICOM":
        (tmp_path / "structs").mkdir()
        _nopixel_dicom(shared_data, tmp_path / "structs" / "a.dcm")
        return tmp_path / "structs"
    if kind == "truncated DICOM":
        src = _dicom_files(shared_data / DECUBITUS)[0]
        (tmp_path / "cut.dcm").write_bytes(src.read_bytes()[:-50000])
        return tmp_path / "cut.dcm"
    if kind == "non-existent path":
        return tmp_path / "missing_volume.nii.gz"
    raise AssertionError(kind)


BAD_INPUTS = [
    "empty .nii.gz", "empty .dcm", "random .nii.gz", "random .nii", "random .dcm", "random noext",
    "truncated .nii.gz", "corrupt gzip crc", "corrupt gzip stream", "gzip named .nii", "truncated .nii",
    "4D NIfTI", "complex NIfTI", "singular sform", "huge header", "huge header .nii.gz", "empty folder",
    "folder without DICOM", "DICOM without pixel data", "folder of non-image DICOM", "truncated DICOM",
    "non-existent path",
]  # fmt: skip


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_raises_read_error_naming_the_file(kind, tmp_path, shared_data):
    path = _make_bad_input(kind, tmp_path, shared_data)
    with pytest.raises(VolumeReadError) as info:
        load_volume(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message
    assert info.value.reason and len(message) < 400
    if kind.startswith("huge header"):
        assert "voxel limit" in message
    if kind == "4D NIfTI":
        assert "3 volumes" in message


# --- property: any header either loads with finite geometry or raises VolumeReadError -----------

_DATATYPES = [2, 4, 8, 16, 64, 256, 512, 768, 1024, 1280, 32, 128, 2304, 1536, 0, 1, 9999]
_PIXDIMS = [1.0, 2.5, 0.0, -1.0, 1e-9, 1e12, float("nan"), float("inf")]


@settings(max_examples=30, deadline=None)
@given(
    ndim=st.integers(-1, 8),
    dims=st.lists(st.integers(-1, 5), min_size=7, max_size=7),
    pixdims=st.lists(st.sampled_from(_PIXDIMS), min_size=8, max_size=8),
    datatype=st.sampled_from(_DATATYPES),
    codes=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    fill=st.sampled_from([0.0, 0.5, 1.0]),
    compressed=st.booleans(),
)
def test_any_nifti_header_loads_or_raises_read_error(ndim, dims, pixdims, datatype, codes, fill, compressed):
    hdr = nib.Nifti1Header()
    hdr["dim"] = [ndim, *dims]
    hdr["pixdim"] = pixdims
    hdr["datatype"] = datatype
    hdr["bitpix"] = 16
    hdr["qform_code"], hdr["sform_code"] = codes
    hdr["vox_offset"] = 352
    n_bytes = int(np.prod([max(d, 0) for d in dims[: max(ndim, 0)]], dtype=np.int64)) * 16
    raw = hdr.binaryblock + b"\0" * 4 + np.random.default_rng(0).bytes(int(n_bytes * fill))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("case.nii.gz" if compressed else "case.nii")
        path.write_bytes(gzip.compress(raw) if compressed else raw)
        try:
            vol = load_volume(path)
        except VolumeReadError as exc:
            assert path.name in str(exc)
            return
    assert vol.data.ndim == 3 and np.isfinite(vol.data).all()
    assert np.isfinite(vol.affine).all() and abs(np.linalg.det(vol.affine[:3, :3])) > 0
