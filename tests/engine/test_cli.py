import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.io import load_volume

REPO = Path(__file__).resolve().parents[2]
ELEVEN = {
    "bicubic",
    "srcnn",
    "srcnn_ct",
    "vdsr",
    "carn",
    "new_carn",
    "edsr",
    "wdsr",
    "srgan",
    "fmen",
    "meta_srgan",
}


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_models_json_lists_all_eleven(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == ELEVEN
    for r in rows:
        assert r["parameters"] >= 0 and r["paper"]


def _extent(vol):
    """Physical corners of the field of view (outer voxel edges) along each axis."""
    lo = vol.affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    hi = vol.affine @ np.array([*(np.array(vol.shape) - 0.5), 1.0])
    return lo[:3], hi[:3]


def _check_upscaled(src, out, axis):
    a, b = load_volume(src), load_volume(out)
    in_plane = [i for i in range(3) if i != axis]
    for i in in_plane:
        assert b.shape[i] == 2 * a.shape[i]
        assert b.spacing[i] == pytest.approx(a.spacing[i] / 2, rel=1e-4)
    assert b.shape[axis] == a.shape[axis]
    for x, y in zip(_extent(a), _extent(b), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-3)


def test_upscale_nifti_bicubic_x2(tmp_path, shared_data):
    src = shared_data / "msk_spine" / "sct_t2s_axial_cspine.nii.gz"
    out = tmp_path / "sr.nii.gz"
    assert main(["upscale", str(src), "-o", str(out), "--model", "bicubic", "--scale", "2"]) == 0
    _check_upscaled(src, out, load_volume(src).acquisition_axis)
    side = json.loads((tmp_path / "sr.json").read_text())
    assert side["model"] == "bicubic" and "not acquired" in side["disclaimer"]


def test_upscale_dicom_series_bicubic_x2_to_dicom(tmp_path, shared_data):
    src = shared_data / "dicom" / "rorden_decubitus_HFS_t1_fl2d_sag"
    out = tmp_path / "sr_dicom"
    assert main(["upscale", str(src), "-o", str(out), "--model", "bicubic", "--scale", "2"]) == 0
    _check_upscaled(src, out, load_volume(src).acquisition_axis)


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            [
                "upscale",
                "/nonexistent/x.nii.gz",
                "-o",
                "{tmp}/o.nii.gz",
                "--model",
                "bicubic",
                "--scale",
                "2",
            ],
            "x.nii.gz",
        ),
        (["upscale", "{junk}", "-o", "{tmp}/o.nii.gz", "--model", "bicubic", "--scale", "2"], "junk.nii.gz"),
        (
            ["upscale", "{good}", "-o", "{tmp}/o.nii.gz", "--model", "nosuchnet", "--scale", "2"],
            "unknown model",
        ),
        (
            ["upscale", "{good}", "-o", "{tmp}/o.nii.gz", "--model", "edsr", "--scale", "7"],
            "does not serve x7",
        ),
        (["upscale", "{good}", "-o", "{good}", "--model", "bicubic", "--scale", "2"], "input"),
        (["upscale", "{good}", "-o", "{junk}", "--model", "bicubic", "--scale", "2", "--no-clobber"],
         "exists"),
        (
            [
                "upscale",
                "{good}",
                "-o",
                "{tmp}/o.nii.gz",
                "--model",
                "bicubic",
                "--scale",
                "2",
                "--weights",
                "{tmp}/w.pth",
            ],
            "w.pth",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, shared_data, args, needle):
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not a volume at all" * 10)
    good = shared_data / "msk_spine" / "sct_t1w_cspine_crop.nii.gz"
    args = [a.format(tmp=tmp_path, junk=junk, good=good) for a in args]
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "o.nii.gz").exists()


def test_evaluate_reports_bicubic_and_models(capsys, shared_data):
    src = shared_data / "msk_spine" / "sct_t1w_cspine_crop.nii.gz"
    assert main(["evaluate", str(src), "--scale", "2,3", "--slices", "2", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in ev["rows"]] == ["bicubic", "bicubic"]
    assert ev["per_volume"][0]["data_range"] > 0
    assert {"psnr", "ssim", "psnr_fg", "ssim_fg", "ms_per_slice", "parameters", "gain_fg"} <= set(
        ev["rows"][0]
    )


def test_evaluate_writes_markdown_table(tmp_path, shared_data):
    src = shared_data / "msk_spine" / "sct_t1w_cspine_crop.nii.gz"
    out = tmp_path / "RESULTS.md"
    assert main(["evaluate", str(src), "--scale", "2", "--slices", "1", "--markdown", str(out)]) == 0
    text = out.read_text()
    assert "| bicubic |" in text and "data range" in text
