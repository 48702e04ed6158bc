"""The real window under a burst of input: a short version of ``bench/stress.py``.

200 rapid wheel, slider, zoom, plane and mode events, model and scale changes, the disagreement map
switched on and off, and four volume reopens: no stale frame is painted, the view settles on the
state's frame every time, and resident memory grows by less than 100 MB.
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QApplication

from bench.stress import run_stress

MAX_GROWTH_MB = 100
MAX_SECONDS = 60


def test_rapid_events_and_reopens_leave_no_stale_frame_and_no_growth(
    qtbot, make_window, cspine, carn_weights, shared_data
):
    win = make_window()
    win.use_weights(carn_weights)
    volumes = [cspine, shared_data / "msk_spine" / "sct_t2w_cspine_crop.nii.gz"]
    configs = [("new_carn", 2.0), ("bicubic", 2.0), ("bicubic", 3.0)]
    t0 = time.monotonic()
    report = run_stress(
        QApplication.instance(),
        win,
        volumes,
        configs,
        events=200,
        reopen_every=50,
        config_every=30,
        disagreement_every=70,
    )
    assert report.events == 200 and report.reopens == 4
    assert report.stale_frames == 0, report
    assert report.results_applied > 0 and report.events_per_s > 0
    assert report.growth_mb < MAX_GROWTH_MB, report
    assert time.monotonic() - t0 < MAX_SECONDS
    assert win.workspace.last_final is not None and win.state.volume.source == volumes[0]
