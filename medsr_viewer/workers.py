"""Long work off the GUI thread: generator jobs in a QRunnable whose signals live on a QObject.

A job is ``job(token) -> iterator or value``. Each item an iterator yields is sent to the GUI thread
(``Progress`` items through ``progress``, anything else through ``yielded``); its return value goes
through ``finished``. The token is checked between items, so cancelling stops the job at the next
step (superqt's ``GeneratorWorker`` idea, written small). ``LatestRequest`` keeps one request current
and drops results of any other (napari's layer slicer).
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
import warnings
import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from engine.errors import Cancelled
from engine.inference import Progress

log = logging.getLogger(__name__)


class CancelToken:
    """A flag the GUI sets and a job polls; calling it answers "should I stop?"."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._report: Callable[[Progress], None] | None = None

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def report(self, fraction: float, message: str = "") -> None:
        """Progress from a blocking call that takes a callback (e.g. ``load_volume(progress=...)``)."""
        if self._report is not None:
            self._report(Progress(int(round(fraction * 1000)), 1000, message))


class WorkerSignals(QObject):
    """Signals of one worker; they live in the GUI thread, so slots run there (queued)."""

    progress = Signal(object)  # Progress
    yielded = Signal(object)  # any other item the job yields
    finished = Signal(object)  # the job's return value
    failed = Signal(object)  # the exception
    cancelled = Signal()
    done = Signal()  # after any of finished / failed / cancelled


Job = Callable[[CancelToken], Any]


class GeneratorWorker(QRunnable):
    """Run a job on a pool thread, forwarding what it yields; stop between steps once cancelled."""

    def __init__(self, job: Job, name: str = "job"):
        super().__init__()
        self.setAutoDelete(False)  # Python keeps the reference; Qt must not delete it under us
        self.job = job
        self.name = name
        self.token = CancelToken()
        self.signals = WorkerSignals()
        self.token._report = self.signals.progress.emit

    def cancel(self) -> None:
        self.token.cancel()

    def run(self) -> None:  # runs on a pool thread
        try:
            self._run()
        except RuntimeError as exc:  # the receiving side was destroyed (application exit): nobody to tell
            log.debug("%s: result not delivered (%s)", self.name, exc)

    def _run(self) -> None:
        sig = self.signals
        try:
            if self.token.cancelled:
                raise Cancelled()
            out = self.job(self.token)
            if isinstance(out, Iterator):
                out = self._drive(out)
            if self.token.cancelled:
                raise Cancelled()
            sig.finished.emit(out)
        except Cancelled:
            sig.cancelled.emit()
        except Exception as exc:  # reported to the GUI, which shows it; never lost
            if isinstance(exc, RuntimeError) and "Signal source has been deleted" in str(exc):
                raise
            log.debug("%s failed:\n%s", self.name, traceback.format_exc())
            sig.failed.emit(exc)
        finally:
            sig.done.emit()

    def _drive(self, gen: Iterator) -> Any:
        while True:
            if self.token.cancelled:
                gen.close()
                raise Cancelled()
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            if isinstance(item, Progress):
                self.signals.progress.emit(item)
            else:
                self.signals.yielded.emit(item)


class _PoolSignals(QObject):
    released = Signal(object)  # a worker's key (its id), once its pool thread holds no reference to it


def _run_then_release(ref: weakref.ReferenceType, released: Signal, key: int) -> Callable[[], None]:
    """The pool thread's task: run the worker through a weak reference, drop it, say so.

    The GUI thread keeps the last reference, so a worker (and the QObject of its signals) is always
    destroyed on the GUI thread: destroying it on a pool thread deadlocks Qt's locks against the GIL.
    """

    def run() -> None:
        worker = ref()
        if worker is not None:
            worker.run()
            del worker
        try:
            released.emit(key)
        except RuntimeError:  # the pool is gone (application exit)
            pass

    return run


GIL_SWITCH_INTERVAL_S = 0.001  # Python's default is 5 ms


def share_the_interpreter_promptly() -> None:
    """Workers run Python between their torch calls; with the default 5 ms GIL switch interval a worker
    can keep the GUI thread waiting 5 ms for every frame it paints (measured: the zoom's bicubic frame
    came 6-8 ms after the wheel event was handled while a render ran). 1 ms keeps that wait short."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


class WorkerPool:
    """A QThreadPool that keeps its running workers referenced until they are done."""

    def __init__(self, threads: int, name: str):
        share_the_interpreter_promptly()
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(threads)
        self.pool.setObjectName(name)
        self._active: dict[int, GeneratorWorker] = {}
        self._signals = _PoolSignals()
        self._signals.released.connect(self._release)

    def start(self, worker: GeneratorWorker) -> GeneratorWorker:
        key = id(worker)
        self._active[key] = worker
        # A callable, not the QRunnable: PySide's QThreadPool.start(runnable) keeps a reference to
        # every runnable it ever ran (with its job, and the volume the job holds) until the pool dies.
        self.pool.start(_run_then_release(weakref.ref(worker), self._signals.released, key))
        return worker

    def _release(self, key: int) -> None:
        """Forget a finished worker (GUI thread) and cut its connections: their lambdas hold the
        worker, a cycle through Qt that Python's garbage collector cannot see. ``released`` follows
        every signal of the worker from the same thread, so each has been delivered by now."""
        worker = self._active.pop(key, None)
        if worker is None:
            return
        s = worker.signals
        with warnings.catch_warnings():  # PySide warns when a signal has nothing to disconnect
            warnings.simplefilter("ignore", RuntimeWarning)
            for signal in (s.progress, s.yielded, s.finished, s.failed, s.cancelled, s.done):
                signal.disconnect()

    @property
    def active(self) -> int:
        return len(self._active)

    def cancel_all(self) -> None:
        for w in list(self._active.values()):
            w.cancel()

    def wait(self, msecs: int = 10_000) -> bool:
        return self.pool.waitForDone(msecs)


class LatestRequest(QObject):
    """Run a job per request; only results of the latest request reach ``applied``.

    ``submit`` cancels the previous job. A result whose request is no longer current is dropped
    (counted in ``dropped``) even if its job finished before it could be cancelled.
    """

    applied = Signal(object)  # an item yielded by the current request's job
    progress = Signal(object)
    finished = Signal(object, object)  # (request, the job's return value)
    failed = Signal(object, object)  # (request, exception)
    busy_changed = Signal(bool)

    def __init__(self, pool: WorkerPool, make_job: Callable[[Hashable], Job], name: str, parent=None):
        super().__init__(parent)
        self._pool = pool
        self._make_job = make_job
        self._name = name
        self.current: Hashable | None = None
        self._worker: GeneratorWorker | None = None
        self.dropped = 0
        self.busy = threading.Event()  # set while the current job runs: background work may yield to it

    def submit(self, request: Hashable, force: bool = False) -> bool:
        """Start ``request`` unless it is already the current one (``force`` recomputes it)."""
        if request == self.current and not force:
            return False
        self.cancel()
        self.current = request
        if request is None:
            return False
        worker = GeneratorWorker(self._make_job(request), f"{self._name} {request}")
        sig = worker.signals
        sig.yielded.connect(lambda item, r=request: self._on_item(r, item))
        sig.progress.connect(lambda p, r=request: self.progress.emit(p) if r == self.current else None)
        sig.failed.connect(lambda exc, r=request: self._on_failed(r, exc))
        sig.finished.connect(
            lambda value, r=request: self.finished.emit(r, value) if r == self.current else None
        )
        sig.done.connect(lambda w=worker: self._on_done(w))
        self._worker = worker
        self.busy.set()
        self.busy_changed.emit(True)
        self._pool.start(worker)
        return True

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self.busy.clear()

    def adopt(self, request: Hashable) -> None:
        """Make ``request`` current without running it (its result is already at hand)."""
        self.cancel()
        self.current = request

    @property
    def running(self) -> bool:
        return self._worker is not None

    def reset(self) -> None:
        """Forget the current request (the next submit of the same request recomputes)."""
        self.cancel()
        self.current = None

    def _on_item(self, request: Hashable, item: Any) -> None:
        if request != self.current:
            self.dropped += 1
            return
        self.applied.emit(item)

    def _on_failed(self, request: Hashable, exc: BaseException) -> None:
        if request == self.current:
            self.failed.emit(request, exc)
        else:
            self.dropped += 1

    def _on_done(self, worker: GeneratorWorker) -> None:
        if worker is self._worker:
            self._worker = None
            self.busy.clear()
            self.busy_changed.emit(False)
