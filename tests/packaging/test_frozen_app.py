"""The real thing: build the frozen app, the .deb and the .tar.gz from scratch (no cache reused), run
the frozen ``--self-test`` and CLI, and check what ``dpkg -x`` of the .deb installs.

Slow: about 6-8 minutes on 2 idle cores (PyInstaller ~2.5 min, .deb ~2 min, .tar.gz ~1 min,
self-test ~30 s). The .deb is compressed with xz -1 here (same layout as `make package`'s xz -6,
which is ~15% smaller but takes ~4x longer to compress).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.packaging.test_layout import check_installed_tree

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1500
DEB_LIMIT = 300 * 1024 * 1024

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(BUILD_TIMEOUT_S + 600),  # whichever test runs first builds
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the .deb and .tar.gz are Linux-only"),
]


def clean_env() -> dict[str, str]:
    """The user's environment, minus what would make the frozen app look elsewhere for resources."""
    return {k: v for k, v in os.environ.items() if k not in ("MEDSR_RESOURCES", "PYTHONPATH")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    missing = [t for t in ("dpkg-deb", "dpkg", "readelf", "strip") if shutil.which(t) is None]
    assert not missing, f"building the Linux packages needs {', '.join(missing)} (binutils, dpkg)"
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        pytest.fail("PyInstaller is not installed: `make setup` installs the dev extras, which include it")
    out = tmp_path_factory.mktemp("package")
    dist, work = out / "dist", out / "work"
    cmd = [
        sys.executable,
        str(REPO / "packaging" / "build.py"),
        "--dist",
        str(dist),
        "--work",
        str(work),
        "--no-self-test",
        "--xz-level",
        "1",
    ]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    elapsed = time.perf_counter() - t0
    assert res.returncode == 0, f"build failed ({elapsed:.0f} s):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    print(f"\npackaging build: {elapsed:.0f} s\n" + "\n".join(res.stdout.splitlines()[-6:]))
    debs = list(dist.glob("medsr-viewer_*.deb"))
    tars = list(dist.glob("medsr-viewer-*.tar.gz"))
    assert len(debs) == 1 and len(tars) == 1, sorted(p.name for p in dist.iterdir())
    yield {"app": dist / "medsr-viewer", "deb": debs[0], "tar": tars[0], "root": out / "root"}
    shutil.rmtree(out, ignore_errors=True)  # ~2 GB; do not leave it to pytest's tmp retention


def test_frozen_self_test_passes(built):
    exe = built["app"] / "medsr-viewer"
    res = subprocess.run(
        [str(exe), "--self-test", "--verbose"],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
        cwd=built["app"].parent,
    )
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "self-test (frozen app):" in res.stdout and " 0 failed" in res.stdout
    lines = ["sample volume", "bicubic x2", "dicom jpeg2000", "training process", "main window"]
    if any((REPO / "engine" / "fast" / "native").glob("libmedsr_native.*")):
        lines.append("native kernels")  # built by `make setup`: the bundle carries it and it loads
    for line in lines:
        row = next(r for r in res.stdout.splitlines() if r.startswith(line))
        assert " ok " in row, row


def test_frozen_executable_serves_the_cli_and_training(built):
    exe = str(built["app"] / "medsr-viewer")
    res = subprocess.run(
        [exe, "medsr", "models"], capture_output=True, text=True, timeout=300, env=clean_env()
    )
    assert res.returncode == 0, res.stderr
    assert "meta_srgan" in res.stdout
    for argv in (["train", "--help"], ["--train", "--help"]):
        res = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=300, env=clean_env())
        assert res.returncode == 0 and "medsr train" in res.stdout, res.stdout + res.stderr


def test_frozen_app_carries_weights_sample_and_icons(built):
    resources = built["app"] / "_internal" / "resources"
    bundled = {p.name for p in (resources / "weights").iterdir()}
    in_repo = {p.name for p in (REPO / "resources" / "weights").glob("*.safetensors")}
    assert bundled and bundled <= in_repo  # (training may add files while the build runs)
    assert not any(".ckpt." in name for name in bundled), "training checkpoints are not shipped"
    assert any((resources / "sample").glob("*.nii*"))
    assert (resources / "icons" / "medsr-viewer.svg").is_file()
    for path in resources.rglob("*"):
        assert path.stat().st_mode & 0o004, f"{path} is not readable by other users"
    internal = built["app"] / "_internal"
    for unwanted in ("torch/include", "torch/test", "PySide6/Qt/plugins/platformthemes/libqgtk3.so"):
        assert not (internal / unwanted).exists(), unwanted


def test_deb_installs_the_app_menu_entry_mime_types_and_icons(built):
    deb, root = built["deb"], built["root"]
    assert deb.stat().st_size <= DEB_LIMIT, f".deb is {deb.stat().st_size / 2**20:.0f} MiB"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True)
    check_installed_tree(root)
    control = (root / "DEBIAN" / "control").read_text()
    assert "Package: medsr-viewer\n" in control and "libc6 (>= 2." in control
    installed = root / "opt" / "medsr-viewer"
    assert (installed / "_internal" / "resources" / "sample").is_dir()
    res = subprocess.run(
        [str(installed / "medsr-viewer"), "medsr", "models"],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(),
    )
    assert res.returncode == 0 and "new_carn" in res.stdout, res.stderr


def test_tarball_holds_the_same_folder(built):
    with tarfile.open(built["tar"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
    exe = members["medsr-viewer/medsr-viewer"]
    assert exe.isfile() and exe.mode & 0o777 == 0o755 and exe.uid == 0
    assert all(name == "medsr-viewer" or name.startswith("medsr-viewer/") for name in members)
    files = {p.relative_to(built["app"].parent).as_posix() for p in built["app"].rglob("*")}
    assert files == set(members) - {"medsr-viewer"}
