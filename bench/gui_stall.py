"""Longest GUI-thread stall of the real viewer window, driven offscreen through a clinician's session.

A 5 ms QTimer heartbeat measures event-loop gaps while the script scrolls slices, changes model and
scale, switches Simulate/Enhance and changes the plane, with the per-slice metric curves computing in
the background. Networks run with untrained weights written to a temporary resources folder (the
timing is the same as trained ones). Prints a table, or JSON with --json.

    .venv/bin/python bench/gui_stall.py [PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HEARTBEAT_MS = 5
BENCH_WEIGHTS = [("new_carn", 2.0), ("new_carn", 3.0), ("edsr", 2.0), ("meta_srgan", None)]


def fake_resources() -> Path:
    """A resources folder like the shipped one, with untrained weights for the benchmarked networks."""
    from engine.models import build_model
    from engine.weights import save_weights, shipped_weights_path

    real = REPO / "resources"
    root = Path(tempfile.mkdtemp(prefix="medsr-bench-resources-"))
    for name in ("sample", "icons"):
        if (real / name).exists():
            (root / name).symlink_to(real / name)
    (root / "weights").mkdir()
    os.environ["MEDSR_RESOURCES"] = str(root)
    for name, scale in BENCH_WEIGHTS:
        path = shipped_weights_path(name, scale)
        save_weights(build_model(name, scale or 2.0), path, arch=name, args={}, scale=scale)
    return root


class StallTracer:
    """A watchdog thread that records what the GUI thread was doing whenever a heartbeat is late."""

    def __init__(self, beat: Heartbeat, threshold_ms: float = 40.0):
        import threading

        self.beat = beat
        self.threshold = threshold_ms / 1000.0
        self.main_id = threading.main_thread().ident
        self.samples: dict[str, int] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        import threading
        import traceback

        while not self._stop.wait(0.01):
            if time.perf_counter() - self.beat.last > self.threshold:
                frames = sys._current_frames()
                frame = frames.get(self.main_id)
                if frame is None:
                    continue
                stack = traceback.extract_stack(frame)[-2:]
                key = "GUI: " + " <- ".join(
                    f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack)
                )
                self.samples[key] = self.samples.get(key, 0) + 1
                for ident, other in frames.items():
                    if ident in (self.main_id, threading.get_ident()):
                        continue
                    top = traceback.extract_stack(other)[-2:]
                    wkey = "worker: " + " <- ".join(
                        f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(top)
                    )
                    self.samples[wkey] = self.samples.get(wkey, 0) + 1


class Heartbeat:
    """Records the gaps between timer ticks: the time the event loop could not run, per phase."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.timer = QTimer(interval=HEARTBEAT_MS, timeout=self._tick)
        self.timer.setTimerType(self.timer.timerType().PreciseTimer)
        self.last = time.perf_counter()
        self.last_cpu = time.thread_time()
        self.phase = "start"
        self.stalls: dict[str, list[float]] = {}
        self.busy: list[float] = []  # GUI-thread CPU time inside each gap: our own work, not waiting

    def start(self) -> None:
        self.last = time.perf_counter()
        self.last_cpu = time.thread_time()
        self.timer.start()

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        gap = (now - self.last) * 1000.0 - HEARTBEAT_MS
        self.stalls.setdefault(self.phase, []).append(max(gap, 0.0))
        self.busy.append((cpu - self.last_cpu) * 1000.0)
        self.last, self.last_cpu = now, cpu


def run(path: Path | None, trace: bool = False) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    fake_resources()
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from engine.resources import sample_volume_path
    from medsr_viewer.main_window import MainWindow
    from medsr_viewer.settings import Settings
    from medsr_viewer.state import ENHANCE, SIMULATE
    from medsr_viewer.theme import apply_theme

    app = QApplication.instance() or QApplication(["gui_stall"])
    apply_theme(app)
    win = MainWindow(Settings.throwaway(), dialogs=False, curves=True)
    win.resize(1600, 1000)
    win.show()
    app.processEvents()
    t_shown = time.perf_counter()
    beat = Heartbeat()
    beat.start()
    tracer = StallTracer(beat) if trace else None
    if tracer:
        tracer.start()
    latencies: list[float] = []

    timeouts = []

    def wait_sr(timeout_s: float = 60.0) -> None:
        app.processEvents()  # let coalesced state changes become a request
        last = win.workspace.last_final
        if last is not None and last.request == win.controller.slices.current:
            return  # already on screen (it arrived while we were scrolling)
        win.controller.last_latency_ms = None
        loop = QEventLoop()
        shown = []
        win.srShown.connect(loop.quit)
        win.srShown.connect(shown.append)
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()
        win.srShown.disconnect(loop.quit)
        win.srShown.disconnect(shown.append)
        if not shown:
            timeouts.append(beat.phase)
        if win.controller.last_latency_ms is not None:
            latencies.append(win.controller.last_latency_ms)

    def pause(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    beat.phase = "idle (machine noise)"
    pause(2000)

    s = win.state
    beat.phase = "load"
    s.model, s.scale = "new_carn", 2.0
    win.open_path(path or sample_volume_path())
    wait_sr()
    t_first_sr = time.perf_counter()

    beat.phase = "slices"
    room_up, room_down = s.n_slices - 1 - s.slice, s.slice
    direction = 1 if room_up >= room_down else -1
    steps = min(40, max(room_up, room_down))
    for _ in range(steps):  # a wheel scroll: one slice every 40 ms
        s.step_slice(direction)
        pause(40)
    wait_sr()
    for _ in range(min(10, steps)):  # single steps back, waiting for each
        s.step_slice(-direction)
        wait_sr()

    beat.phase = "model/scale"
    for model, scale in (
        ("new_carn", 3.0),
        ("edsr", 2.0),
        ("meta_srgan", 2.5),
        ("edsr", 4.0),
        ("bicubic", 2.0),
        ("new_carn", 2.0),
    ):
        s.model, s.scale = model, scale
        wait_sr()

    beat.phase = "mode"
    for mode in (ENHANCE, SIMULATE, ENHANCE, SIMULATE):
        s.mode = mode
        wait_sr()

    beat.phase = "plane"
    first = s.axis
    for axis in ((first + 1) % 3, (first + 2) % 3, first):
        s.axis = axis
        wait_sr()
    pause(300)
    beat.timer.stop()
    win.close()

    if tracer:
        tracer.stop()
    all_stalls = [g for gaps in beat.stalls.values() for g in gaps]
    ordered = sorted(all_stalls)
    return {
        "volume": str(path or sample_volume_path()),
        "window_shown_ms": round((t_shown - T0) * 1000.0),
        "first_sr_ms": round((t_first_sr - T0) * 1000.0),
        "longest_stall_ms": round(max(all_stalls), 1),
        "p99_stall_ms": round(ordered[int(len(ordered) * 0.99)], 1),
        "stalls_over_50ms": sum(g > 50 for g in all_stalls),
        "heartbeats": len(all_stalls),
        "longest_gui_busy_ms": round(max(beat.busy), 1),
        "gui_busy_over_50ms": sum(b > 50 for b in beat.busy),
        "longest_stall_by_phase_ms": {k: round(max(v), 1) for k, v in beat.stalls.items() if v},
        "waits_timed_out": timeouts,
        "stall_stacks": dict(sorted(tracer.samples.items(), key=lambda kv: -kv[1])[:30]) if tracer else {},
        "slice_latency_median_ms": round(sorted(latencies)[len(latencies) // 2], 1) if latencies else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="volume to open (default: the bundled sample)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--trace", action="store_true", help="sample the GUI thread's stack during stalls")
    args = parser.parse_args()
    result = run(args.path, args.trace)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'measure':34s} value")
    for key, value in result.items():
        if key == "stall_stacks":
            for k, v in value.items():
                print(f"  {v:4d} x {k}")
        elif isinstance(value, dict):
            for k, v in value.items():
                print(f"  longest stall in {k:17s} {v} ms")
        else:
            print(f"{key:34s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
