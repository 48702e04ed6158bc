"""Build the frozen app, then (Linux) the .deb and the portable .tar.gz: what `make package` runs.

    .venv/bin/python packaging/build.py                 # dist/medsr-viewer/, dist/*.deb, dist/*.tar.gz
    .venv/bin/python packaging/build.py --dist /tmp/x   # somewhere else (the packaging test does this)

Every build starts clean (PyInstaller's --clean and a fresh work folder); nothing is reused. After
PyInstaller, torch's libraries are stripped (Linux), permissions are normalised (0755 folders and
executables, 0644 the rest), the frozen ``--self-test`` runs (skip with --no-self-test), and sizes
and times are printed. See docs/PACKAGING.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
LINUX = PACKAGING / "linux"
ICONS = ROOT / "resources" / "icons"
APP = "medsr-viewer"
SPEC = PACKAGING / f"{APP}.spec"
INSTALL_DIR = f"/opt/{APP}"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)
SELF_TEST_TIMEOUT_S = 600

# Debian package of each system library the bundle links to but does not carry. A library missing
# here stops the build: add it (`dpkg -S LIBRARY` on a Debian system says which package has it).
DEBIAN_PACKAGE_OF = {
    **dict.fromkeys(
        [
            "libc.so.6",
            "libm.so.6",
            "libdl.so.2",
            "libpthread.so.0",
            "librt.so.1",
            "libutil.so.1",
            "libresolv.so.2",
            "ld-linux-x86-64.so.2",
            "ld-linux-aarch64.so.1",
        ],
        "libc6",
    ),
    **dict.fromkeys(["libglib-2.0.so.0", "libgthread-2.0.so.0"], "libglib2.0-0"),
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0",
    "libdrm.so.2": "libdrm2",
    "libgbm.so.1": "libgbm1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libz.so.1": "zlib1g",
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
}
# Needed at run time though nothing links to them: fontconfig's configuration and a font.
ALWAYS_DEPENDS = ["libfontconfig1"]


def log(message: str) -> None:
    print(f"[package] {message}", flush=True)


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def tree_size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def normalise_permissions(folder: Path) -> None:
    """0755 folders and executables, 0644 everything else: files written 0600 (weights saved through
    a temporary file) would otherwise be unreadable to users once installed by root."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)


def run_pyinstaller(dist: Path, work: Path) -> Path:
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(dist / APP, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        str(SPEC),
    ]
    log(" ".join(cmd))
    subprocess.run(cmd, check=True, cwd=ROOT)
    app = dist / APP
    for needed in ("resources/sample", "resources/icons/medsr-viewer.svg", "resources/weights"):
        if not (app / "_internal" / needed).exists():
            raise SystemExit(f"build: {needed} is missing from the frozen app")
    if sys.platform.startswith("linux"):
        strip_torch(app)
    normalise_permissions(app)
    return app


def has_symbols(path: Path) -> bool:
    out = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True).stdout
    return " .symtab " in out


def strip_torch(app: Path) -> int:
    """Linux: strip the symbol tables of torch's own libraries (built by cmake, not patchelf-ed, so
    safe; other wheels' patchelf-ed libraries break when stripped). Returns the bytes saved."""
    saved = 0
    for lib in sorted((app / "_internal" / "torch" / "lib").glob("*.so*")):
        if lib.is_symlink() or not has_symbols(lib):
            continue
        before = lib.stat().st_size
        subprocess.run(["strip", "--strip-unneeded", str(lib)], check=True)
        saved += before - lib.stat().st_size
    log(f"stripped torch/lib: {human(saved)} saved")
    return saved


def run_self_test(app: Path) -> None:
    exe = app / (APP + (".exe" if sys.platform == "win32" else ""))
    log(f"{exe} --self-test")
    res = subprocess.run([str(exe), "--self-test"], timeout=SELF_TEST_TIMEOUT_S)
    if res.returncode != 0:
        raise SystemExit(f"build: the frozen self-test failed (exit {res.returncode})")


# --- Linux: dependencies ------------------------------------------------------------------------
def elf_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p)]


def system_dependencies(app: Path) -> tuple[list[str], str]:
    """(Debian packages for the libraries the bundle links to but lacks, newest GLIBC_x.y required)."""
    files = elf_files(app)
    bundled = {p.name for p in app.rglob("*")}
    missing: set[str] = set()
    glibc = (2, 17)
    for path in files:
        out = subprocess.run(["readelf", "-d", "-V", "-W", str(path)], capture_output=True, text=True).stdout
        missing |= {n for n in re.findall(r"\(NEEDED\).*\[(.+?)\]", out) if n not in bundled}
        for major, minor in re.findall(r"Name: GLIBC_(\d+)\.(\d+)", out):
            glibc = max(glibc, (int(major), int(minor)))
    unknown = sorted(n for n in missing if n not in DEBIAN_PACKAGE_OF)
    if unknown:
        raise SystemExit(
            f"build: no Debian package known for {', '.join(unknown)}; add it to DEBIAN_PACKAGE_OF"
        )
    packages = sorted({DEBIAN_PACKAGE_OF[n] for n in missing} | set(ALWAYS_DEPENDS))
    return packages, f"{glibc[0]}.{glibc[1]}"


def depends_field(app: Path) -> str:
    packages, glibc = system_dependencies(app)
    return ", ".join(f"{p} (>= {glibc})" if p == "libc6" else p for p in packages)


# --- Linux: .deb and .tar.gz --------------------------------------------------------------------
def copy_tree(src: Path, dst: Path) -> None:
    """Hard links where possible (fast, no extra space), copies across file systems."""

    def link_or_copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy)


def install_file(src: Path | str, dst: Path, mode: int = 0o644, text: str | None = None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if text is not None:
        dst.write_text(text, encoding="utf-8")
    else:
        shutil.copyfile(src, dst)
    dst.chmod(mode)


def stage_deb(app: Path, stage: Path, ver: str, arch: str) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    copy_tree(app, stage / INSTALL_DIR.lstrip("/"))
    launcher = (LINUX / "launcher.sh").read_text()
    for name, args in ((APP, ""), ("medsr", "medsr ")):  # medsr: the CLI, served by the same executable
        script = launcher.replace("@NAME@", name).replace("@ARGS@", args)
        install_file("", stage / "usr/bin" / name, 0o755, script)
    install_file(LINUX / f"{APP}.desktop", stage / "usr/share/applications" / f"{APP}.desktop")
    install_file(LINUX / f"{APP}-mime.xml", stage / "usr/share/mime/packages" / f"{APP}.xml")
    for size in ICON_SIZES:
        icon_dir = stage / f"usr/share/icons/hicolor/{size}x{size}/apps"
        install_file(ICONS / f"{APP}-{size}.png", icon_dir / f"{APP}.png")
    install_file(ICONS / f"{APP}.svg", stage / f"usr/share/icons/hicolor/scalable/apps/{APP}.svg")
    install_file(LINUX / "copyright", stage / "usr/share/doc" / APP / "copyright")
    for folder in [stage, *stage.rglob("*")]:
        if folder.is_dir() and not folder.is_symlink():
            folder.chmod(0o755)

    installed_kib = (tree_size(stage) + 1023) // 1024
    control = (LINUX / "control.in").read_text()
    for key, value in {
        "@VERSION@": ver,
        "@ARCH@": arch,
        "@INSTALLED_SIZE@": str(installed_kib),
        "@DEPENDS@": depends_field(app),
    }.items():
        control = control.replace(key, value)
    maintainer = os.environ.get("MEDSR_DEB_MAINTAINER")
    if maintainer:
        control = re.sub(r"^Maintainer: .*$", f"Maintainer: {maintainer}", control, flags=re.M)
    install_file("", stage / "DEBIAN/control", 0o644, control)
    install_file(LINUX / "postinst", stage / "DEBIAN/postinst", 0o755)
    install_file(LINUX / "postrm", stage / "DEBIAN/postrm", 0o755)
    (stage / "DEBIAN").chmod(0o755)


def build_deb(app: Path, dist: Path, work: Path, ver: str, xz_level: int) -> Path:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout
    arch = arch.strip()
    stage = work / "deb-root"
    stage_deb(app, stage, ver, arch)
    deb = dist / f"{APP}_{ver}_{arch}.deb"
    deb.unlink(missing_ok=True)
    cmd = ["dpkg-deb", "--root-owner-group", "-Zxz", f"-z{xz_level}", "--build", str(stage), str(deb)]
    log(" ".join(cmd))
    subprocess.run(cmd, check=True)
    shutil.rmtree(stage, ignore_errors=True)
    return deb


def build_tarball(app: Path, dist: Path, ver: str, gzip_level: int) -> Path:
    machine = os.uname().machine
    out = dist / f"{APP}-{ver}-linux-{machine}.tar.gz"
    log(f"writing {out.name}")

    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(out, "w:gz", compresslevel=gzip_level) as tar:
        tar.add(app, arcname=APP, filter=as_root)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: build/package)")
    p.add_argument("--no-self-test", action="store_true", help="do not run the frozen --self-test")
    p.add_argument("--no-installers", action="store_true", help="only the frozen folder (no .deb, .tar.gz)")
    p.add_argument("--xz-level", type=int, default=6, help="xz level of the .deb (0-9, default 6)")
    p.add_argument("--gzip-level", type=int, default=6, help="gzip level of the .tar.gz (1-9, default 6)")
    args = p.parse_args(argv)
    dist = args.dist.resolve()
    work = (args.work or ROOT / "build" / "package").resolve()
    dist.mkdir(parents=True, exist_ok=True)
    ver = version()
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    app = run_pyinstaller(dist, work / "pyinstaller")
    times["pyinstaller"] = time.perf_counter() - t0
    outputs = [app]
    if not args.no_self_test:
        t = time.perf_counter()
        run_self_test(app)
        times["self-test"] = time.perf_counter() - t
    if sys.platform.startswith("linux") and not args.no_installers:
        t = time.perf_counter()
        outputs.append(build_deb(app, dist, work, ver, args.xz_level))
        times["deb"] = time.perf_counter() - t
        t = time.perf_counter()
        outputs.append(build_tarball(app, dist, ver, args.gzip_level))
        times["tar.gz"] = time.perf_counter() - t
    elif not sys.platform.startswith("linux"):
        log("not Linux: the frozen folder is built; see docs/PACKAGING.md for this platform's installer")
    times["total"] = time.perf_counter() - t0

    log("done:")
    for out in outputs:
        size = tree_size(out) if out.is_dir() else out.stat().st_size
        log(f"  {human(size):>10s}  {out}")
    log("  " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
