"""Packaging without PyInstaller: entry dispatch, the launch command, desktop entry, MIME types, icons,
and the .deb layout built around a stand-in app folder (seconds; the real build is test_frozen_app)."""

from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from engine import launch

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
LINUX = PACKAGING / "linux"
ICONS = REPO / "resources" / "icons"
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def entry():
    return load_module("medsr_frozen_entry", PACKAGING / "entry.py")


@pytest.fixture(scope="module")
def build():
    return load_module("medsr_package_build", PACKAGING / "build.py")


def desktop_entry() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(LINUX / "medsr-viewer.desktop", encoding="utf-8")
    return dict(parser["Desktop Entry"])


def mime_globs() -> dict[str, list[str]]:
    root = ET.parse(LINUX / "medsr-viewer-mime.xml").getroot()
    types = root.iter(f"{MIME_NS}mime-type")
    return {t.get("type"): [g.get("pattern") for g in t.iter(f"{MIME_NS}glob")] for t in types}


@pytest.mark.parametrize(
    ("argv", "what"),
    [
        ([], "gui"),
        (["scan.nii.gz"], "gui"),
        (["scan.nii.gz", "--model", "edsr", "--scale", "2"], "gui"),
        (["--self-test"], "self-test"),
        (["--self-test", "--only", "gui"], "self-test"),
        (["train", "--arch", "srcnn"], "train"),
        (["--train", "--arch", "srcnn"], "train"),
        (["medsr", "models"], "medsr"),
    ],
)
def test_entry_dispatches_on_the_first_argument(entry, argv, what):
    assert entry.dispatch(argv)[0] == what


def test_entry_passes_argv_through(entry, monkeypatch):
    seen = {}
    monkeypatch.setattr("engine.cli.main", lambda args: seen.setdefault("cli", args) and 0)
    monkeypatch.setattr("medsr_viewer.app.run", lambda args: seen.setdefault("gui", args) and 0)
    entry.dispatch(["--train", "--arch", "srcnn", "--steps", "1"])[1]()
    assert seen.pop("cli") == ["train", "--arch", "srcnn", "--steps", "1"]
    entry.dispatch(["medsr", "upscale", "a.nii", "-o", "b.nii"])[1]()
    assert seen.pop("cli") == ["upscale", "a.nii", "-o", "b.nii"]
    entry.dispatch(["/data/head ct.nii.gz", "--scale", "2"])[1]()
    assert seen.pop("gui") == ["/data/head ct.nii.gz", "--scale", "2"]


def test_medsr_command_from_source_and_frozen(monkeypatch):
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert launch.medsr_command() == [sys.executable, "-m", "engine.cli"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/medsr-viewer/medsr-viewer")
    assert launch.medsr_command() == ["/opt/medsr-viewer/medsr-viewer", "medsr"]
    assert launch.training_command("--arch", "edsr") == [
        "/opt/medsr-viewer/medsr-viewer",
        "medsr",
        "train",
        "--arch",
        "edsr",
    ]


def test_medsr_command_runs_the_cli_from_source():
    res = subprocess.run([*launch.medsr_command(), "models"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "new_carn" in res.stdout


def test_desktop_entry_opens_files_with_the_app_and_its_icon():
    d = desktop_entry()
    assert d["Type"] == "Application"
    assert d["Exec"].split() == ["medsr-viewer", "%f"]
    assert d["Icon"] == "medsr-viewer"
    assert d["Terminal"] == "false"
    types = [t for t in d["MimeType"].split(";") if t]
    assert set(types) == {"application/x-nifti", "application/x-nifti-gzip", "application/dicom"}
    assert set(types) <= set(mime_globs())
    validate = shutil.which("desktop-file-validate")
    if validate:
        res = subprocess.run([validate, str(LINUX / "medsr-viewer.desktop")], capture_output=True, text=True)
        assert res.returncode == 0 and "error" not in res.stdout, res.stdout


def test_mime_types_cover_nii_nii_gz_and_dcm(tmp_path):
    globs = mime_globs()
    assert globs["application/x-nifti"] == ["*.nii"]
    assert globs["application/x-nifti-gzip"] == ["*.nii.gz"]
    assert globs["application/dicom"] == ["*.dcm"]
    tool = shutil.which("update-mime-database")
    if tool:  # the XML compiles, and *.nii.gz wins over *.gz by being the longer glob
        (tmp_path / "packages").mkdir()
        shutil.copy(LINUX / "medsr-viewer-mime.xml", tmp_path / "packages" / "medsr-viewer.xml")
        subprocess.run([tool, str(tmp_path)], check=True, capture_output=True)
        compiled = (tmp_path / "globs2").read_text()
        assert "application/x-nifti-gzip:*.nii.gz" in compiled
        assert "application/dicom:*.dcm" in compiled


def test_icons_exist_at_every_size():
    for size in (16, 24, 32, 48, 64, 128, 256):
        with Image.open(ICONS / f"medsr-viewer-{size}.png") as im:
            assert im.size == (size, size) and im.mode == "RGBA"
    svg = ET.parse(ICONS / "medsr-viewer.svg").getroot()
    assert svg.get("viewBox") == "0 0 256 256"
    assert (ICONS / "medsr-viewer.ico").stat().st_size > 0
    assert (ICONS / "medsr-viewer.icns").stat().st_size > 0


def test_permissions_are_normalised_for_all_users(build, tmp_path):
    app = tmp_path / "app"
    (app / "_internal" / "resources" / "weights").mkdir(parents=True)
    weights = app / "_internal" / "resources" / "weights" / "edsr_x2.safetensors"
    weights.write_bytes(b"w")
    weights.chmod(0o600)  # how the trainer's atomic write leaves it
    exe = app / "medsr-viewer"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o700)
    build.normalise_permissions(app)
    assert weights.stat().st_mode & 0o777 == 0o644
    assert exe.stat().st_mode & 0o777 == 0o755
    assert (app / "_internal").stat().st_mode & 0o777 == 0o755


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the .deb is built on Linux only")
def test_deb_layout_around_a_stand_in_app(build, tmp_path):
    missing = [t for t in ("dpkg-deb", "dpkg") if shutil.which(t) is None]
    assert not missing, f"building the .deb needs {', '.join(missing)}"
    app = tmp_path / "dist" / "medsr-viewer"
    (app / "_internal").mkdir(parents=True)
    (app / "medsr-viewer").write_text("#!/bin/sh\necho stand-in\n")
    (app / "medsr-viewer").chmod(0o755)
    deb = build.build_deb(app, tmp_path / "dist", tmp_path / "work", "0.0.1", xz_level=0)
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True)
    check_installed_tree(root)
    control = (root / "DEBIAN" / "control").read_text()
    assert "Package: medsr-viewer\n" in control and "Version: 0.0.1\n" in control
    assert "Depends: libfontconfig1" in control


def check_installed_tree(root: Path) -> None:
    """What the .deb installs, checked in a `dpkg -x` (+ `dpkg-deb -e`) tree (also used by the slow test)."""
    exe = root / "opt/medsr-viewer/medsr-viewer"
    assert exe.is_file() and exe.stat().st_mode & 0o111
    for name, args in (("medsr-viewer", ""), ("medsr", "medsr ")):
        launcher = root / "usr/bin" / name
        assert launcher.stat().st_mode & 0o777 == 0o755
        assert f'exec /opt/medsr-viewer/medsr-viewer {args}"$@"' in launcher.read_text()
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str
    desktop.read(root / "usr/share/applications/medsr-viewer.desktop")
    d = desktop["Desktop Entry"]
    assert d["Exec"] == "medsr-viewer %f" and d["Icon"] == "medsr-viewer"
    assert d["MimeType"] == "application/x-nifti;application/x-nifti-gzip;application/dicom;"
    mime = root / "usr/share/mime/packages/medsr-viewer.xml"
    assert 'pattern="*.nii.gz"' in mime.read_text()
    for size in (16, 24, 32, 48, 64, 128, 256):
        png = root / f"usr/share/icons/hicolor/{size}x{size}/apps/medsr-viewer.png"
        with Image.open(png) as im:
            assert im.size == (size, size)
    assert (root / "usr/share/icons/hicolor/scalable/apps/medsr-viewer.svg").is_file()
    assert (root / "usr/share/doc/medsr-viewer/copyright").is_file()
    for script in ("postinst", "postrm"):
        text = (root / "DEBIAN" / script).read_text()
        assert (root / "DEBIAN" / script).stat().st_mode & 0o111
        assert "update-mime-database" in text and "update-desktop-database" in text
