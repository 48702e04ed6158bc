"""Start-up: ``medsr-viewer [PATH] [--model M --scale S ...] [--screenshot OUT.png]``.

With no path the bundled sample opens. ``--screenshot`` renders the window offscreen once the first
SR result is shown (with ``--zoom`` and meta_srgan, once the SR panel shows the visible region at the
display scale), writes the PNG and exits (0; 2 with one line on stderr for a bad file or option).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

T_START = time.perf_counter()

EXIT_BAD_INPUT = 2
SCREENSHOT_TIMEOUT_S = 300


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medsr-viewer", description="Compare super-resolution with bicubic on MRI/CT."
    )
    p.add_argument(
        "path", nargs="?", default=None, help="NIfTI file or DICOM file/folder (default: the sample)"
    )
    p.add_argument("--model", help="network for the SR panel (see `medsr models`)")
    p.add_argument("--scale", type=float, help="upscaling factor (2, 3, 4; 1.1-4.0 for meta_srgan)")
    p.add_argument(
        "--mode", choices=["simulate", "enhance"], help="Simulate (volume = ground truth) or Enhance"
    )
    p.add_argument("--slice", type=int, help="slice index (0-based) along the chosen orientation")
    p.add_argument("--orientation", choices=["axial", "coronal", "sagittal"], help="slicing plane")
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--weights", help="a .safetensors weights file for --model")
    p.add_argument("--blur", action="store_true", help="add the k3/sigma1 blur to the degradation")
    p.add_argument(
        "--crosshair", metavar="I,J,K", help="put the crosshair on this voxel (and show its slice)"
    )
    p.add_argument(
        "--zoom",
        type=float,
        help="magnification relative to fitting the slice (e.g. 2; centred on --crosshair if given)",
    )
    p.add_argument(
        "--screenshot", metavar="OUT.png", help="render offscreen after the first SR result, save, exit"
    )
    p.add_argument("--size", default="1600x1000", help="window size for --screenshot (default 1600x1000)")
    p.add_argument(
        "--wait-metrics",
        action="store_true",
        help="with --screenshot: also wait for the per-slice metric curves",
    )
    p.add_argument("--timings", action="store_true", help="print start-up timings (ms) to stderr")
    return p


def _fail(message: str) -> int:
    print(f"medsr-viewer: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run(argv: list[str]) -> int:
    if argv[:1] == ["--self-test"]:  # headless check of an installed app; see docs/PACKAGING.md
        from medsr_viewer.self_test import main as self_test

        return self_test(argv[1:])
    args = build_parser().parse_args(argv)
    headless = args.screenshot is not None
    if headless:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from medsr_viewer.logging_setup import install_exception_hooks, setup_logging

    setup_logging(console_level=logging.WARNING)  # <user data>/logs/medsr-viewer.log, from here on

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    timings: dict[str, float] = {}
    app = QApplication.instance() or QApplication(sys.argv[:1])
    install_exception_hooks()  # unhandled exceptions: logged with traceback, shown, window kept
    splash = None if headless else _splash(app)  # on screen before torch and friends are imported
    if splash is not None:
        timings["splash_shown_ms"] = (time.perf_counter() - T_START) * 1000

    def fail(message: str) -> int:
        if splash is not None:
            splash.close()
        return _fail(message)

    from engine.devices import available_devices
    from engine.fast.allocator import retain_freed_memory
    from engine.models import get_card, model_names
    from engine.resources import sample_volume_path
    from medsr_viewer.settings import APPLICATION, ORGANISATION, Settings
    from medsr_viewer.state import AXIS_BY_NAME
    from medsr_viewer.theme import apply_theme

    retain_freed_memory()  # each slice's large activations stay mapped instead of page-faulting again

    if args.model is not None and args.model not in model_names():
        return fail(f"unknown model {args.model!r}; known: {', '.join(model_names())}")
    if args.scale is not None:
        card = get_card(args.model) if args.model else None
        if args.scale <= 1.0 or args.scale > 8.0 or (card is not None and not card.serves(args.scale)):
            return fail(f"scale x{args.scale:g} is not served" + (f" by {args.model}" if args.model else ""))
    if args.device is not None and args.device not in ["auto", *available_devices()]:
        return fail(
            f"device {args.device!r} is not available here (have: auto, {', '.join(available_devices())})"
        )
    path = Path(args.path) if args.path else sample_volume_path()
    if not path.exists():
        return fail(f"{path}: no such file or folder")
    if args.weights and not Path(args.weights).is_file():
        return fail(f"{args.weights}: weights file not found")

    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    apply_theme(app)

    from medsr_viewer.main_window import MainWindow

    settings = Settings.throwaway() if headless else Settings()
    win = MainWindow(settings, dialogs=not headless)
    if args.size and headless:
        w, h = (int(v) for v in args.size.lower().split("x"))
        win.resize(w, h)
    s = win.state
    if args.model:
        s.model = args.model
    if args.scale:
        s.scale = args.scale
    if args.mode:
        s.mode = args.mode
    if args.device:
        s.device = args.device
    if args.blur:
        s.blur = True
    if args.weights:
        win.use_weights(args.weights)
    crosshair = None
    if args.crosshair:
        try:
            crosshair = tuple(int(v) for v in args.crosshair.split(","))
            assert len(crosshair) == 3
        except (ValueError, AssertionError):
            return fail(f"--crosshair wants three voxel indices I,J,K, got {args.crosshair!r}")
    win.set_pending_view(
        AXIS_BY_NAME[args.orientation] if args.orientation else None,
        args.slice,
        crosshair=crosshair,
        zoom=args.zoom,
    )

    win.show()
    if splash is not None:
        splash.close()
    QTimer.singleShot(
        0, lambda: timings.setdefault("window_shown_ms", (time.perf_counter() - T_START) * 1000)
    )
    win.srShown.connect(lambda _r: timings.setdefault("first_sr_ms", (time.perf_counter() - T_START) * 1000))

    outcome = {"code": 0}
    if headless:
        _arm_screenshot(app, win, Path(args.screenshot), args.wait_metrics, outcome)
    win.open_path(path)
    code = app.exec()
    if args.timings:
        print(" ".join(f"{k}={v:.0f}" for k, v in timings.items()), file=sys.stderr)
    return outcome["code"] if headless else code


def _splash(app):
    """A small start-up card, shown while the heavy modules (torch, pyqtgraph, the engine) import."""
    from PySide6.QtCore import QRect, Qt
    from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap
    from PySide6.QtWidgets import QLabel

    from engine.resources import resources_dir

    pixmap = QPixmap(460, 150)
    pixmap.fill(QColor("#1b1c1f"))
    p = QPainter(pixmap)
    try:
        icon = resources_dir() / "icons" / "medsr-viewer.svg"
        if icon.exists():
            p.drawPixmap(24, 43, QIcon(str(icon)).pixmap(64, 64))
        font = QFont()
        font.setPointSize(18)
        font.setBold(True)
        p.setFont(font)
        p.setPen(QColor("#e8eaed"))
        p.drawText(QRect(108, 38, 340, 36), Qt.AlignmentFlag.AlignLeft, "MedSR Viewer")
        font.setPointSize(9)
        font.setBold(False)
        p.setFont(font)
        p.setPen(QColor("#9aa0a6"))
        p.drawText(
            QRect(108, 76, 340, 20), Qt.AlignmentFlag.AlignLeft, "super-resolution vs bicubic, slice by slice"
        )
        p.setPen(QColor("#ff9f1c"))
        p.drawText(QRect(108, 98, 340, 20), Qt.AlignmentFlag.AlignLeft, "SR is computed, not acquired")
    finally:
        p.end()
    # A plain frameless label: QSplashScreen waits up to a second for the window to be exposed.
    splash = QLabel()
    splash.setWindowFlags(Qt.WindowType.SplashScreen | Qt.WindowType.FramelessWindowHint)
    splash.setPixmap(pixmap)
    splash.show()
    app.processEvents()
    return splash


def _arm_screenshot(app, win, out: Path, wait_metrics: bool, outcome: dict) -> None:
    """Save ``out`` once the first SR result (and, if asked, the metric curves) is on screen; then quit."""
    from PySide6.QtCore import QTimer

    done = {"sr": False, "curves": not wait_metrics, "saved": False, "zoom_failed": False}

    def save() -> None:
        if done["saved"]:
            return
        done["saved"] = True
        app.processEvents()
        out.parent.mkdir(parents=True, exist_ok=True)
        if not win.grab().save(str(out), "PNG"):
            outcome["code"] = _fail(f"{out}: could not write the screenshot")
        else:
            print(f"screenshot written: {out}", file=sys.stderr)
        win.close()
        app.quit()

    zoom = win.workspace.zoom_sr

    def maybe_save() -> None:
        if not (done["sr"] and done["curves"]):
            return
        if zoom.active and zoom.shown_view != zoom.view and not done["zoom_failed"]:
            return  # zoomed with meta_srgan: wait for the SR of the visible region (zoom.srShown)
        QTimer.singleShot(300, save)  # let the error maps, histogram and metrics repaint

    def zoom_failed(_message: str) -> None:
        done["zoom_failed"] = True
        maybe_save()

    def sr_shown(_result) -> None:
        done["sr"] = True
        maybe_save()

    def curves_finished(_request) -> None:
        done["curves"] = True
        maybe_save()

    def failed(_title: str, message: str) -> None:
        if win.state.loaded is None:  # the file itself could not be opened
            outcome["code"] = _fail(message)
            done["saved"] = True
            win.close()
            app.quit()

    def slice_failed(_request, message: str) -> None:  # e.g. a plane one voxel thick
        if not done["saved"]:
            outcome["code"] = _fail(message)
            done["saved"] = True
            win.close()
            app.quit()

    def timeout() -> None:
        if not done["saved"]:
            outcome["code"] = _fail(f"no SR result within {SCREENSHOT_TIMEOUT_S} s; nothing written")
            done["saved"] = True
            app.quit()

    def series_choice(choice) -> None:  # headless: take the largest series, as load_volume would
        win.open_path(choice.path, choice.series[0].uid)

    win.srShown.connect(sr_shown)
    zoom.srShown.connect(lambda _result: maybe_save())
    zoom.failed.connect(zoom_failed)
    win.controller.curvesFinished.connect(curves_finished)
    win.errorReported.connect(failed)
    win.controller.sliceFailed.connect(slice_failed)
    win.seriesChoiceRequested.connect(series_choice)
    QTimer.singleShot(SCREENSHOT_TIMEOUT_S * 1000, timeout)
