"""Turns state changes into slice and curve requests, runs them on workers, hands back current results.

Bursts of state events within one event-loop turn (a mode switch that also changes the scale) are
coalesced into one request. The interactive slice job has priority: the per-slice curve job pauses
while a slice is being computed. Recently seen slices are kept (within a memory budget), so going
back is instant.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

import torch
from PySide6.QtCore import QObject, QTimer, Signal

from medsr_viewer.model_cache import ModelCache
from medsr_viewer.pipeline import (
    CurveRequest,
    SliceRequest,
    SliceResult,
    centre_out_order,
    curve_job,
    slice_job,
)
from medsr_viewer.state import ViewerState
from medsr_viewer.workers import CancelToken, LatestRequest, WorkerPool

CACHE_BYTES = 256 * 2**20
CURVE_FLUSH_MS = 400
QUIET_S = 0.4  # background scoring waits until the user has not changed the view for this long


def leave_a_core_for_the_gui() -> int:
    """Cap torch's intra-op threads at (cores - 1) so inference never starves the GUI thread."""
    wanted = max(1, (os.cpu_count() or 2) - 1)
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)
    return torch.get_num_threads()


class ResultCache:
    """Final slice results by request, least recently used first out, within a byte budget."""

    def __init__(self, budget: int = CACHE_BYTES):
        self.budget = budget
        self._items: OrderedDict[SliceRequest, tuple[SliceResult, int]] = OrderedDict()
        self._bytes = 0

    def get(self, request: SliceRequest) -> SliceResult | None:
        item = self._items.get(request)
        if item is None:
            return None
        self._items.move_to_end(request)
        return item[0]

    def put(self, result: SliceResult) -> None:
        size = sum(l.image.nbytes for l in result.images.values()) + sum(
            l.image.nbytes for l in result.errors.values()
        )
        if size > self.budget or result.request in self._items:
            return
        self._items[result.request] = (result, size)
        self._bytes += size
        while self._bytes > self.budget:
            _, (_, old) = self._items.popitem(last=False)
            self._bytes -= old

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


class ComparisonController(QObject):
    """Owns the workers that compute what the panels and the per-slice plot show."""

    sliceResult = Signal(object)  # SliceResult of the current request (preview, then final)
    sliceFailed = Signal(object, str)  # (request, message) for the current request
    curvesReset = Signal(object)  # CurveRequest now being computed (None: nothing to plot)
    curvePoints = Signal(object)  # list[CurvePoint]
    curvesFinished = Signal(object)  # CurveRequest
    srShown = Signal(object)  # the first final SliceResult of each request

    def __init__(self, state: ViewerState, parent: QObject | None = None, curves: bool = True):
        super().__init__(parent)
        self.state = state
        leave_a_core_for_the_gui()
        self.models = ModelCache()
        self.slice_pool = WorkerPool(1, "medsr-slices")
        self.curve_pool = WorkerPool(1, "medsr-curves")
        self.slices = LatestRequest(self.slice_pool, self._make_slice_job, "slice", self)
        self.curves = LatestRequest(self.curve_pool, self._make_curve_job, "curves", self)
        self.slices.applied.connect(self._on_slice_item)
        self.slices.failed.connect(self._on_slice_failed)
        self.curves.applied.connect(self._on_curve_point)
        self.curves.failed.connect(lambda req, exc: self._on_curves_done(req))
        self.curves.finished.connect(lambda req, _value: self._on_curves_done(req))
        self.curves_enabled = curves
        self.cache = ResultCache()
        self._pending_points: list = []
        self._flush = QTimer(self, singleShot=True, interval=CURVE_FLUSH_MS, timeout=self._flush_points)
        self._schedule = QTimer(self, singleShot=True, interval=0, timeout=self.update_requests)
        self.submitted_at: dict[SliceRequest, float] = {}
        self.last_interaction = time.monotonic()
        self.last_latency_ms: float | None = None
        ev = state.events
        for event in (ev.volume, ev.axis, ev.slice, ev.model, ev.scale, ev.device, ev.mode, ev.blur):
            event.connect(lambda _value: self.schedule())
        ev.volume.connect(lambda _v: self.cache.clear())
        ev.model.connect(lambda _v: self.models.forget_failures())

    # --- requests ----------------------------------------------------------------------------
    def schedule(self) -> None:
        """Recompute after the current burst of state events (next event-loop turn)."""
        if not self._schedule.isActive():
            self._schedule.start()

    def update_requests(self, force: bool = False) -> None:
        request = SliceRequest.from_state(self.state)
        if request is None:
            return
        self.last_interaction = time.monotonic()
        cached = None if force else self.cache.get(request)
        if cached is not None and request != self.slices.current:
            self.slices.adopt(request)
            self.last_latency_ms = None  # nothing was computed
            self.sliceResult.emit(cached)
            self.srShown.emit(cached)
        elif self.slices.submit(request, force=force):
            self.submitted_at = {request: time.perf_counter()}  # only the current one can be applied
        self.update_curves(request.curve, force=force)

    def update_curves(self, request: CurveRequest, force: bool = False) -> None:
        if not self.curves_enabled:
            return
        if request == self.curves.current and not force:
            return
        self._pending_points.clear()
        self.curves.submit(request, force=force)
        self.curvesReset.emit(request)

    def refresh(self) -> None:
        """Recompute everything (after weights appeared or a device change)."""
        self.models.forget_failures()
        self.cache.clear()
        self.update_requests(force=True)

    def shutdown(self) -> None:
        self.slices.reset()
        self.curves.reset()
        self.slice_pool.wait(5000)
        self.curve_pool.wait(5000)

    # --- jobs (run on pool threads) ----------------------------------------------------------
    def _make_slice_job(self, request: SliceRequest):
        loaded = self.state.loaded
        models = self.models

        def job(token: CancelToken):
            if loaded is None or loaded.volume_id != request.volume_id:
                return None
            return slice_job(request, loaded, models, token)

        return job

    def _make_curve_job(self, request: CurveRequest):
        loaded = self.state.loaded
        models = self.models
        busy = self.slices.busy
        start = self.state.slice

        def pause(token: CancelToken) -> None:
            """Let the slice being looked at (and the GUI) have the CPU first."""
            waited = 0.0
            while (
                not token()
                and waited < 5.0
                and (busy.is_set() or time.monotonic() - self.last_interaction < QUIET_S)
            ):
                time.sleep(0.02)
                waited += 0.02

        def job(token: CancelToken):
            if loaded is None or loaded.volume_id != request.volume_id:
                return None
            n = loaded.volume.shape[request.axis]
            yield from curve_job(
                request,
                loaded,
                models,
                token,
                pause=lambda: pause(token),
                order=centre_out_order(n, min(start, n - 1)),
            )
            return request

        return job

    # --- results (GUI thread) ----------------------------------------------------------------
    def _on_slice_item(self, result: SliceResult) -> None:
        if result.final:
            t0 = self.submitted_at.pop(result.request, None)
            if t0 is not None:
                self.last_latency_ms = (time.perf_counter() - t0) * 1000.0
            self.cache.put(result)
        if self._schedule.isActive():  # the state moved on this turn: make its request before painting
            self._schedule.stop()
            self.update_requests()
            if result.request != self.slices.current:
                self.slices.dropped += 1
                return
        self.sliceResult.emit(result)
        if result.final:
            self.srShown.emit(result)

    def _on_slice_failed(self, request: SliceRequest, exc: BaseException) -> None:
        self.sliceFailed.emit(request, str(exc) or type(exc).__name__)

    def _on_curve_point(self, point) -> None:
        self._pending_points.append(point)
        if not self._flush.isActive():
            self._flush.start()

    def _flush_points(self) -> None:
        if self._pending_points:
            points, self._pending_points = self._pending_points, []
            self.curvePoints.emit(points)

    def _on_curves_done(self, request: CurveRequest) -> None:
        self._flush.stop()
        self._flush_points()
        self.curvesFinished.emit(request)
