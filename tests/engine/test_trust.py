"""Trust: weights never run code, nothing is lost, SR never passes for acquired data, and users are
told when a network works outside its training or when networks disagree.

Adds to ``test_weights.py`` (tampered tensors, pickle suffixes), ``test_volume_io.py`` (a failed
first write leaves nothing; outputs over the input refused) and ``test_cli.py`` (NIfTI sidecar via
bicubic) only what they do not cover.
"""

from __future__ import annotations

import ast
import errno
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.disagreement import disagreement_map
from engine.errors import ModelError, VolumeWriteError, WeightsError
from engine.export import DISCLAIMER, export_volume
from engine.inference import Upscaler, run_to_completion, upscale_volume
from engine.io import load_volume, save_volume
from engine.models import build_model, get_card
from engine.normalization import Normalizer
from engine.out_of_range import check_fit
from engine.volume import Volume
from engine.weights import load_weights, read_metadata, save_weights
from tests.engine.test_hostile_inputs import _tree, _upscale, run_cli_batch

REPO = Path(__file__).resolve().parents[2]
DECUBITUS = "dicom/rorden_decubitus_HFS_t1_fl2d_sag"
SMALL_NIFTI = "msk_spine/sct_t1w_cspine_crop.nii.gz"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".dcm")


def _small_edsr(path: Path, seed: int, scale: int = 2) -> Path:
    """An untrained but randomised EDSR (1 block, width 8): cheap, and unlike bicubic."""
    torch.manual_seed(seed)
    model = build_model("edsr", scale, blocks=1, width=8)
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    card = {"arch": "edsr", "data": ["synthetic"], "scales_trained": [float(scale)]}
    save_weights(model, path, arch="edsr", args={"blocks": 1, "width": 8}, scale=float(scale), card=card)
    return path


@pytest.fixture(scope="module")
def edsr_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    return _small_edsr(folder / "edsr_a.safetensors", 1), _small_edsr(folder / "edsr_b.safetensors", 2)


@pytest.fixture
def dicom_source(tmp_path, shared_data) -> Path:
    folder = tmp_path / "patient_series"
    folder.mkdir()
    for f in _dicom_files(shared_data / DECUBITUS)[10:13]:
        shutil.copy(f, folder / f.name)
    return folder


# --- 2. weights: safetensors only, hash checked, nothing unpickled -------------------------------

_UNPICKLERS = {  # module -> functions that unpickle (numpy.load only with allow_pickle=True)
    "pickle": {"load", "loads", "Unpickler"},
    "_pickle": {"load", "loads", "Unpickler"},
    "cPickle": {"load", "loads", "Unpickler"},
    "dill": {"load", "loads"},
    "cloudpickle": {"load", "loads"},
    "joblib": {"load"},
    "torch": {"load"},
    "pandas": {"read_pickle"},
    "numpy": {"load"},
}


def _unpickling_calls(source: str) -> list[tuple[int, str]]:
    """Calls in ``source`` that unpickle, following ``import x as y`` and ``from x import f``."""
    tree = ast.parse(source)
    modules: dict[str, str] = {}  # local name -> module
    functions: dict[str, str] = {}  # local name -> "module.function"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in _UNPICKLERS:
                    modules[alias.asname or root] = root
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            for alias in node.names:
                if root in _UNPICKLERS and alias.name in _UNPICKLERS[root]:
                    functions[alias.asname or alias.name] = f"{root}.{alias.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, name = node.func, None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in modules:
            module = modules[func.value.id]
            if func.attr in _UNPICKLERS[module]:
                name = f"{module}.{func.attr}"
        elif isinstance(func, ast.Name) and func.id in functions:
            name = functions[func.id]
        if name == "numpy.load":
            allow = next((k.value for k in node.keywords if k.arg == "allow_pickle"), None)
            if allow is None or (isinstance(allow, ast.Constant) and not allow.value):
                continue  # numpy refuses pickled objects by default
        if name:
            found.append((node.lineno, name))
    return found


_GREP_PATTERNS = ("torch.load(", "pickle.load(", "pickle.loads(", "allow_pickle=True")


def test_no_code_path_unpickles_user_files():
    offenders = []
    for package in ("engine", "training", "medsr_viewer"):
        for path in sorted((REPO / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8", errors="replace")
            rel = path.relative_to(REPO)
            try:
                offenders += [f"{rel}:{line}: {name}" for line, name in _unpickling_calls(text)]
            except SyntaxError:  # a file being edited: fall back to a plain grep
                offenders += [f"{rel}: {p}" for p in _GREP_PATTERNS if p in text.replace(" ", "")]
    assert not offenders, "code that can unpickle (run) user files:\n" + "\n".join(offenders)


def test_unpickling_detector_sees_the_usual_spellings():
    source = (
        "import torch\nimport pickle as pk\nimport numpy as np\nfrom joblib import load\n"
        "torch.load(p)\npk.loads(b)\nnp.load(p, allow_pickle=True)\nnp.load(p)\nload(p)\n"
        "np.load(p, allow_pickle=False)\n# torch.load(p) in a comment is not a call\n"
    )
    found = sorted(_unpickling_calls(source))
    assert found == [(5, "torch.load"), (6, "pickle.loads"), (7, "numpy.load"), (9, "joblib.load")]


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["evil.safetensors", "evil.pth", "evil.ckpt.safetensors"])
def test_pickle_payload_is_refused_without_running(tmp_path, name):
    marker = tmp_path / "code_ran"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
        load_weights(path)
    with pytest.raises((WeightsError, ModelError)):
        Upscaler.load("edsr", 2, weights=path, device="cpu")
    assert not marker.exists()


def _rewrite(src: Path, dst: Path, *, tensors=None, **meta_changes) -> Path:
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        original = {k: f.get_tensor(k) for k in f.keys()}
    for key, change in meta_changes.items():
        meta[key] = change(meta[key])
    save_file(tensors(original) if tensors else original, str(dst), metadata=meta)
    return dst


def _card_with(key, value):
    return lambda text: json.dumps({**json.loads(text), key: value})


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("card sha256 edited", "model card names other weights"),
        ("metadata sha256 edited", "sha256 mismatch"),
        ("card is not an object", "damaged metadata"),
        ("file cut short", "not a readable safetensors"),
        ("header length claims 2^63 bytes", "not a readable safetensors"),
        ("folder named .safetensors", "not found"),
    ],
)
def test_damaged_or_lying_weights_are_refused(tmp_path, damage, needle):
    good = _small_edsr(tmp_path / "good.safetensors", 0)
    bad = tmp_path / "bad.safetensors"
    if damage == "card sha256 edited":
        _rewrite(good, bad, card=_card_with("sha256", "0" * 64))
    elif damage == "metadata sha256 edited":
        _rewrite(good, bad, sha256=lambda _: "f" * 64, card=_card_with("sha256", "f" * 64))
    elif damage == "card is not an object":
        _rewrite(good, bad, card=lambda _: "[1, 2]")
    elif damage == "file cut short":
        bad.write_bytes(good.read_bytes()[:-100])
    elif damage == "header length claims 2^63 bytes":
        bad.write_bytes((2**63 - 1).to_bytes(8, "little") + b"{}")
    else:
        bad.mkdir()
    with pytest.raises(WeightsError) as info:
        load_weights(bad)
    assert needle in str(info.value) and "bad.safetensors" in str(info.value)
    assert "\n" not in str(info.value)
    load_weights(good)  # the original still loads


def test_card_sha256_is_the_one_loaded_and_exported(tmp_path):
    path = _small_edsr(tmp_path / "w.safetensors", 0)
    meta = read_metadata(path)
    up = Upscaler.load("edsr", 2, weights=path, device="cpu")
    assert up.weights_sha256 == meta["sha256"] == meta["card"]["sha256"] == up.weights_card["sha256"]


def test_cli_refuses_tampered_weights(tmp_path, shared_data):
    good = _small_edsr(tmp_path / "good.safetensors", 0)
    shifted = {"tensors": lambda t: {k: v + 1 for k, v in t.items()}}
    bad = _rewrite(good, tmp_path / "tampered.safetensors", **shifted)
    out = tmp_path / "out" / "sr.nii.gz"
    res = run_cli_batch(
        {"tampered": _upscale(shared_data / SMALL_NIFTI, out, "--weights", str(bad), model="edsr")},
        tmp_path / "runs",
    )["tampered"]
    assert res["rc"] == 2 and "Traceback" not in res["stderr"]
    expected = f"medsr: error: {bad}: sha256 mismatch: the file was modified or damaged"
    assert res["stderr"].splitlines() == [expected]
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


# --- 3. nothing lost -----------------------------------------------------------------------------


def _volume(value: float, source: Path | None = None) -> Volume:
    data = np.full((6, 5, 4), value, dtype=np.float32)
    data[0, 0, 0] = 0.0
    return Volume(data, np.diag([1.0, 1.0, 2.0, 1.0]), "MR", "test", source)


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("target", ["previous.nii.gz", "previous_series"])
def test_disk_full_half_way_keeps_the_previous_output(tmp_path, monkeypatch, target):
    import engine.io.save as save_module

    out = tmp_path / target
    save_volume(_volume(1.0), out)
    before = _tree(tmp_path)
    real_write_nifti = save_module.write_nifti
    written: list[str] = []

    def nifti_then_full(volume, temp, description, derivation):
        real_write_nifti(volume, temp, description, derivation)
        data = temp.read_bytes()
        temp.write_bytes(data[: len(data) // 2])  # half of it reached the disk
        raise _disk_full()

    real_save_as = pydicom.dataset.Dataset.save_as

    def slice_then_full(self, filename, *args, **kwargs):
        if len(written) == 2:  # 2 of 4 slices written
            raise _disk_full()
        written.append(str(filename))
        return real_save_as(self, filename, *args, **kwargs)

    monkeypatch.setattr(save_module, "write_nifti", nifti_then_full)
    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", slice_then_full)
    with pytest.raises(VolumeWriteError, match="No space left on device") as info:
        save_volume(_volume(2.0), out, overwrite=True)
    assert target in str(info.value)
    assert _tree(tmp_path) == before  # previous output byte for byte, no temporary file or folder
    monkeypatch.undo()
    assert load_volume(out).data.max() == 1.0


def test_export_that_fails_half_way_keeps_image_and_sidecar_consistent(tmp_path, monkeypatch):
    bicubic = Upscaler.load("bicubic", 2, device="cpu")
    out = tmp_path / "sr.nii.gz"
    export_volume(_volume(1.0), out, bicubic, 2.0)
    before = _tree(tmp_path)

    def full(self, *args, **kwargs):
        raise _disk_full()

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(VolumeWriteError):
        export_volume(_volume(2.0), out, bicubic, 2.0, overwrite=True)
    assert _tree(tmp_path) == before


def test_export_never_replaces_an_unrelated_json_without_overwrite(tmp_path):
    notes = tmp_path / "sr.json"
    notes.write_text('{"my": "notes"}')
    with pytest.raises(VolumeWriteError):
        export_volume(_volume(1.0), tmp_path / "sr.nii.gz", Upscaler.load("bicubic", 2, device="cpu"), 2.0)
    assert notes.read_text() == '{"my": "notes"}'


def test_cli_never_writes_over_or_into_its_input(tmp_path, shared_data, dicom_source):
    nifti = tmp_path / "scan.nii.gz"
    shutil.copy(shared_data / SMALL_NIFTI, nifti)
    link = tmp_path / "alias.nii.gz"
    os.symlink(nifti, link)
    cases = {
        "-o the input file": _upscale(nifti, nifti),
        "-o the input file, --overwrite": _upscale(nifti, nifti, "--overwrite"),
        "-o a link to the input, --overwrite": _upscale(nifti, link, "--overwrite"),
        "-o the input DICOM folder": _upscale(dicom_source, dicom_source),
        "-o the input DICOM folder, --overwrite": _upscale(dicom_source, dicom_source, "--overwrite"),
        "-o a series inside the input folder": _upscale(dicom_source, dicom_source / "sr"),
        "-o a NIfTI inside the input folder": _upscale(dicom_source, dicom_source / "sr.nii.gz"),
    }
    before = _tree(tmp_path)
    results = run_cli_batch(cases, tmp_path.parent / f"{tmp_path.name}_runs")
    for name, res in results.items():
        assert res["rc"] == 2, (name, res["stderr"])
        lines = res["stderr"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("medsr: error: "), (name, res["stderr"])
    assert _tree(tmp_path) == before  # every input byte unchanged, nothing created beside it


_AUDITED_RUN = r"""
import json, os, runpy, sys
watched = [os.path.realpath(p) for p in json.loads(sys.argv[1])]
log = []
WRITE = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
def inside(p):
    if not isinstance(p, (str, bytes, os.PathLike)):
        return False
    real = os.path.realpath(os.fsdecode(p))
    return any(real == w or real.startswith(w + os.sep) for w in watched)
def hook(event, args):
    if event == "open" and inside(args[0]):
        mode, flags = args[1], args[2] or 0
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or flags & WRITE:
            log.append([event, os.fsdecode(args[0]), str(mode), flags])
    elif event in ("os.rename", "os.remove", "os.rmdir", "os.truncate", "os.chmod", "os.utime",
                   "os.mkdir", "shutil.rmtree", "os.link", "os.symlink") and any(inside(a) for a in args[:2]):
        log.append([event, *map(str, args[:2])])
sys.addaudithook(hook)
codes = []
for argv in json.loads(sys.argv[2]):
    sys.argv = ["engine.cli", *argv]
    try:
        runpy.run_module("engine.cli", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        codes.append(stop.code)
print(json.dumps({"codes": codes, "writes": log}))
"""


def test_inputs_are_only_ever_opened_for_reading(tmp_path, shared_data, dicom_source):
    nifti = tmp_path / "scan.nii.gz"
    shutil.copy(shared_data / SMALL_NIFTI, nifti)
    out = tmp_path / "out"
    runs = [_upscale(nifti, out / "a.nii.gz"), _upscale(dicom_source, out / "series")]
    before = _tree(dicom_source), _sha(nifti)
    res = subprocess.run(
        [sys.executable, "-c", _AUDITED_RUN, json.dumps([str(nifti), str(dicom_source)]), json.dumps(runs)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.splitlines()[-1])
    assert report["codes"] == [0, 0], res.stderr
    assert report["writes"] == []
    assert (_tree(dicom_source), _sha(nifti)) == before
    assert len(_dicom_files(tmp_path / "out" / "series")) == 3


# --- 4. out-of-range warnings -----------------------------------------------------------------------

_CARD = {"arch": "edsr", "scales_trained": [2.0], "training_spacing_mm": [0.8, 1.2], "modalities": ["MR"]}


def _vol(spacing=(1.0, 1.0, 3.0), modality="MR") -> Volume:
    return Volume(np.zeros((8, 8, 4), np.float32), np.diag([*spacing, 1.0]), modality)


@pytest.mark.parametrize(
    "card, volume, scale, n_warnings, needles",
    [
        (_CARD, _vol((1.6, 1.6, 5.0)), 2, 0, []),  # 0.8 mm pixels out: inside the trained range
        (_CARD, _vol((3.0, 3.0, 5.0)), 4, 1, ["edsr was trained for x2, not x4"]),
        (_CARD, _vol((1.6, 1.6, 5.0)), 4, 2, ["not x4", "would produce 0.4 x 0.4 mm pixels"]),
        (_CARD, _vol((0.4, 0.4, 3.0)), 2, 1, ["would produce 0.2 x 0.2 mm pixels", "the 0.8-1.2 mm"]),
        (_CARD, _vol((6.0, 6.0, 6.0)), 2, 1, ["would produce 3 x 3 mm"]),
        (_CARD, _vol((2.0, 2.0, 3.0), "CT"), 2, 1, ["edsr was trained on MR only, not CT"]),
        (_CARD, _vol((2.0, 2.0, 3.0), "unknown"), 2, 1, ["modality is unknown; edsr was trained on MR"]),
        (_CARD, _vol((0.3, 0.3, 3.0), "CT"), 3, 3, ["not x3", "0.1 x 0.1 mm", "not CT"]),
        ({"arch": "meta_srgan", "scales_trained": [1.1, 2.5, 4.0]}, _vol(), 2.37, 0, []),
        ({"arch": "meta_srgan", "scales_trained": [1.1, 2.5, 4.0]}, _vol(), 6, 1, ["x1.1 to x4, not x6"]),
        ({"modalities": ["MR", "CT"], "training_spacing_mm": [1, 1]}, _vol((2.2, 2.2, 3), "CT"), 2, 0, []),
        ({"training_spacing_mm": [1, 1]}, _vol((4, 4, 3)), 2, 1, ["far from the 1 mm of its training"]),
        ({}, _vol((0.01, 0.01, 9.0), "CT"), 8, 0, []),  # nothing stated: nothing guessed
        ({"training_spacing_mm": "0.8-1.2", "modalities": "MR", "scales_trained": None}, _vol(), 9, 0, []),
    ],
)
def test_check_fit(card, volume, scale, n_warnings, needles):
    warnings = check_fit(card, volume, scale)
    assert len(warnings) == n_warnings, warnings
    assert all("\n" not in w for w in warnings)
    for needle in needles:
        assert needle in " | ".join(warnings)


def test_check_fit_uses_the_upscaled_plane_and_registry_cards():
    vol = _vol((1.0, 1.0, 0.2))  # thin-slice axis 2 is not the plane upscaled when plane_axis=0
    card = {"training_spacing_mm": [0.4, 0.6]}
    assert check_fit(card, vol, 2, plane_axis=0) != []  # 1.0/2 and 0.2/2 = 0.1 mm
    assert check_fit(card, vol, 2, plane_axis=2) == []  # 0.5 x 0.5 mm
    assert check_fit(get_card("edsr"), vol, 4) == []
    assert "x2 to x4, not x5" in " ".join(check_fit(get_card("edsr"), vol, 5))
    assert "x1 to x8" in " ".join(check_fit(get_card("bicubic"), vol, 9))


def test_check_fit_reads_a_real_weights_card(tmp_path):
    up = Upscaler.load("edsr", 2, weights=_small_edsr(tmp_path / "w.safetensors", 0), device="cpu")
    assert check_fit(up.weights_card, _vol(), 2) == []
    assert check_fit(up.weights_card, _vol(), 3) == [
        "edsr was trained for x2, not x3: its output at this scale is untested"
    ]


# --- 5. disagreement map --------------------------------------------------------------------------


def _slice(seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[0:24, 0:20]
    rng = np.random.default_rng(seed)
    return (200 + 100 * np.sin(yy / 3.0) * np.cos(xx / 4.0) + rng.normal(0, 5, (24, 20))).astype(np.float32)


def test_disagreement_map_is_the_spread_of_the_networks(edsr_pair, tmp_path):
    ups = [Upscaler.load("bicubic", 2, device="cpu")] + [
        Upscaler.load("edsr", 2, weights=w, device="cpu") for w in edsr_pair
    ]
    x3 = _small_edsr(tmp_path / "x3.safetensors", 3, scale=3)
    ups.append(Upscaler.load("edsr", 3, weights=x3, device="cpu"))
    image = _slice()
    norm = Normalizer.fit(image)
    spread, outputs = disagreement_map(ups, image, 2, norm)
    assert list(outputs) == [u.label for u in ups[:3]]  # the x3 network is skipped
    assert spread.shape == (48, 40) and spread.dtype == np.float32
    assert np.isfinite(spread).all() and spread.min() >= 0 and spread.max() > 0
    for up, out in zip(ups[:3], outputs.values(), strict=True):
        np.testing.assert_allclose(out, up.upscale_slice(image, 2, norm), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(spread, np.std(np.stack(list(outputs.values())), axis=0), rtol=1e-4, atol=1e-4)


def test_disagreement_is_in_the_image_units(edsr_pair):
    ups = [Upscaler.load("edsr", 2, weights=w, device="cpu") for w in edsr_pair]
    image = _slice()
    spread, _ = disagreement_map(ups, image, 2, Normalizer.fit(image))
    spread_hu, _ = disagreement_map(ups, image * 10 - 1000, 2, Normalizer.fit(image * 10 - 1000))
    np.testing.assert_allclose(spread_hu, spread * 10, rtol=1e-3, atol=1e-2)


def test_identical_networks_agree_and_too_few_are_refused(edsr_pair):
    same = [Upscaler.load("edsr", 2, weights=edsr_pair[0], device="cpu") for _ in range(2)]
    spread, outputs = disagreement_map(same, _slice(), 2)
    assert np.allclose(spread, 0, atol=1e-4) and len(outputs) == 2 and len(set(outputs)) == 2
    with pytest.raises(ModelError, match="at least two networks"):
        disagreement_map(same[:1] + [Upscaler.load("bicubic", 2, device="cpu")], _slice(), 3)
    with pytest.raises(ModelError, match="2D slice"):
        disagreement_map(same, np.zeros((2, 3, 4)), 2)


# --- 6. SR never passes for acquired data --------------------------------------------------------


def test_nifti_export_names_model_scale_hash_and_disclaimer(edsr_pair, tmp_path, shared_data):
    up = Upscaler.load("edsr", 2, weights=edsr_pair[0], device="cpu")
    source = load_volume(shared_data / SMALL_NIFTI)
    sr = run_to_completion(upscale_volume(source, up, 2.0))
    assert "not acquired data" in sr.metadata["sr"]["note"]
    assert sr.metadata["sr"]["weights_sha256"] == read_metadata(edsr_pair[0])["sha256"]
    out = tmp_path / "sr.nii.gz"
    export_volume(sr, out, up, 2.0)
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["model"] == "edsr" and sidecar["scale"] == 2.0
    assert sidecar["weights_sha256"] == up.weights_sha256 == read_metadata(edsr_pair[0])["sha256"]
    assert sidecar["weights_file"] == edsr_pair[0].name and sidecar["disclaimer"] == DISCLAIMER
    assert "not acquired data" in DISCLAIMER and "not for primary diagnosis" in DISCLAIMER
    header = nib.load(out).header
    assert header["descrip"].tobytes().rstrip(b"\0").decode() == "SR edsr x2"
    comments = load_volume(out).metadata["nifti_comments"]
    assert any("edsr x2" in c and up.weights_sha256[:16] in c and "not acquired" in c for c in comments)


def test_dicom_export_is_a_derived_series_with_new_uids(edsr_pair, tmp_path, dicom_source):
    up = Upscaler.load("edsr", 2, weights=edsr_pair[0], device="cpu")
    source = load_volume(dicom_source)
    sr = run_to_completion(upscale_volume(source, up, 2.0))
    out = tmp_path / "sr_series"
    export_volume(sr, out, up, 2.0)
    originals = [pydicom.dcmread(f, stop_before_pixels=True) for f in _dicom_files(dicom_source)]
    written = [pydicom.dcmread(f, stop_before_pixels=True) for f in _dicom_files(out)]
    assert len(written) == 3 and not (tmp_path / "sr_series.json").exists()
    for ds in written:
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        text = ds.DerivationDescription
        assert "edsr" in text and "x2" in text and up.weights_sha256[:16] in text and "not acquired" in text
        assert ds.SeriesDescription.startswith("SR edsr x2")
        assert ds.StudyInstanceUID == originals[0].StudyInstanceUID  # same patient and study
    assert len({ds.SeriesInstanceUID for ds in written}) == 1
    assert written[0].SeriesInstanceUID not in {ds.SeriesInstanceUID for ds in originals}
    new_sops = {ds.SOPInstanceUID for ds in written}
    assert len(new_sops) == 3 and not new_sops & {ds.SOPInstanceUID for ds in originals}
    assert (written[0].Rows, written[0].Columns) == (512, 512)
