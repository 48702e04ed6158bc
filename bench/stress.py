"""Stress the real viewer window offscreen: does it survive a burst of input without crashing, painting
stale frames or growing in memory?

Drives the window as a hurried user would, with no pause between events: mouse-wheel events sent to
the panels (slices), slider moves, wheel and key zooms, plane changes, model and scale changes,
the model-disagreement map switched on and off, and volumes opened again and again (each open
replaces, so closes, the previous volume; every other open is cancelled by a second one at once).

Reports:
* RSS growth (psutil if installed, else /proc/self/statm) between a warmed-up start and the end,
  both measured just after opening the same volume (which empties the result cache), and the peak;
* events per second the GUI thread absorbed (each event dispatched and the event loop run once);
* stale frames (must be 0): a slice result applied whose request was not the current one; one
  applied although the state had already moved on (its new request not made yet: same event-loop
  turn); and a view that settled on a frame other than the state's.

    .venv/bin/python bench/stress.py [VOLUME ...] [--events 1000] [--json]

With no volume: the bundled sample and a small real spine MRI from ../shared/data (if present).
tests/viewer/test_stress.py runs a short version (200 events) and asserts the same properties.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SETTLE_TIMEOUT_S = 120.0
QUIET_S = 2.5  # before each RSS reading, as a user pausing: the viewer hands freed memory back when quiet
WARMUP_EVENTS = 30
SMALL_MRI = Path("msk_spine") / "sct_t1w_cspine_crop.nii.gz"


def rss_bytes() -> tuple[int, str]:
    """Resident memory of this process, and how it was read."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss), "psutil"
    except ImportError:
        pass
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE"), "/proc/self/statm"


@dataclass
class StressReport:
    events: int
    seconds: float  # time the GUI thread spent dispatching the events and running the event loop
    events_per_s: float
    rss_start_mb: float
    rss_end_mb: float
    growth_mb: float
    peak_mb: float
    stale_applied: int  # results applied that were not the current request's
    settled_stale: int  # settled views not showing the state's frame
    behind_state: int  # results applied although the state had moved on (in the same event-loop turn)
    results_applied: int
    dropped: int  # results computed but dropped as stale by the controller
    reopens: int
    rss_source: str
    wall_s: float
    kinds: dict[str, int] = field(default_factory=dict)
    rss_trace_mb: list[float] = field(default_factory=list)  # every 100 events

    @property
    def stale_frames(self) -> int:
        return self.stale_applied + self.behind_state + self.settled_stale


class FrameWatch:
    """Checks every slice result the window applies against the current request and the state."""

    def __init__(self, win) -> None:
        from medsr_viewer.pipeline import SliceRequest

        self.win = win
        self.request_of = SliceRequest.from_state
        self.applied = 0
        self.stale = 0
        self.behind_state = 0
        self.settled_stale = 0
        win.controller.sliceResult.connect(self._on_result)

    def _on_result(self, result) -> None:
        self.applied += 1
        if result.request != self.win.controller.slices.current:
            self.stale += 1
        elif result.request != self.request_of(self.win.state):
            self.behind_state += 1

    def check_settled(self) -> bool:
        """The settled view shows the state's frame: the final result and the SR panel's image."""
        ws = self.win.workspace
        last = ws.last_final
        ok = (
            last is not None
            and last.request == self.request_of(self.win.state)
            and ws.panels["sr"].layer is last.images.get("sr")
        )
        if not ok:
            self.settled_stale += 1
        return ok


def _wait(app, condition, timeout_s: float) -> bool:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout_s:
            return False
        app.processEvents()
        time.sleep(0.005)
    return True


def settle(app, win, watch: FrameWatch | None = None, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    """Wait until the window shows the final result of the state's request (then check it)."""
    from medsr_viewer.pipeline import SliceRequest

    app.processEvents()

    def done() -> bool:
        last = win.workspace.last_final
        return not win.loader.busy and last is not None and last.request == SliceRequest.from_state(win.state)

    if not _wait(app, done, timeout_s):
        raise TimeoutError(f"the window did not settle within {timeout_s:.0f} s")
    app.processEvents()
    if watch is not None:
        watch.check_settled()


def quiet(app, seconds: float = QUIET_S) -> None:
    """Let the event loop run with no input for ``seconds`` (timers fire, workers finish)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.01)


def open_volume(app, win, path: Path, cancel_with: Path | None = None) -> None:
    """Open ``path`` (first starting ``cancel_with``, which the second open cancels) and wait for it."""
    loaded = []
    slot = win.volumeLoaded.connect(lambda v: loaded.append(v))
    try:
        if cancel_with is not None:
            win.open_path(cancel_with)
            app.processEvents()
        win.open_path(path)
        if not _wait(app, lambda: bool(loaded) and not win.loader.busy, SETTLE_TIMEOUT_S):
            raise TimeoutError(f"{path} did not open within {SETTLE_TIMEOUT_S:.0f} s")
    finally:
        win.volumeLoaded.disconnect(slot)
    if loaded[-1].volume.source != Path(path):
        raise AssertionError(f"opened {loaded[-1].volume.source}, expected {path}")


def _wheel(win, rng: random.Random, zoom: bool) -> None:
    """A real QWheelEvent on a random panel's viewport that zooms or steps one slice, with or without
    Ctrl as the window's "Mouse wheel zooms" preference says."""
    from PySide6.QtCore import QPoint

    from medsr_viewer.synthetic_input import send_wheel

    panels = [p for p in win.workspace.all_panels() if p.isVisible()] or [win.workspace.panels["sr"]]
    viewport = rng.choice(panels).canvas.viewport()
    ctrl = zoom != win.act_wheel_zooms.isChecked()
    send_wheel(viewport, QPoint(viewport.width() // 2, viewport.height() // 2), rng.choice((120, -120)), ctrl)


def warm_up(app, win, volumes: list[Path], configs: list[tuple[str, float]], disagreement: bool) -> None:
    """Every volume x network x mode x plane once (and the disagreement map at each scale), so what
    is loaded or cached once (networks, compiled kernels for each image size) is in the baseline."""
    from medsr_viewer.state import MODES

    s = win.state
    for path in volumes:
        open_volume(app, win, Path(path))
        for model, scale in configs:
            s.model, s.scale = model, scale
            for mode in MODES:
                s.mode = mode
                for axis in (0, 1, 2):
                    s.axis = axis
                    settle(app, win)
    if disagreement:
        for scale in sorted({scale for _, scale in configs}):
            s.scale = scale
            shown = []
            slot = win.disagreement.resultShown.connect(shown.append)
            failed = win.disagreement.failedShown.connect(shown.append)
            win.disagreement.set_active(True)
            _wait(app, lambda got=shown: bool(got), SETTLE_TIMEOUT_S)
            win.disagreement.resultShown.disconnect(slot)
            win.disagreement.failedShown.disconnect(failed)
            win.disagreement.set_active(False)
    s.model, s.scale = configs[0]


def run_stress(
    app,
    win,
    volumes: list[Path],
    configs: list[tuple[str, float]],
    *,
    events: int = 1000,
    seed: int = 0,
    reopen_every: int = 200,
    config_every: int = 97,
    disagreement_every: int = 0,
) -> StressReport:
    """Drive ``win`` through ``events`` rapid events; reopen volumes and change (model, scale) on the way.

    ``configs`` are the (model, scale) pairs to cycle through (each must run: trained or bicubic).
    ``disagreement_every`` > 0 switches the model-disagreement map on and off that often.
    """
    rng = random.Random(seed)
    watch = FrameWatch(win)
    kinds: Counter[str] = Counter()
    t_wall = time.perf_counter()

    warm_up(app, win, volumes, configs, disagreement=disagreement_every > 0)
    for _ in range(WARMUP_EVENTS):
        win.state.slice = rng.randrange(max(win.state.n_slices, 1))
        app.processEvents()
    open_volume(app, win, Path(volumes[0]))
    settle(app, win)
    quiet(app)
    gc.collect()
    rss0, source = rss_bytes()
    peak = rss0
    watch.applied = watch.stale = watch.behind_state = watch.settled_stale = 0
    dropped0 = win.controller.slices.dropped

    busy_s = 0.0
    reopens = 0
    trace: list[float] = []
    config_i = 0
    for i in range(1, events + 1):
        t0 = time.perf_counter()
        r = rng.random()
        s = win.state
        if r < 0.40:
            _wheel(win, rng, zoom=False)
            kinds["wheel (slice)"] += 1
        elif r < 0.55:
            win.workspace.slider.setValue(rng.randrange(max(s.n_slices, 1)))
            kinds["slider"] += 1
        elif r < 0.70:
            _wheel(win, rng, zoom=True)
            kinds["wheel (zoom)"] += 1
        elif r < 0.82:
            link = win.workspace.link
            link.set_zoom(link.zoom * rng.choice((1.25, 0.8)))
            kinds["zoom key"] += 1
        elif r < 0.90:
            s.step_slice(rng.choice((-10, -1, 1, 10)))
            kinds["page key"] += 1
        elif r < 0.94:
            s.reset_view()
            kinds["fit view"] += 1
        elif r < 0.97:
            s.axis = rng.choice((0, 1, 2))
            kinds["plane"] += 1
        else:
            s.toggle_mode()
            kinds["mode"] += 1
        app.processEvents()
        busy_s += time.perf_counter() - t0

        if config_every and i % config_every == 0 and configs:
            config_i = (config_i + 1) % len(configs)
            t0 = time.perf_counter()
            s.model, s.scale = configs[config_i]
            app.processEvents()
            busy_s += time.perf_counter() - t0
            kinds["model/scale"] += 1
        if disagreement_every and i % disagreement_every == 0:
            t0 = time.perf_counter()
            win.disagreement.set_active(not win.disagreement.active)
            app.processEvents()
            busy_s += time.perf_counter() - t0
            kinds["disagreement map on/off"] += 1
        if reopen_every and i % reopen_every == 0:
            settle(app, win, watch)
            path = Path(volumes[(reopens + 1) % len(volumes)])
            other = Path(volumes[reopens % len(volumes)]) if reopens % 2 else None
            open_volume(app, win, path, cancel_with=other)
            reopens += 1
            kinds["volume reopen"] += 1
        if i % 100 == 0:
            now = rss_bytes()[0]
            peak = max(peak, now)
            trace.append(round(now / 2.0**20, 1))

    settle(app, win, watch)
    win.disagreement.set_active(False)
    open_volume(app, win, Path(volumes[0]))  # same point as the start: empties the result cache
    settle(app, win, watch)
    quiet(app)
    gc.collect()
    rss1, _ = rss_bytes()
    peak = max(peak, rss1)
    mb = 2.0**20
    return StressReport(
        events=events,
        seconds=round(busy_s, 3),
        events_per_s=round(events / busy_s, 1) if busy_s > 0 else 0.0,
        rss_start_mb=round(rss0 / mb, 1),
        rss_end_mb=round(rss1 / mb, 1),
        growth_mb=round((rss1 - rss0) / mb, 1),
        peak_mb=round(peak / mb, 1),
        stale_applied=watch.stale,
        settled_stale=watch.settled_stale,
        behind_state=watch.behind_state,
        results_applied=watch.applied,
        dropped=win.controller.slices.dropped - dropped0,
        reopens=reopens,
        rss_source=source,
        wall_s=round(time.perf_counter() - t_wall, 1),
        kinds=dict(kinds),
        rss_trace_mb=trace,
    )


def default_volumes() -> list[Path]:
    from engine.resources import sample_volume_path

    shared = Path(os.environ.get("MEDSR_SHARED_DATA", REPO.parent / "shared" / "data"))
    volumes = [sample_volume_path()]
    if (shared / SMALL_MRI).exists():
        volumes.append(shared / SMALL_MRI)
    return volumes


def default_configs() -> list[tuple[str, float]]:
    """Trained networks at their scales (as shipped), with bicubic as the one that always runs."""
    from medsr_viewer.model_cards import has_weights

    wanted = [("new_carn", 2.0), ("edsr", 2.0), ("new_carn", 3.0), ("edsr", 4.0)]
    return [(m, s) for m, s in wanted if has_weights(m, s)] + [("bicubic", 2.0)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("volumes", nargs="*", type=Path, help="volumes to cycle through (default: see above)")
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--reopen-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-curves", action="store_true", help="without the per-slice metric curves")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from medsr_viewer.main_window import MainWindow
    from medsr_viewer.settings import Settings
    from medsr_viewer.theme import apply_theme

    app = QApplication.instance() or QApplication(["medsr-stress"])
    apply_theme(app)
    win = MainWindow(Settings.throwaway(), dialogs=False, curves=not args.no_curves)
    win.resize(1600, 1000)
    win.show()
    volumes = args.volumes or default_volumes()
    report = run_stress(
        app,
        win,
        volumes,
        default_configs(),
        events=args.events,
        seed=args.seed,
        reopen_every=args.reopen_every,
        disagreement_every=150,
    )
    win.close()
    if args.json:
        print(json.dumps({**asdict(report), "stale_frames": report.stale_frames}, indent=1))
    else:
        print(f"{'volumes':<28} {', '.join(Path(v).name for v in volumes)}")
        rows = [
            ("events", report.events),
            ("events/s (GUI thread)", report.events_per_s),
            ("RSS start / end MB", f"{report.rss_start_mb} / {report.rss_end_mb} ({report.rss_source})"),
            ("RSS growth MB", report.growth_mb),
            ("RSS peak MB", report.peak_mb),
            ("stale frames", f"{report.stale_frames} (not current {report.stale_applied}, behind the "
             f"state {report.behind_state}, settled {report.settled_stale})"),
            ("results applied / dropped", f"{report.results_applied} / {report.dropped}"),
            ("volume reopens", report.reopens),
            ("wall time s", report.wall_s),
        ]  # fmt: skip
        for k, v in rows + sorted(report.kinds.items()):
            print(f"{k:<28} {v}")
    ok = report.stale_frames == 0 and report.growth_mb < 100
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
