"""``medsr-viewer --self-test``: check an installed app (frozen or from source) without a display.

Loads the bundled sample, runs every shipped network on a central crop of one slice (finite output,
expected shape), checks that the native kernels load and agree with torch, checks the DICOM JPEG 2000
decoder, starts one training step in a new process the
way the viewer does (``engine.launch``), shows the main window offscreen, prints a table and exits
0, or 1 if anything failed. Networks without weights are reported as "not trained" and do not fail.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

T_IMPORT = time.perf_counter()

OK, FAIL, NOT_TRAINED, SKIPPED = "ok", "FAIL", "not trained", "skipped"
STEPS = ("sample", "networks", "native", "dicom", "train", "gui")
META_SCALES = (1.5, 2.5, 4.0)
CROP = 96
TRAIN_TIMEOUT_S = 300


@dataclass
class Check:
    """One line of the summary table."""

    name: str
    status: str
    detail: str = ""
    ms: float = 0.0
    trace: str = ""  # the traceback of a failure (printed with --verbose)


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc), so start-up includes the frozen bootloader."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(stat[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _timed(name: str, fn: Callable[[], tuple[str, str]]) -> Check:
    t0 = time.perf_counter()
    trace = ""
    try:
        status, detail = fn()
    except Exception as exc:  # a failing check is a result to report, not a crash
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        status, detail = FAIL, f"{type(exc).__name__}: {first_line}"
        trace = traceback.format_exc()
    return Check(name, status, detail, (time.perf_counter() - t0) * 1000.0, trace)


def central_crop(volume: Any, crop: int) -> Any:
    """The central acquisition-plane slice of ``volume``, cropped to at most ``crop`` x ``crop``."""
    import numpy as np

    axis = volume.acquisition_axis
    image = np.take(volume.data, volume.shape[axis] // 2, axis=axis)
    h, w = image.shape
    ch, cw = min(crop, h), min(crop, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(image[y0 : y0 + ch, x0 : x0 + cw], dtype=np.float32)


def network_jobs(meta_scales: tuple[float, ...]) -> list[tuple[str, float, bool]]:
    """(name, scale, has weights) for every registered network and scale it ships (or should)."""
    from engine.catalog import model_catalog

    jobs = []
    for row in model_catalog():
        if not row["needs_weights"]:
            jobs.append((row["name"], float(row["scales"][0] if row["scales"] else 2.0), True))
        elif row["scale_range"]:  # arbitrary scale: one weights file, several scales
            lo, hi = row["scale_range"]
            has = row["weights"].get("any") is not None
            jobs += [(row["name"], s, has) for s in meta_scales if lo <= s <= hi]
        else:
            weights = row["weights"]
            jobs += [(row["name"], float(s), weights.get(f"x{s:g}") is not None) for s in row["scales"]]
    return jobs


def run_network(name: str, scale: float, image: Any) -> tuple[str, str]:
    import numpy as np

    from engine.inference import Upscaler
    from engine.models.registry import output_size

    upscaler = Upscaler.load(name, scale, device="cpu")
    out = upscaler.upscale_slice(image, scale)
    expected = output_size(*image.shape, scale)
    if tuple(out.shape) != expected:
        return FAIL, f"shape {tuple(out.shape)}, expected {expected}"
    if not np.isfinite(out).all():
        return FAIL, f"{int((~np.isfinite(out)).sum())} non-finite pixels"
    weights = upscaler.weights_sha256[:12] or "no weights needed"
    return OK, f"{image.shape[0]}x{image.shape[1]} -> {expected[0]}x{expected[1]}, {weights}"


def check_native(image: Any) -> tuple[str, str]:
    """The native kernels load here (frozen: from the bundle) and agree with torch on the sample; where
    they were not built the torch path runs, which is reported, not failed."""
    import numpy as np
    import torch

    from engine.fast import native
    from engine.models.blocks import bicubic_upsample_box

    if not native.available():
        return SKIPPED, f"{native.LIBRARY.name} not built or not usable here: the torch path runs"
    size = (image.shape[0] * 3, image.shape[1] * 3)
    box = (size[0] // 4, size[1] // 4, size[0], size[1])
    got = native.bicubic_box(image, size, box)
    want = bicubic_upsample_box(torch.from_numpy(image).double()[None, None], size, box)[0, 0].numpy()
    span = max(float(image.max() - image.min()), 1e-6)
    err = float(np.abs(got - want).max()) / span
    if not err <= 1e-4:
        return FAIL, f"native bicubic differs from torch by {err:.1e} of the range"
    return OK, f"{native.LIBRARY.name} in use; bicubic box == torch within {err:.0e} of the range"


def check_dicom_codecs() -> tuple[str, str]:
    """JPEG 2000 DICOM decodes through pylibjpeg-openjpeg (found via package metadata when frozen)."""
    from pydicom.pixels.decoders.base import JPEG2000Decoder, JPEG2000LosslessDecoder

    plugins = set(JPEG2000Decoder.available_plugins) & set(JPEG2000LosslessDecoder.available_plugins)
    if "pylibjpeg" not in plugins:
        return FAIL, f"pylibjpeg JPEG 2000 decoder missing (available: {sorted(plugins) or 'none'})"
    return OK, "JPEG 2000 via " + ", ".join(sorted(plugins))


def check_training(sample: Path, folder: Path) -> tuple[str, str]:
    """One training step in a new process, started with the command the viewer uses."""
    from engine.inference import Upscaler
    from engine.launch import training_command

    out = folder / "self_test_srcnn_x2.safetensors"
    cmd = training_command(
        "--arch",
        "srcnn",
        "--scale",
        "2",
        "--data",
        str(sample),
        "--out",
        str(out),
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--patch",
        "32",
        "--val-every",
        "1000000",
        "--checkpoint-minutes",
        "1000",
        "--progress",
        "none",
        "--threads",
        "1",
    )
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S, env=env)
    if res.returncode != 0:
        last = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()[-1]
        return FAIL, f"exit {res.returncode}: {last[:160]}"
    up = Upscaler.load("srcnn", 2.0, weights=out, device="cpu")
    launcher = "frozen app" if getattr(sys, "frozen", False) else "python -m engine.cli"
    return OK, f"1 step via {launcher}, weights {up.weights_sha256[:12]} load back"


def check_window(show_ms: int, startup: bool = False) -> tuple[str, str]:
    """Create the QApplication and show the main window offscreen for ``show_ms``.

    With ``startup`` (``--only gui``) the detail is the start-up time: seconds from process launch
    (the frozen bootloader included) until the window is shown, and the CPU seconds spent by then.
    """
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from medsr_viewer.main_window import MainWindow
    from medsr_viewer.settings import Settings

    app = QApplication.instance() or QApplication([sys.argv[0]])
    win = MainWindow(Settings.throwaway(), dialogs=False)
    shown: dict[str, Any] = {}

    def on_shown() -> None:
        shown["visible"] = win.isVisible() and not win.grab().isNull()
        shown["age_s"] = process_age_s()
        shown["cpu_s"] = time.process_time()
        shown["since_import_s"] = time.perf_counter() - T_IMPORT
        QTimer.singleShot(show_ms, app.quit)

    win.resize(1280, 800)
    win.show()
    QTimer.singleShot(0, on_shown)
    QTimer.singleShot(show_ms + 30_000, app.quit)  # never hang the self-test
    app.exec()
    win.close()
    if not shown.get("visible"):
        return FAIL, "main window did not become visible"
    if not startup:
        return OK, f"main window shown ({platform_name()} platform) for {show_ms} ms"
    age = shown["age_s"]
    when = f"{age:.2f} s after launch" if age is not None else f"{shown['since_import_s']:.2f} s after import"
    return OK, f"start-up: window visible {when} (CPU {shown['cpu_s']:.2f} s), {platform_name()} platform"


def platform_name() -> str:
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.platformName() or "?"


def format_table(checks: list[Check]) -> str:
    w = max(len(c.name) for c in checks)
    lines = [f"{'check':{w}s}  {'result':11s} {'ms':>8s}  detail", "-" * (w + 40)]
    lines += [f"{c.name:{w}s}  {c.status:11s} {c.ms:8.0f}  {c.detail}" for c in checks]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medsr-viewer --self-test", description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps ({', '.join(STEPS)})")
    p.add_argument("--crop", type=int, default=CROP, help=f"side of the slice crop to upscale ({CROP})")
    p.add_argument("--show-ms", type=int, default=500, help="how long the window stays shown (500)")
    p.add_argument("--verbose", action="store_true", help="print the traceback of each failure")
    return p


def run_checks(steps: set[str], crop: int, show_ms: int) -> list[Check]:
    from engine.io import load_volume
    from engine.resources import sample_volume_path

    checks: list[Check] = []
    sample = sample_volume_path()
    image = None
    if steps & {"sample", "networks", "native"}:
        loaded: dict[str, Any] = {}

        def load() -> tuple[str, str]:
            import numpy as np

            vol = load_volume(sample)
            if not np.isfinite(vol.data).all():
                return FAIL, "non-finite voxels"
            loaded["image"] = central_crop(vol, crop)
            return OK, f"{sample.name}: {'x'.join(map(str, vol.shape))}, {vol.modality}"

        checks.append(_timed("sample volume", load))
        image = loaded.get("image")
    if "networks" in steps:
        for name, scale, has_weights in network_jobs(META_SCALES):
            label = f"{name} x{scale:g}"
            if not has_weights:
                checks.append(Check(label, NOT_TRAINED, "no shipped weights yet"))
            elif image is None:
                checks.append(Check(label, SKIPPED, "sample did not load"))
            else:
                checks.append(_timed(label, lambda n=name, s=scale: run_network(n, s, image)))
    if "native" in steps:
        if image is None:
            checks.append(Check("native kernels", SKIPPED, "sample did not load"))
        else:
            checks.append(_timed("native kernels", lambda: check_native(image)))
    if "dicom" in steps:
        checks.append(_timed("dicom jpeg2000", check_dicom_codecs))
    if "train" in steps:
        with tempfile.TemporaryDirectory(prefix="medsr-self-test-") as tmp:
            checks.append(_timed("training process", lambda: check_training(sample, Path(tmp))))
    if "gui" in steps:
        checks.append(_timed("main window", lambda: check_window(show_ms, startup=steps == {"gui"})))
    return checks


def main(argv: list[str] | None = None) -> int:
    """Run the checks, print the table; 0 when nothing failed."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt is imported anywhere
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    steps = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = steps - set(STEPS)
    if unknown:
        print(f"medsr-viewer --self-test: unknown step(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    checks = run_checks(steps, args.crop, args.show_ms)
    print(format_table(checks))
    failed = [c for c in checks if c.status == FAIL]
    if args.verbose:
        for c in failed:
            print(f"--- {c.name}\n{c.trace or c.detail}", file=sys.stderr)
    untrained = sum(c.status == NOT_TRAINED for c in checks)
    ran = sum(c.status == OK for c in checks)
    where = "frozen app" if getattr(sys, "frozen", False) else "source"
    print(f"self-test ({where}): {ran} ok, {len(failed)} failed, {untrained} not trained")
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
