"""Workers: generator jobs report progress, stop when cancelled, and stale results never apply."""

from __future__ import annotations

import threading
import time

from engine.inference import Progress
from medsr_viewer.workers import GeneratorWorker, LatestRequest, WorkerPool


def test_generator_worker_reports_items_progress_and_return(qtbot):
    pool = WorkerPool(1, "test")

    def job(token):
        yield Progress(1, 2, "half")
        yield "item"
        return 42

    worker = GeneratorWorker(job)
    items, progress = [], []
    worker.signals.yielded.connect(items.append)
    worker.signals.progress.connect(progress.append)
    with qtbot.waitSignal(worker.signals.finished, timeout=5000) as done:
        pool.start(worker)
    assert done.args == [42] and items == ["item"] and progress[0].fraction == 0.5
    pool.wait()


def test_cancel_stops_a_running_generator(qtbot):
    pool = WorkerPool(1, "test")
    started = threading.Event()
    steps = []

    def job(token):
        started.set()
        for i in range(1000):
            steps.append(i)
            time.sleep(0.005)
            yield Progress(i, 1000)
        return "finished"

    worker = GeneratorWorker(job)
    finished = []
    worker.signals.finished.connect(finished.append)
    with qtbot.waitSignal(worker.signals.cancelled, timeout=5000):
        pool.start(worker)
        assert started.wait(5)
        worker.cancel()
    assert pool.wait(5000)
    assert finished == [] and len(steps) < 1000


def test_blocking_job_reports_progress_through_the_token(qtbot):
    pool = WorkerPool(1, "test")
    worker = GeneratorWorker(lambda token: (token.report(0.25, "reading"), "value")[1])
    got = []
    worker.signals.progress.connect(got.append)
    with qtbot.waitSignal(worker.signals.finished, timeout=5000):
        pool.start(worker)
    assert got and got[0].fraction == 0.25 and got[0].message == "reading"


def test_latest_request_drops_stale_results(qtbot):
    pool = WorkerPool(2, "test")
    slow_yielded = threading.Event()

    def make_job(request):
        def job(token):
            yield f"result of {request}"
            if request == "slow":
                slow_yielded.set()

        return job

    latest = LatestRequest(pool, make_job, "test")
    applied = []
    latest.applied.connect(applied.append)
    latest.submit("slow")
    assert slow_yielded.wait(5)  # its result is queued for the GUI thread, not yet delivered
    latest.submit("fast")  # ... and now it is stale
    assert latest.submit("fast") is False  # already current: not recomputed
    qtbot.waitUntil(lambda: applied == ["result of fast"], timeout=5000)
    assert latest.dropped == 1
    assert applied == ["result of fast"]
    pool.wait()
