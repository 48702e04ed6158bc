"""The command line: headless screenshots and one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

from PySide6.QtGui import QImage


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run(
        [sys.executable, "-m", "medsr_viewer", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and "propagateSizeHints" not in ln]


def test_screenshot_renders_after_the_first_sr(tmp_path, cspine, carn_weights):
    out = tmp_path / "shot.png"
    res = _run(
        str(cspine),
        "--model",
        "new_carn",
        "--scale",
        "2",
        "--weights",
        str(carn_weights),
        "--orientation",
        "sagittal",
        "--slice",
        "20",
        "--mode",
        "enhance",
        "--screenshot",
        str(out),
        "--size",
        "1200x800",
    )
    assert res.returncode == 0, res.stderr
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1200, 800)


def test_bad_file_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    res = _run(str(bad), "--screenshot", str(tmp_path / "never.png"))
    assert res.returncode == 2
    lines = _lines(res.stderr)
    assert len(lines) == 1 and "scan.nii.gz" in lines[0]
    assert not (tmp_path / "never.png").exists()


def test_bad_options_exit_2(tmp_path, cspine):
    res = _run(str(cspine), "--model", "no_such_net", "--screenshot", str(tmp_path / "x.png"))
    assert res.returncode == 2 and "unknown model" in res.stderr
    res = _run(str(tmp_path / "missing.nii.gz"), "--screenshot", str(tmp_path / "x.png"))
    assert res.returncode == 2 and len(_lines(res.stderr)) == 1
