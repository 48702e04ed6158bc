"""Scroll-to-zoom in the real viewer window, offscreen: wheel event to bicubic frame, to SR frame.

    .venv/bin/python bench/zoom.py [--json] [--step 1.05] [--weights W] [--data NIFTI]

The window is the real MainWindow (offscreen, 1600x1000, no per-slice curves) in Enhance mode with
meta_srgan, so the SR panel's input is the acquired slice. The volume is the bundled sample (or
--data) padded with its background value (centred) or cropped to 256x256 in the acquisition plane,
so the middle slice is a real 256^2 slice. The SR panel's view is fixed at 512x512 pixels. Real wheel
events (QWheelEvent on the SR panel's viewport, off centre) zoom the linked views so that the display
scale goes 1.1 -> 4.0 -> 1.1 by --step per event. After each event the script waits in the event loop
(no busy waiting) for the SR panel to repaint with bicubic of the new view, then with its SR.

Reported (milliseconds, wall clock):
* p50_ms, p95_ms: wheel event sent -> SR panel repainted with SR of the new view (slice already
  encoded: the sequence starts once the viewer has encoded the slice and prefetched its neighbours);
* placeholder_p95_ms: wheel event sent -> SR panel repainted with bicubic of the new view;
* encode_ms: the viewer's encode of the slice (trunk and per-slice maps, on its worker);
* gui_stall_max_ms: the longest gap of a 5 ms heartbeat QTimer during the zoom sequence, beyond 5 ms
  (gui_busy_max_ms: the most CPU time the GUI thread itself used within one gap: the rest of a long
  gap is the thread waiting for a core or for the GIL);
* burst: ten wheel events 8 ms apart without waiting: SR frames painted for a view that was no
  longer current (must be 0) and renders dropped as stale;
* before: the same sequence with zoom SR off, i.e. the viewer before this feature: the SR panel only
  shows the fixed-scale SR (x2) magnified by the view; wheel event -> that frame painted.

Weights: --weights, else the shipped resources/weights/meta_srgan.safetensors. Timings on a loaded
machine are noisy (the script prints the load average): compare runs taken together.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SAMPLE = REPO / "resources" / "sample" / "utah_seg3d_MR.nii.gz"
VIEWPORT = 512
SIZE = 256
WAIT_S = 30.0
CURSOR = (280, 236)  # where the wheel turns, in SR viewport pixels (off centre: zoom around the cursor)
WHEEL_DEGREES = math.log(1.02) / 8  # pyqtgraph: each 1/8 degree of wheel zooms by 1.02 ** (1/8)


def padded_volume(path: Path, size: int, workdir: Path) -> tuple[Path, str]:
    """``path`` padded (background value, centred) or cropped to size^2 in the acquisition plane."""
    from engine.io.load import load_volume
    from engine.io.save import save_volume
    from engine.volume import Volume

    vol = load_volume(path)
    axis = vol.acquisition_axis
    background = float(np.percentile(vol.data, 1))
    shape = [size if a != axis else n for a, n in enumerate(vol.shape)]
    out = np.full(shape, background, dtype=np.float32)
    src, dst = [], []
    for a, n in enumerate(vol.shape):
        m = min(n, shape[a])
        i, o = (n - m) // 2, (shape[a] - m) // 2
        src.append(slice(i, i + m))
        dst.append(slice(o, o + m))
    out[tuple(dst)] = vol.data[tuple(src)]
    target = workdir / f"{path.name.split('.')[0]}_{size}.nii.gz"
    save_volume(Volume(out, vol.affine, vol.modality, vol.description), target)
    where = f"{path.name} {vol.shape} padded/cropped to {tuple(shape)}: axis {axis} slices {size}x{size}"
    return target, where


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values), q)), 1) if values else None


class FrameClock:
    """Times the SR panel's repaints after a wheel event: the first showing bicubic of the new view, the
    first showing its SR (or, with zoom SR off, the first repaint at all)."""

    def __init__(self, app, win) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        self.app, self.win = app, win
        self.zoom = win.workspace.zoom_sr
        self.canvas = win.workspace.panels["sr"].canvas
        self.loop = QEventLoop()
        self.timeout = QTimer(singleShot=True, timeout=self.loop.quit)
        self.t0 = 0.0
        self.target = None
        self.placeholder_ms: float | None = None
        self.sr_ms: float | None = None
        self.frame_ms: float | None = None
        self.stale_painted = 0
        self.early: list = []  # (ms, view) of paints before the wheel event returned
        self.canvas.painted.connect(self._painted)

    def _painted(self) -> None:
        now = (time.perf_counter() - self.t0) * 1000.0
        z = self.zoom
        shown, view = z.shown_view, z.view
        if (
            z.sr_item.isVisible()
            and shown is not None
            and (view is None or (shown.key, shown.region.scale) != (view.key, view.region.scale))
        ):
            self.stale_painted += 1  # SR of another view than the current one on screen (must not happen)
        if self.frame_ms is None:
            self.frame_ms = now
        if self.target is None:
            # painted while the wheel event was being handled (the viewer paints the panel under the
            # wheel at once): which view it showed is checked once the event has returned
            self.early.append((now, z.view))
            self.loop.quit()
            return
        if self.placeholder_ms is None and z.view == self.target:
            self.placeholder_ms = now
        if z.shown_view == self.target:
            self.sr_ms = now
            self.loop.quit()

    def wheel(self, delta: int) -> None:
        from PySide6.QtCore import QPoint

        from medsr_viewer.synthetic_input import send_wheel

        send_wheel(self.canvas.viewport(), QPoint(*CURSOR), delta)

    def step(self, delta: int, wait_sr: bool) -> dict:
        """One wheel event; wait for its SR frame (or, with ``wait_sr`` False, for its first frame)."""
        self.placeholder_ms = self.sr_ms = self.frame_ms = None
        self.target = None
        self.early = []
        self.t0 = time.perf_counter()
        self.wheel(delta)
        self.target = self.zoom.view if wait_sr else None  # set while the event was handled
        if self.target is not None:
            self.placeholder_ms = next((t for t, view in self.early if view == self.target), None)
        if self.target is not None and self.zoom.shown_view == self.target:
            self.sr_ms = 0.0  # nothing to render (never for a zoom step)
        self.timeout.start(int(WAIT_S * 1000))
        while (self.sr_ms is None if wait_sr else self.frame_ms is None) and self.timeout.isActive():
            self.loop.exec()
        self.timeout.stop()
        return {"placeholder_ms": self.placeholder_ms, "sr_ms": self.sr_ms, "frame_ms": self.frame_ms}


def wait_for(app, condition, timeout_s: float = WAIT_S) -> bool:
    """Run the event loop until ``condition()`` (checked every 10 ms), without spinning the CPU."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    t0 = time.monotonic()

    def check() -> None:
        if condition() or time.monotonic() - t0 > timeout_s:
            loop.quit()

    timer = QTimer(interval=10, timeout=check)
    timer.start()
    if not condition():
        loop.exec()
    timer.stop()
    return bool(condition())


def screen_scale(win) -> float:
    from medsr_viewer.zoom_region import display_scale

    layer = win.workspace.last.images["input"]
    vb = win.workspace.panels["sr"].vb
    (x0, x1), _ = vb.viewRange()
    px = (layer.extent_mm[0] / layer.image.shape[1], layer.extent_mm[1] / layer.image.shape[0])
    return display_scale(px, (x1 - x0) / vb.width())


def zoom_sequence(lo: float, hi: float, step: float) -> list[float]:
    up = [lo]
    while up[-1] * step < hi:
        up.append(up[-1] * step)
    up.append(hi)
    return up + up[-2::-1]


def run_sequence(clock: FrameClock, win, targets: list[float], wait_sr: bool, beat) -> list[dict]:
    rows = []
    beat.stalls.clear()
    beat.busy.clear()
    beat.start()
    for target in targets:
        ratio = math.log(target / screen_scale(win)) / WHEEL_DEGREES
        delta = math.floor(ratio) if ratio > 0 else math.ceil(ratio)  # never past 1.1 or 4.0
        if delta == 0:
            continue
        row = clock.step(delta, wait_sr)
        row["scale"] = screen_scale(win)
        shown = clock.zoom.shown
        row["source"] = shown.source if wait_sr and shown is not None else None
        rows.append(row)
    beat.timer.stop()
    return rows


def burst(app, clock: FrameClock, win, events: int = 10, gap_ms: int = 8) -> dict:
    """Wheel events faster than SR can follow: only the last view's SR may end on screen."""
    from PySide6.QtCore import QTimer

    zoom = clock.zoom
    dropped = zoom.renders.dropped
    shown: list[bool] = []  # at each SR shown: is it the current view's?
    slot = zoom.srShown.connect(lambda _r: shown.append(zoom.shown_view == zoom.view))
    stale_before = clock.stale_painted
    clock.target = None
    sent = []

    def send(i: int) -> None:
        clock.t0 = time.perf_counter()
        clock.wheel(40 if i % 3 else -20)
        sent.append(zoom.view)

    for i in range(events):
        QTimer.singleShot(i * gap_ms, lambda i=i: send(i))
    wait_for(app, lambda: len(sent) == events)
    t_last = time.perf_counter()
    ok = wait_for(app, lambda: zoom.shown_view == zoom.view)
    last_ms = (time.perf_counter() - t_last) * 1000.0
    zoom.srShown.disconnect(slot)
    return {
        "events": events,
        "gap_ms": gap_ms,
        "sr_shown": len(shown),
        "sr_shown_not_current": shown.count(False),
        "stale_sr_frames_painted": clock.stale_painted - stale_before,
        "renders_dropped": zoom.renders.dropped - dropped,
        "settled_on_last_view": ok and zoom.shown_view == sent[-1],
        "last_event_to_sr_ms": round(last_ms, 1),
    }


def run(args) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from bench.gui_stall import Heartbeat
    from medsr_viewer.main_window import MainWindow
    from medsr_viewer.settings import Settings
    from medsr_viewer.state import ENHANCE
    from medsr_viewer.theme import apply_theme

    app = QApplication.instance() or QApplication(["medsr-zoom-bench"])
    apply_theme(app)
    win = MainWindow(Settings.throwaway(), dialogs=False, curves=False)
    win.resize(1600, 1000)
    win.show()
    sr_panel = win.workspace.panels["sr"]
    sr_panel.canvas.setFixedSize(VIEWPORT, VIEWPORT)
    s = win.state
    s.mode = ENHANCE
    if args.weights:
        win.use_weights(args.weights)
    s.model, s.scale = "meta_srgan", 2.0
    zoom = win.workspace.zoom_sr
    zoom.set_enabled(False)
    encoded: list = []
    zoom.encoded.connect(encoded.append)

    with tempfile.TemporaryDirectory() as tmp:
        path, where = padded_volume(args.data, SIZE, Path(tmp))
        win.open_path(path)
        if not wait_for(app, lambda: win.workspace.last_final is not None, 120):
            raise TimeoutError("the first SR result did not arrive")
    result = win.workspace.last_final
    if result.sr is None or result.sr.fallback:
        raise RuntimeError(f"meta_srgan did not run: {result.sr.notice if result.sr else 'no SR'}")
    viewport = sr_panel.canvas.viewport()
    clock = FrameClock(app, win)
    beat = Heartbeat()
    link = win.workspace.link
    targets = zoom_sequence(1.1, 4.0, args.step)

    # before: zoom SR off, the fixed-scale SR magnified by the view
    link.set_zoom(link.zoom * targets[0] / screen_scale(win))
    wait_for(app, lambda: False, 0.3)
    before = run_sequence(clock, win, targets[1:], wait_sr=False, beat=beat)
    before_stall = max((g for gaps in beat.stalls.values() for g in gaps), default=0.0)

    # encode the slice (and prefetch its neighbours) before timing: "slice already encoded"
    link.set_zoom(link.zoom * targets[0] / screen_scale(win))
    zoom.set_enabled(True)
    key = zoom.view.key if zoom.view is not None else None
    settled = wait_for(app, lambda: zoom.shown_view == zoom.view and not zoom.encodes.running, 120)
    if key is None or not settled:
        raise TimeoutError("zoom SR did not start (is meta_srgan trained and selected?)")
    encode = next((e.ms for e in encoded if e.key == key and e.ms is not None), None)
    prefetched = sum(e.key != key for e in encoded)

    after = run_sequence(clock, win, targets[1:], wait_sr=True, beat=beat)
    stall = max((g for gaps in beat.stalls.values() for g in gaps), default=0.0)
    gui_busy = max(beat.busy, default=0.0)
    burst_report = burst(app, clock, win)

    sr_ms = [r["sr_ms"] for r in after if r["sr_ms"] is not None]
    ph_ms = [r["placeholder_ms"] for r in after if r["placeholder_ms"] is not None]
    frames = [r["frame_ms"] for r in before if r["frame_ms"] is not None]
    import torch

    out = {
        "p50_ms": percentile(sr_ms, 50),
        "p95_ms": percentile(sr_ms, 95),
        "placeholder_p50_ms": percentile(ph_ms, 50),
        "placeholder_p95_ms": percentile(ph_ms, 95),
        "encode_ms": round(encode, 1) if encode is not None else None,
        "gui_stall_max_ms": round(stall, 1),
        "gui_busy_max_ms": round(gui_busy, 1),  # GUI-thread CPU time within one heartbeat gap
        "steps": len(after),
        "sr_timeouts": sum(r["sr_ms"] is None for r in after),
        "sources": {k: sum(r["source"] == k for r in after) for k in ("sr", "sr+bicubic", "bicubic")},
        "scales_seen": [round(min(r["scale"] for r in after), 3), round(max(r["scale"] for r in after), 3)],
        "viewport": [viewport.width(), viewport.height()],
        "slice": where,
        "weights": str(args.weights or "shipped meta_srgan.safetensors"),
        "prefetched_neighbours": prefetched,
        "burst": burst_report,
        "before": {
            "what": "zoom SR off (the viewer before this feature): the SR panel shows the fixed-scale "
            "meta_srgan x2 SR magnified by the view; never SR at the display scale",
            "frame_p50_ms": percentile(frames, 50),
            "frame_p95_ms": percentile(frames, 95),
            "sr_at_display_scale": False,
            "gui_stall_max_ms": round(before_stall, 1),
        },
        "targets": {"p95_ms": 33, "placeholder_p95_ms": 5, "encode_ms": 250, "gui_stall_max_ms": 50},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
    }
    if args.per_step:
        out["per_step"] = after
    win.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--step", type=float, default=1.05, help="zoom factor per wheel event")
    ap.add_argument("--data", type=Path, default=SAMPLE)
    ap.add_argument("--weights", type=Path, default=None, help="a meta_srgan weights file (default: shipped)")
    ap.add_argument("--per-step", action="store_true", help="include every step's timings")
    args = ap.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    b = result["before"]
    rows = [
        ("wheel -> SR frame p50 / p95 ms", f"{result['p50_ms']} / {result['p95_ms']} (target p95 <= 33)"),
        ("wheel -> bicubic frame p50 / p95 ms",
         f"{result['placeholder_p50_ms']} / {result['placeholder_p95_ms']} (target p95 <= 5)"),
        ("encode ms (one slice)", f"{result['encode_ms']} (target <= 250)"),
        ("GUI stall max ms", f"{result['gui_stall_max_ms']} (target <= 50; GUI thread busy at most "
         f"{result['gui_busy_max_ms']} ms of a gap)"),
        ("steps / SR timeouts", f"{result['steps']} / {result['sr_timeouts']}"),
        ("sources", result["sources"]),
        ("burst", result["burst"]),
        ("before: wheel -> frame p50 / p95 ms", f"{b['frame_p50_ms']} / {b['frame_p95_ms']} (no SR at the "
         "display scale: fixed x2 SR magnified)"),
        ("slice", result["slice"]),
        ("machine", result["machine"]),
    ]  # fmt: skip
    for k, v in rows:
        print(f"{k:<38} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
