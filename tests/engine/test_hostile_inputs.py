"""Broken and hostile inputs: each one loads correctly or is refused with one line naming the file.

Adds to ``test_volume_io.py``, whose bad-input corpus (``BAD_INPUTS``) is only run through
``load_volume`` there: here every case of both corpora also goes through the command line
(``python -m engine.cli upscale BAD -o OUT``), which must exit with code 2, print exactly one line on
stderr and leave no output or temporary file behind. Cases that must load (NaN voxels, constant
volumes, odd but usable DICOM series) must upscale with exit code 0 and finite output.

Permission cases (``chmod 000``) are skipped when the tests run as root, who can read anything.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.tag import Tag

from engine.errors import VolumeReadError
from engine.io import load_volume
from tests.engine.test_volume_io import BAD_INPUTS, _make_bad_input

REPO = Path(__file__).resolve().parents[2]
DECUBITUS = "dicom/rorden_decubitus_HFS_t1_fl2d_sag"
CT_J2K = "dicom/totalseg_ct_body_jpeg2000"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NEEDS_NON_ROOT = pytest.mark.skipif(AS_ROOT, reason="root reads any file: permissions cannot be tested")
CLI_TIMEOUT_S = 60
# pydicom warns as it reads the damaged files below; the loader's answer is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore:(End of file reached|Invalid value for VR):UserWarning")


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".dcm")


def _write_nifti(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def _new_dataset(sop_class: str, modality: str) -> Dataset:
    """A minimal DICOM object of ``sop_class`` (no pixel data), as a PACS export would hold it."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = modality
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.PatientID = "hostile"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _rtstruct(path: Path) -> Path:
    ds = _new_dataset(pydicom.uid.RTStructureSetStorage, "RTSTRUCT")
    ds.StructureSetLabel = "organs"
    roi = Dataset()
    roi.ROINumber, roi.ROIName = 1, "liver"
    ds.StructureSetROISequence = [roi]
    ds.save_as(path, enforce_file_format=True)
    return path


def _sr_document(path: Path) -> Path:
    ds = _new_dataset(pydicom.uid.BasicTextSRStorage, "SR")
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.save_as(path, enforce_file_format=True)
    return path


def _tiny_image(rows: int = 6, cols: int = 5) -> Dataset:
    ds = _new_dataset(pydicom.uid.MRImageStorage, "MR")
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [1, 1]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 0]
    pixels = Tag("PixelData")
    ds[pixels] = DataElement(pixels, "OW", np.arange(rows * cols, dtype="<u2").tobytes())
    return ds


def _bomb(path: Path) -> Path:
    """A 16x16x16 header followed by a gzip stream of ~8 GiB of zeros, in an ~8 MB file.

    Built from one compressed 64 MiB member repeated (gzip readers concatenate members), so making
    it costs one small compression, not 8 GiB of work.
    """
    header = nib.Nifti1Image(np.zeros((16, 16, 16), np.int16), np.eye(4)).to_bytes()
    member = gzip.compress(b"\0" * 2**26, compresslevel=9)
    with path.open("wb") as stream:
        stream.write(gzip.compress(header))
        for _ in range(128):
            stream.write(member)
    return path


def _truncated_j2k_codestream(shared_data: Path, path: Path) -> Path:
    """A real JPEG 2000 CT slice whose codestream is cut in half, re-wrapped as valid DICOM items."""
    ds = pydicom.dcmread(_dicom_files(shared_data / CT_J2K)[0])
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])
    ds.save_as(path)
    return path


def _symlink_loop(folder: Path) -> Path:
    folder.mkdir()
    os.symlink(folder / "b.nii.gz", folder / "a.nii.gz")
    os.symlink(folder / "a.nii.gz", folder / "b.nii.gz")
    return folder / "a.nii.gz"


def _non_utf8(folder: Path, stem: bytes) -> Path:
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + stem))


# --- refusals not in test_volume_io's corpus ---------------------------------------------------

NEW_REFUSALS = {
    # kind: (what the message must also say, case-insensitive)
    "gzip bomb": "decompresses to more than",
    "RGB NIfTI": "unsupported voxel type",
    "RGBA NIfTI": "unsupported voxel type",
    "RTSTRUCT": "without pixel data (Modality RTSTRUCT)",
    "SR document": "without pixel data (Modality SR)",
    "folder of RTSTRUCT and SR": "2 DICOM objects without pixel data",
    "truncated JPEG 2000 pixel data": "damaged or truncated",
    "JPEG 2000 file cut short": "truncated",
    "DICOM header claims 65535x65535": "voxel limit",
    "DICOM header claims 2^31 frames": "frames",
    "colour DICOM": "colour",
    "symlink loop": "symbolic link",
    "dangling symlink": "symbolic link",
    "folder named like a NIfTI file": "folder holds no files",
    "path through a file": "no such file",
    "non-UTF8 name": "not a readable NIfTI",
    "folder of symlink loops": "no DICOM image found",
}


def _make_refusal(kind: str, tmp_path: Path, shared_data: Path) -> Path:
    if kind == "gzip bomb":
        return _bomb(tmp_path / "bomb.nii.gz")
    if kind in ("RGB NIfTI", "RGBA NIfTI"):
        channels = "RGBA" if kind.startswith("RGBA") else "RGB"
        data = np.zeros((4, 4, 4), dtype=[(c, "u1") for c in channels])
        return _write_nifti(tmp_path / f"{channels.lower()}.nii", data)
    if kind == "RTSTRUCT":
        return _rtstruct(tmp_path / "rtstruct.dcm")
    if kind == "SR document":
        return _sr_document(tmp_path / "report.dcm")
    if kind == "folder of RTSTRUCT and SR":
        (tmp_path / "objects").mkdir()
        _rtstruct(tmp_path / "objects" / "rs.dcm")
        _sr_document(tmp_path / "objects" / "sr.dcm")
        return tmp_path / "objects"
    if kind == "truncated JPEG 2000 pixel data":
        return _truncated_j2k_codestream(shared_data, tmp_path / "ct_half.dcm")
    if kind == "JPEG 2000 file cut short":
        src = _dicom_files(shared_data / CT_J2K)[0]
        (tmp_path / "ct_cut.dcm").write_bytes(src.read_bytes()[:-40_000])
        return tmp_path / "ct_cut.dcm"
    if kind == "DICOM header claims 65535x65535":
        ds = _tiny_image()
        ds.Rows = ds.Columns = 65535
        ds.save_as(tmp_path / "wide.dcm", enforce_file_format=True)
        return tmp_path / "wide.dcm"
    if kind == "DICOM header claims 2^31 frames":
        ds = _tiny_image()
        ds.NumberOfFrames = 2**31 - 1
        ds.save_as(tmp_path / "frames.dcm", enforce_file_format=True)
        return tmp_path / "frames.dcm"
    if kind == "colour DICOM":
        ds = _tiny_image()
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = bytes(6 * 5 * 3)
        ds.save_as(tmp_path / "photo.dcm", enforce_file_format=True)
        return tmp_path / "photo.dcm"
    if kind == "symlink loop":
        return _symlink_loop(tmp_path / "loop")
    if kind == "dangling symlink":
        os.symlink(tmp_path / "deleted.nii.gz", tmp_path / "link.nii.gz")
        return tmp_path / "link.nii.gz"
    if kind == "folder named like a NIfTI file":
        (tmp_path / "scan.nii.gz").mkdir()
        return tmp_path / "scan.nii.gz"
    if kind == "path through a file":
        _write_nifti(tmp_path / "scan.nii", np.ones((3, 3, 3), np.int16))
        return tmp_path / "scan.nii" / "0001.dcm"
    if kind == "non-UTF8 name":
        path = _non_utf8(tmp_path, b"r\xe9sum\xe9.nii")
        path.write_bytes(np.random.default_rng(2).bytes(2000))
        return path
    if kind == "folder of symlink loops":
        _symlink_loop(tmp_path / "loops")
        return tmp_path / "loops"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", list(NEW_REFUSALS))
def test_hostile_input_is_refused_naming_the_file(kind, tmp_path, shared_data):
    path = _make_refusal(kind, tmp_path, shared_data)
    with _deadline(20):
        with pytest.raises(VolumeReadError) as info:
            load_volume(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message and len(message) < 400
    assert NEW_REFUSALS[kind].lower() in message.lower()


def test_gzip_bomb_is_refused_quickly_with_little_memory(tmp_path):
    path = _bomb(tmp_path / "bomb.nii.gz")
    assert path.stat().st_size < 16 * 2**20  # an ~8 GiB stream in a small file
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(VolumeReadError, match="decompresses to more than"):
            load_volume(path)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 10, f"took {seconds:.1f} s: the stream was decompressed too far"
    assert peak < 160 * 2**20, f"peak {peak / 2**20:.0f} MiB held while refusing"


@NEEDS_NON_ROOT
@pytest.mark.parametrize("what", ["folder", "file in a folder"])
def test_unreadable_folder_is_refused(what, tmp_path, shared_data):
    folder = tmp_path / "locked"
    folder.mkdir()
    shutil.copy(_dicom_files(shared_data / DECUBITUS)[0], folder / "a.dcm")
    target = folder if what == "folder" else folder / "a.dcm"
    target.chmod(0)
    try:
        with pytest.raises(VolumeReadError, match="locked" if what == "folder" else "a.dcm"):
            load_volume(folder)
    finally:
        target.chmod(0o700)


# --- awkward inputs that must load ---------------------------------------------------------------


def test_all_nan_volume_loads_as_background(tmp_path):
    vol = load_volume(_write_nifti(tmp_path / "nan.nii", np.full((4, 5, 6), np.nan, np.float32)))
    assert np.all(vol.data == 0) and vol.metadata["nonfinite_voxels"] == 120
    assert any("non-finite" in w for w in vol.metadata["warnings"])


def test_float_dicom_with_nan_and_inf_loads_finite(tmp_path):
    ds = _tiny_image(4, 3)
    del ds.PixelData, ds.PixelRepresentation, ds.HighBit, ds.BitsStored
    ds.BitsAllocated = 32
    values = np.arange(12, dtype="<f4") + 10
    values[[0, 5, 7]] = [np.nan, np.inf, -np.inf]
    ds.FloatPixelData = values.tobytes()
    ds.save_as(tmp_path / "float.dcm", enforce_file_format=True)
    vol = load_volume(tmp_path / "float.dcm")
    assert np.isfinite(vol.data).all() and vol.metadata["nonfinite_voxels"] == 3
    assert np.count_nonzero(vol.data == 11) == 4  # replaced by the finite minimum


def test_symlink_and_non_utf8_name_to_a_valid_file_load(tmp_path):
    data = np.arange(27, dtype=np.int16).reshape(3, 3, 3)
    odd = _write_nifti(_non_utf8(tmp_path, b"t1_\xff\xfe.nii.gz"), data)
    os.symlink(odd, tmp_path / "link.nii.gz")
    for path in (odd, tmp_path / "link.nii.gz"):
        assert np.array_equal(np.sort(load_volume(path).data.ravel()), np.arange(27))


def test_folder_with_symlink_loop_beside_images_loads_them(tmp_path, shared_data):
    for f in _dicom_files(shared_data / DECUBITUS)[:2]:
        shutil.copy(f, tmp_path / f.name)
    os.symlink(tmp_path / "self", tmp_path / "self")
    os.symlink(tmp_path, tmp_path / "parent")  # a folder loop: not followed
    vol = load_volume(tmp_path)
    assert sorted(vol.shape) == [2, 256, 256]


# --- the command line on every case ------------------------------------------------------------

# Each case runs ``python -m engine.cli`` semantics in a forked child of one interpreter that has
# imported torch once (a fresh interpreter per case costs ~2 s; the corpus has ~50 cases). The
# child redirects its stdout/stderr to files and runs the module as ``__main__`` exactly as ``-m``
# does; an uncaught exception prints a traceback and exits 1, as the interpreter would.
# ``test_fork_runner_matches_a_real_subprocess`` checks the two agree.
_FORK_RUNNER = r"""
import json, os, runpy, sys, time, traceback
import engine.export, engine.inference, engine.io  # warm imports (not engine.cli: runpy runs it fresh)
cases = json.load(open(sys.argv[1]))
results = {}
for name, case in cases.items():
    out, err = case["stdout"], case["stderr"]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd_out = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            fd_err = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd_out, 1)
            os.dup2(fd_err, 2)
            sys.argv = ["engine.cli", *case["args"]]
            code = 0
            try:
                runpy.run_module("engine.cli", run_name="__main__", alter_sys=True)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    deadline = time.monotonic() + case["timeout"]
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            results[name] = {"rc": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss}
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            results[name] = {"rc": "timeout"}
            break
        time.sleep(0.01)
json.dump(results, sys.stdout)
"""


def _use_fork() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def _cli_subprocess(args: list[str]) -> dict:
    res = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=CLI_TIMEOUT_S * 3,
    )
    return {"rc": res.returncode, "stdout": res.stdout, "stderr": res.stderr}


def run_cli_batch(cases: dict[str, list[str]], workdir: Path) -> dict[str, dict]:
    """Run ``medsr`` on each argument list; return rc, stdout and stderr per case name."""
    if not _use_fork():
        return {name: _cli_subprocess(args) for name, args in cases.items()}
    workdir.mkdir(parents=True, exist_ok=True)
    spec = {
        name: {
            "args": args,
            "stdout": str(workdir / f"{n}.out"),
            "stderr": str(workdir / f"{n}.err"),
            "timeout": CLI_TIMEOUT_S,
        }
        for n, (name, args) in enumerate(cases.items())
    }
    (workdir / "cases.json").write_text(json.dumps(spec))
    res = subprocess.run(
        [sys.executable, "-c", _FORK_RUNNER, str(workdir / "cases.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=CLI_TIMEOUT_S * (len(cases) + 2),
    )
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)
    for name, case in spec.items():
        results[name]["stdout"] = Path(case["stdout"]).read_text(errors="replace")
        results[name]["stderr"] = Path(case["stderr"]).read_text(errors="replace")
    return results


def _upscale(src: Path, out: Path, *extra: str, model: str = "bicubic", scale: str = "2") -> list[str]:
    return ["upscale", str(src), "-o", str(out), "--model", model, "--scale", scale, *extra]


def _tree(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (links not followed) with the sha256 of each file's bytes."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() or path.is_dir():
                out[str(path)] = "link" if path.is_symlink() else "dir"
            else:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _as_printed(text: str) -> str:
    """How Python prints a file name on stderr (undecodable bytes as backslash escapes)."""
    return text.encode("utf-8", "backslashreplace").decode()


def _make_loadable(kind: str, folder: Path, shared_data: Path) -> Path:
    files = _dicom_files(shared_data / DECUBITUS)
    if kind == "NaN and Inf voxels":
        data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
        data[0, 0, 0], data[1, 1, 1], data[2, 3, 4] = np.nan, np.inf, -np.inf
        return _write_nifti(folder / "nan.nii", data)
    if kind == "all-NaN volume":
        return _write_nifti(folder / "allnan.nii.gz", np.full((4, 4, 3), np.nan, np.float32))
    if kind == "constant volume":
        return _write_nifti(folder / "flat.nii.gz", np.full((5, 4, 3), 7, np.int16))
    if kind == "valid NIfTI with a non-UTF8 name":
        return _write_nifti(_non_utf8(folder, b"caf\xe9.nii.gz"), np.ones((4, 4, 3), np.int16))
    if kind in ("two series in one folder", "mixed sizes", "duplicate positions", "missing positions"):
        series = folder / "series"
        series.mkdir()
        for i, f in enumerate(files[:3]):
            ds = pydicom.dcmread(f)
            if kind == "missing positions":
                del ds.ImagePositionPatient
            ds.save_as(series / f.name)
            if kind == "duplicate positions":
                ds.SOPInstanceUID, ds.InstanceNumber = pydicom.uid.generate_uid(), 100 + i
                ds.save_as(series / f"echo2_{i}.dcm")
        ct = pydicom.dcmread(_dicom_files(shared_data / CT_J2K)[0])
        if kind == "mixed sizes":
            ct.SeriesInstanceUID = pydicom.dcmread(files[0]).SeriesInstanceUID
            ct.save_as(series / "stray.dcm")
        if kind == "two series in one folder":
            ct.save_as(series / "other_series.dcm")
        return series
    raise AssertionError(kind)


LOADABLE = [
    "NaN and Inf voxels", "all-NaN volume", "constant volume", "valid NIfTI with a non-UTF8 name",
    "two series in one folder", "mixed sizes", "duplicate positions", "missing positions",
]  # fmt: skip
OLD_REFUSALS = [k for k in BAD_INPUTS if k != "non-existent path"]  # test_cli.py covers that one
OUTPUT_REFUSALS = ["-o is an existing folder named .nii.gz", "-o is an existing file for a DICOM series"]


@pytest.fixture(scope="module")
def cli_corpus(tmp_path_factory, shared_data):
    """Build every case, snapshot it, run the CLI on all of them once; results per case."""
    base = tmp_path_factory.mktemp("cli_corpus")
    cases, meta = {}, {}
    kinds = [("refuse", k) for k in OLD_REFUSALS + list(NEW_REFUSALS)] + [("load", k) for k in LOADABLE]
    for n, (expect, kind) in enumerate(kinds):
        case_dir, out_dir = base / f"in{n:02d}", base / f"out{n:02d}"
        case_dir.mkdir()
        out_dir.mkdir()
        if expect == "load":
            src = _make_loadable(kind, case_dir, shared_data)
        elif kind in NEW_REFUSALS:
            src = _make_refusal(kind, case_dir, shared_data)
        else:
            src = _make_bad_input(kind, case_dir, shared_data)
        out = out_dir / "sr.nii.gz"
        cases[kind] = _upscale(src, out)
        meta[kind] = {"src": src, "out": out, "in_dir": case_dir, "before": _tree(case_dir)}
    for n, kind in enumerate(OUTPUT_REFUSALS):
        case_dir = base / f"outpath{n}"
        src = _write_nifti(case_dir.parent / f"good{n}.nii.gz", np.ones((4, 4, 3), np.int16))
        case_dir.mkdir()
        if kind.endswith(".nii.gz"):
            out = case_dir / "sr.nii.gz"
            out.mkdir()
        else:
            out = case_dir / "series"
            out.write_bytes(b"my notes")
        cases[kind] = _upscale(src, out, "--overwrite")  # so the writer itself must refuse
        meta[kind] = {"src": out, "out": None, "in_dir": case_dir, "before": _tree(case_dir)}
    results = run_cli_batch(cases, base / "runs")
    return {kind: {**meta[kind], **results[kind]} for kind in cases}


# pydicom logs decoder failures (with tracebacks) and warns about early ends of file; the CLI keeps
# third-party loggers and warnings quiet, so these still give exactly one line.
CLI_REFUSALS = OLD_REFUSALS + list(NEW_REFUSALS) + OUTPUT_REFUSALS


@pytest.mark.parametrize("kind", CLI_REFUSALS)
def test_cli_refuses_bad_input_with_one_line(kind, cli_corpus):
    case = cli_corpus[kind]
    assert case["rc"] == 2, case["stderr"]
    lines = case["stderr"].splitlines()
    assert len(lines) == 1, case["stderr"]
    assert lines[0].startswith("medsr: error: ") and "Traceback" not in case["stderr"]
    assert _as_printed(case["src"].name) in lines[0]
    assert case["stdout"] == ""
    if case["out"] is not None:
        assert list(case["out"].parent.iterdir()) == []  # no output, no temporary file
    assert _tree(case["in_dir"]) == case["before"]  # input untouched, nothing written beside it


@pytest.mark.parametrize("kind", LOADABLE)
def test_cli_upscales_awkward_but_valid_input(kind, cli_corpus):
    case = cli_corpus[kind]
    assert case["rc"] == 0, case["stderr"]
    assert "Traceback" not in case["stderr"] and "wrote" in case["stdout"]
    assert "not acquired data" in case["stdout"]
    written = load_volume(case["out"])
    assert np.isfinite(written.data).all()
    if kind == "constant volume":
        assert np.allclose(written.data, 7, atol=1e-3)
    assert sorted(p.name for p in case["out"].parent.iterdir()) == ["sr.json", "sr.nii.gz"]
    assert _tree(case["in_dir"]) == case["before"]


def test_cli_refuses_gzip_bomb_without_big_memory(cli_corpus):
    case = cli_corpus["gzip bomb"]
    if "maxrss_kb" not in case:
        pytest.skip("memory is measured only with the forked runner (Linux)")
    baseline = cli_corpus["empty .nii.gz"]["maxrss_kb"]  # same process, refused at once
    assert case["maxrss_kb"] - baseline < 256 * 1024, (case["maxrss_kb"], baseline)


def test_fork_runner_matches_a_real_subprocess(tmp_path):
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"\x1f\x8b" + bytes(100))
    good = _write_nifti(tmp_path / "good.nii.gz", np.ones((4, 4, 3), np.int16))
    cases = {
        "junk": _upscale(junk, tmp_path / "o1.nii.gz"),
        "bad scale": _upscale(good, tmp_path / "o2.nii.gz", model="edsr", scale="7"),
    }
    forked = run_cli_batch(cases, tmp_path / "runs")
    for name, args in cases.items():
        real = _cli_subprocess(args)
        assert (forked[name]["rc"], forked[name]["stderr"]) == (real["rc"], real["stderr"])
        assert real["rc"] == 2


# --- property: any DICOM header either loads with finite data and geometry or is refused ------

_DS_TEXT = ["1", "0", "-0", "-1", "0.5", "2.5", "1e30", "-1e-30", "NaN", "inf", "-inf", "abc", "", "1\\2"]
_IOP = [
    "1\\0\\0\\0\\1\\0",
    "0\\1\\0\\0\\0\\-1",
    "0\\0\\0\\0\\0\\0",
    "1\\0\\0\\1\\0\\0",
    "1\\0\\0\\0\\1",
    "NaN\\0\\0\\0\\1\\0",
    "1e300\\0\\0\\0\\1\\0",
    "-1\\0\\0\\0\\-1\\0",
    "0.7\\0.7\\0\\-0.7\\0.7\\0",
    "",
]
_PHOTOMETRIC = ["MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL", "PALETTE COLOR", "", "NONSENSE"]


@contextmanager
def _deadline(seconds: int):
    """Fail instead of hanging (POSIX main thread only; elsewhere no limit)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _raw_dicom(path: Path, elements: dict[str, bytes | None]) -> Path:
    """A DICOM file written byte by byte (implicit VR little endian), so any value, even one no
    writer would accept, reaches the reader as a faulty device would have stored it."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta)
    body = b""
    for keyword, value in sorted(elements.items(), key=lambda item: Tag(item[0])):
        if value is None:
            continue
        if len(value) % 2:
            value += b"\0" if keyword.endswith("UID") else b" "
        tag = Tag(keyword)
        body += struct.pack("<HHI", tag.group, tag.element, len(value)) + value
    path.write_bytes(b"\0" * 128 + b"DICM" + fp.getvalue() + body)
    return path


def _us(value: int | None) -> bytes | None:
    return None if value is None else struct.pack("<H", value & 0xFFFF)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.sampled_from([None, 0, 1, 5, 6, 30, 65535]),
    cols=st.sampled_from([None, 0, 1, 5, 6]),
    bits=st.sampled_from([None, 0, 1, 8, 12, 16, 32, 64]),
    representation=st.sampled_from([None, 0, 1, 2, 65535]),
    samples=st.sampled_from([None, 0, 1, 3, 4]),
    photometric=st.sampled_from(_PHOTOMETRIC),
    slope=st.sampled_from(_DS_TEXT),
    intercept=st.sampled_from(_DS_TEXT),
    spacing=st.tuples(st.sampled_from(_DS_TEXT), st.sampled_from(_DS_TEXT)),
    orientation=st.sampled_from(_IOP),
    frames=st.sampled_from([None, "0", "1", "2", "-3", "x", "99999999"]),
    n_files=st.integers(1, 3),
)
def test_any_dicom_header_loads_or_raises_read_error(
    tmp_path_factory,
    rows,
    cols,
    bits,
    representation,
    samples,
    photometric,
    slope,
    intercept,
    spacing,
    orientation,
    frames,
    n_files,
):
    folder = tmp_path_factory.mktemp("dicom_case")
    series = pydicom.uid.generate_uid()
    pixels = np.arange(30, dtype="<u2").tobytes()  # 6x5 pixels of 16 bits, whatever the header claims
    for k in range(n_files):
        _raw_dicom(
            folder / f"{k}.dcm",
            {
                "SOPClassUID": pydicom.uid.MRImageStorage.encode(),
                "SOPInstanceUID": pydicom.uid.generate_uid().encode(),
                "Modality": b"MR",
                "SeriesInstanceUID": series.encode(),
                "InstanceNumber": str(k + 1).encode(),
                "ImagePositionPatient": f"0\\0\\{2.5 * k}".encode(),
                "ImageOrientationPatient": orientation.encode(),
                "SamplesPerPixel": _us(samples),
                "PhotometricInterpretation": photometric.encode(),
                "NumberOfFrames": None if frames is None else frames.encode(),
                "Rows": _us(rows),
                "Columns": _us(cols),
                "PixelSpacing": "\\".join(spacing).encode(),
                "BitsAllocated": _us(bits),
                "BitsStored": _us(bits),
                "HighBit": _us(None if bits is None else bits - 1),
                "PixelRepresentation": _us(representation),
                "RescaleIntercept": intercept.encode(),
                "RescaleSlope": slope.encode(),
                "PixelData": pixels,
            },
        )
    path = folder if n_files > 1 else folder / "0.dcm"
    with _deadline(30):
        try:
            vol = load_volume(path)
        except VolumeReadError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
    assert vol.data.ndim == 3 and vol.data.dtype == np.float32 and vol.data.size > 0
    assert np.isfinite(vol.data).all()
    assert np.isfinite(vol.affine).all() and abs(np.linalg.det(vol.affine[:3, :3])) > 0
