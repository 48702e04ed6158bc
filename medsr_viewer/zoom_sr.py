"""Scroll-to-zoom SR: while the view is zoomed, the SR panel shows the visible region super-resolved at
exactly the display scale by the arbitrary-scale network, and the bicubic panel shows bicubic of the
same region at the same scale, so the two still compare like for like.

Encode once, query often (``engine.zoom.ZoomEngine``): a slice is encoded once on a worker (then its
neighbours, while nothing else waits), and a view change only renders the visible region plus a small
halo. Every view change shows bicubic of the new region at once (about a millisecond, on the GUI
thread) and asks a worker for SR; a render whose view is no longer current never reaches the screen
(``LatestRequest``). Outside the network's trained range the panel says what it shows instead.

Active while the SR panel runs an arbitrary-scale network (meta_srgan, not its bicubic fallback) and
the view is zoomed in or out from fitting the slice. At the fit the panels show the comparison's own
images: the ones the error maps and scores are computed from.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Signal

from engine.errors import ModelError
from engine.models import get_card
from engine.zoom import ZoomEngine, ZoomResult, range_source, windowed
from medsr_viewer.comparison import ComparisonController
from medsr_viewer.model_cache import BICUBIC
from medsr_viewer.panels import SlicePanel, ViewLink, two_line
from medsr_viewer.pipeline import Layer, SliceRequest, SliceResult, prepare_inputs
from medsr_viewer.slicing import display_slice
from medsr_viewer.state import LoadedVolume, ViewerState
from medsr_viewer.workers import CancelToken, LatestRequest, WorkerPool
from medsr_viewer.zoom_region import HALO_PX, ZoomRegion, visible_region

log = logging.getLogger(__name__)

FIT_TOLERANCE = 1e-3  # a view within this of the fit is the fit
MAX_ENCODED = 4  # slices kept encoded (the current one and its neighbours)...
ENCODED_BYTES = 400 * 2**20  # ...within this budget (about 50 MB per 256^2 slice with meta_srgan)
CORES = os.cpu_count() or 1  # threads for the encode of the slice being looked at (prefetch: one)
PREFETCH = 2  # neighbouring slices encoded after the current one, in the scrolling direction first
PREFETCH_QUIET_S = 0.3  # prefetching waits until the view has not changed for this long
OVERLAY_Z = 1.0  # above the panel's own image, below the crosshair


@dataclass(frozen=True)
class ZoomView:
    """One render request: the slice (its SR request: input, network, device) and the region."""

    key: SliceRequest
    region: ZoomRegion


@dataclass(frozen=True)
class Encoded:
    """A slice whose features are cached (``ms``: how long its encode took, None if it already was)."""

    key: SliceRequest
    ms: float | None


def network_input(loaded: LoadedVolume, request: SliceRequest) -> np.ndarray:
    """What the SR panel upscales for ``request``: the simulated LR (Simulate) or the slice (Enhance)."""
    image = display_slice(loaded.volume.data, request.axis, request.index)
    return prepare_inputs(image, request)[0]


def neighbours(index: int, n: int, ahead: int, count: int) -> list[int]:
    """Up to ``count`` slices around ``index``, nearest first, the scrolling direction (``ahead``) first."""
    out: list[int] = []
    for d in range(1, n):
        for i in (index + ahead * d, index - ahead * d):
            if 0 <= i < n and len(out) < count:
                out.append(i)
    return out


def zoomable(model: str) -> bool:
    """An SR network that renders any scale (bicubic serves any scale too, but has nothing to encode)."""
    return model != BICUBIC and get_card(model).arbitrary_scale


def on_screen(note: str) -> str:
    """The engine's note as the panel shows it ("SR x4" reads "SR ×4")."""
    return note.replace(" x", " ×")


def _model_key(request: SliceRequest) -> tuple:
    return request.model, request.device, request.weights


def _overlay(panel: SlicePanel, z: float) -> pg.ImageItem:
    item = pg.ImageItem(axisOrder="row-major")
    item.setZValue(z)
    item.setVisible(False)
    panel.vb.addItem(item, ignoreBounds=True)
    return item


class ZoomSR(QObject):
    """Owns the zoom engine, its workers and the overlays on the SR and bicubic panels."""

    placeholderShown = Signal(object)  # ZoomView: bicubic of the new view is on screen
    srShown = Signal(object)  # ZoomResult: SR of the current view is on screen
    encoded = Signal(object)  # Encoded
    failed = Signal(str)

    def __init__(
        self,
        state: ViewerState,
        controller: ComparisonController,
        sr_panel: SlicePanel,
        bicubic_panel: SlicePanel,
        link: ViewLink,
        restore_titles: Callable[[], None],
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.state = state
        self.controller = controller
        self.sr_panel = sr_panel
        self.bicubic_panel = bicubic_panel
        self.link = link
        self._restore_titles = restore_titles
        self.enabled = True
        self.encode_pool = WorkerPool(1, "medsr-zoom-encode")
        self.render_pool = WorkerPool(1, "medsr-zoom-render")
        self.encodes = LatestRequest(self.encode_pool, self._make_encode_job, "zoom encode", self)
        self.renders = LatestRequest(self.render_pool, self._make_render_job, "zoom render", self)
        self.encodes.applied.connect(self._on_encoded)
        self.encodes.failed.connect(lambda _key, exc: self._on_failed(exc))
        self.renders.applied.connect(self._on_rendered)
        self.renders.failed.connect(self._on_render_failed)

        self._lock = threading.Lock()  # the engine is made on the encode worker, read on the GUI thread
        self._engine: ZoomEngine | None = None
        self._engine_model: tuple | None = None
        self._runs: dict[tuple, bool] = {}  # (model, device, weights) -> ran in the SR panel (no fallback)
        self._input: tuple[SliceRequest, Layer] | None = None  # the SR panel's input, current slice
        self.view: ZoomView | None = None  # the latest view: bicubic on screen, SR on screen or coming
        self.shown: ZoomResult | None = None  # the SR on screen, and its view
        self.shown_view: ZoomView | None = None
        self._ahead = 1  # the last slice step's direction: prefetch that way first
        self._last_change = time.monotonic()

        self._values: dict[pg.ImageItem, np.ndarray] = {}  # what each overlay shows, original units
        self.sr_placeholder = _overlay(sr_panel, OVERLAY_Z)
        self.sr_item = _overlay(sr_panel, OVERLAY_Z + 0.5)  # over the placeholder: a pan keeps it
        self.bicubic_item = _overlay(bicubic_panel, OVERLAY_Z)

        sr_panel.vb.sigRangeChanged.connect(lambda *_: self.update_view())
        sr_panel.vb.sigResized.connect(lambda *_: self.update_view())
        controller.sliceResult.connect(self._on_slice_result)
        ev = state.events
        ev.volume.connect(lambda _v: self._volume_changed())
        ev.slice.connect(self._slice_changed)
        ev.window.connect(lambda wl: self._set_levels((wl.low, wl.high)))
        for e in (ev.axis, ev.mode, ev.model, ev.scale, ev.blur, ev.device):
            e.connect(lambda _v: self.update_view())

    # --- what is shown -----------------------------------------------------------------------
    @property
    def engine(self) -> ZoomEngine | None:
        with self._lock:
            return self._engine

    @property
    def active(self) -> bool:
        return self.view is not None

    def set_enabled(self, on: bool) -> None:
        """Switch the feature (benchmarks compare with it off: the fixed-scale SR stretched)."""
        self.enabled = bool(on)
        self.update_view()

    def update_view(self) -> None:
        """Show bicubic of what the SR panel now shows at the display scale, and ask for its SR."""
        current = self._current_input()
        region = self._region(current[1]) if current is not None else None
        if current is None or region is None:
            self._deactivate()
            return
        request, layer = current
        view = ZoomView(request, region)
        if view == self.view:
            return
        self._last_change = self.controller.last_interaction = time.monotonic()  # background work waits
        if self._shown_covers(view):
            return
        self.view = view
        self._show_placeholder(view, layer.image)
        # The panel under the wheel shows its bicubic frame now, before the SR render starts on a worker
        # (which would compete with this paint for the interpreter); the other panels follow as usual.
        self.sr_panel.canvas.viewport().repaint()
        self._request_sr(view)

    def _current_input(self) -> tuple[SliceRequest, Layer] | None:
        """The SR panel's input while zoom SR applies (see the module docstring), else None."""
        request = SliceRequest.from_state(self.state)
        if not self.enabled or request is None or self._input is None or self._input[0] != request:
            return None
        if not zoomable(request.model) or not self._runs.get(_model_key(request)):
            return None
        zoom = self.link.zoom_of(self.sr_panel.vb)
        if zoom is None or abs(zoom - 1.0) < FIT_TOLERANCE:
            return None
        return self._input

    def _region(self, layer: Layer, halo: int = HALO_PX) -> ZoomRegion | None:
        vb = self.sr_panel.vb
        (x0, x1), (y0, y1) = vb.viewRange()
        width_px = vb.width() * self.sr_panel.canvas.devicePixelRatioF()  # device pixels: HiDPI is sharp
        if width_px < 2 or x1 <= x0:
            return None
        view_mm = (x0, y0, x1, y1)
        return visible_region(view_mm, (x1 - x0) / width_px, layer.image.shape, layer.extent_mm, halo)

    def _shown_covers(self, view: ZoomView) -> bool:
        """The SR on screen is current and already covers what ``view`` shows (a pan within the halo)."""
        if self.shown_view is None or self.shown_view != self.view or self.shown_view.key != view.key:
            return False
        seen = self._region(self._input[1], halo=0) if self._input is not None else None
        return seen is not None and self.shown_view.region.contains(seen)

    def _show_placeholder(self, view: ZoomView, image: np.ndarray) -> None:
        region = view.region
        wl = self.state.window
        bicubic = ZoomEngine.placeholder(image, region.scale, region.box, levels=(wl.low, wl.high))
        # both panels paint one uint8 image, windowed in the same pass as the bicubic: pyqtgraph's
        # float path (a NaN scan and a rescale per panel) was a third of the placeholder's time
        self._place(self.sr_placeholder, bicubic.image, region, bicubic.shown)
        self._place(self.bicubic_item, bicubic.image, region, bicubic.shown)
        self._cover_base_images(True)
        if self.shown_view is not None and (
            self.shown_view.key != view.key or self.shown_view.region.scale != region.scale
        ):
            self.sr_item.setVisible(False)  # SR at another scale or of another slice: not this view's
            self.shown = self.shown_view = None
        self._label(view, ready=False)
        self.placeholderShown.emit(view)

    def _place(self, item: pg.ImageItem, image: np.ndarray, region: ZoomRegion,
               shown: np.ndarray | None = None) -> None:
        """Put ``image`` (original units) on ``item``; ``shown``: the same already windowed to uint8."""
        wl = self.state.window
        self._values[item] = image
        if shown is not None:
            item.setImage(shown, levels=(0, 255))
        else:
            item.setImage(image, levels=(wl.low, wl.high))
        item.setRect(QRectF(*region.rect_mm))
        item.setVisible(True)

    def values(self, item: pg.ImageItem) -> np.ndarray | None:
        """What ``item`` shows, in original units (its own image may be a windowed uint8 copy)."""
        return self._values.get(item)

    def _cover_base_images(self, covered: bool) -> None:
        """The overlays cover every visible pixel of the panels' own images (the region is the visible
        part of the slice plus a halo): hidden under them, those are not drawn again at every frame."""
        for panel in (self.sr_panel, self.bicubic_panel):
            if panel.image.isVisible() == covered:
                panel.image.setVisible(not covered)

    def _set_levels(self, levels: tuple[float, float]) -> None:
        for item in (self.sr_placeholder, self.sr_item, self.bicubic_item):
            if item.image is None:
                continue
            if item.image.dtype == np.uint8:  # a windowed copy: window the values again
                item.setImage(windowed(self._values[item], levels), levels=(0, 255))
            else:
                item.setLevels(levels)

    def _deactivate(self) -> None:
        self.renders.reset()  # a render still running is dropped when it arrives
        if self.view is None and self.shown_view is None:
            return
        self.view = self.shown = self.shown_view = None
        for item in (self.sr_placeholder, self.sr_item, self.bicubic_item):
            item.setVisible(False)
        self._cover_base_images(False)
        self.sr_panel.set_warning("")
        self._restore_titles()

    def _label(self, view: ZoomView, ready: bool) -> None:
        """Panel titles say what the overlays are: network and display scale, or bicubic and why."""
        s = view.region.scale
        model = view.key.model
        sr_range = get_card(model).scale_range or (s, s)
        source, note = range_source(s, sr_range)
        if source == "sr":
            headline, detail = f"SR — not acquired · {model} ×{s:.3g}", "display scale · "
        elif source == "sr+bicubic":
            hi = sr_range[1]
            headline = f"SR — not acquired · {model} ×{hi:g} + bicubic ×{s / hi:.3g}"
            detail = f"display scale ×{s:.3g} · "
        else:
            headline, detail = f"Bicubic ×{s:.3g} (display scale)", f"below {model}'s range · "
        engine = self.engine
        sha = engine.upscaler.weights_sha256[:12] if engine is not None else ""
        detail += f"sha256 {sha}" if ready and sha else "bicubic until SR is ready"
        tip = (
            f"The visible region re-rendered at the display scale ×{s:.4g} by {model}"
            f"{f' ({on_screen(note)})' if note else ''}. Computed, not acquired: not for primary diagnosis."
        )
        self.sr_panel.set_title(two_line(headline, detail), tip)
        self.sr_panel.set_warning(on_screen(note))
        self.bicubic_panel.set_title(two_line(f"Bicubic ×{s:.3g} (display scale)", "interpolated"))

    # --- requests ----------------------------------------------------------------------------
    def _request_sr(self, view: ZoomView) -> None:
        with self._lock:
            engine, model = self._engine, self._engine_model
        if engine is not None and model == _model_key(view.key) and view.key in engine:
            self.renders.submit(view)
            return
        self.renders.reset()
        if self.encodes.current != view.key or not self.encodes.running:
            self.encodes.submit(view.key, force=True)  # forced: the engine may have evicted it since

    def _make_render_job(self, view: ZoomView):
        engine = self.engine

        def job(_token: CancelToken) -> Iterator[ZoomResult]:
            yield engine.render(view.key, view.region.scale, view.region.box)

        return job

    def _make_encode_job(self, key: SliceRequest):
        loaded = self.state.loaded
        ahead = self._ahead
        waits = (self.renders.busy, self.controller.slices.busy)

        def quiet(token: CancelToken) -> None:
            """Prefetching goes last: after the render and the slice being looked at."""
            while not token() and (
                any(e.is_set() for e in waits) or time.monotonic() - self._last_change < PREFETCH_QUIET_S
            ):
                time.sleep(0.01)

        def job(token: CancelToken) -> Iterator[Encoded]:
            if loaded is None or loaded.volume_id != key.volume_id:
                return
            engine = self._engine_for(key)
            if key in engine:
                yield Encoded(key, None)
            else:
                # every core: the user waits for this one (the GUI thread needs little meanwhile)
                entry = engine.encode(key, network_input(loaded, key), loaded.normalizer, threads=CORES)
                engine.capacity = max(1, min(MAX_ENCODED, ENCODED_BYTES // max(entry.nbytes, 1)))
                yield Encoded(key, entry.encode_ms)
            n = loaded.volume.shape[key.axis]
            for index in neighbours(key.index, n, ahead, min(PREFETCH, engine.capacity - 1)):
                quiet(token)
                other = replace(key, index=index)
                if token() or other in engine:
                    continue
                try:
                    entry = engine.encode(other, network_input(loaded, other), loaded.normalizer)
                except ModelError:  # e.g. a slice too small to simulate: nothing to prefetch
                    continue
                yield Encoded(other, entry.encode_ms)

        return job

    def _engine_for(self, key: SliceRequest) -> ZoomEngine:
        """The zoom engine of the SR panel's network (worker thread; loads nothing the slice job has not)."""
        model = _model_key(key)
        with self._lock:
            if self._engine is not None and self._engine_model == model:
                return self._engine
        resolved = self.controller.models.resolve(key.model, key.scale, key.device, key.weights)
        if resolved.fallback:
            raise ModelError(resolved.notice)
        engine = ZoomEngine(resolved.upscaler, capacity=MAX_ENCODED)
        with self._lock:
            self._engine, self._engine_model = engine, model
        return engine

    # --- results (GUI thread) ----------------------------------------------------------------
    def _on_slice_result(self, result: SliceResult) -> None:
        request = result.request
        if request != self.controller.slices.current:
            return
        layer = result.images.get("lr") or result.images.get("input")
        if layer is not None:
            self._input = (request, layer)
        if result.final and result.sr is not None:
            self._runs[_model_key(request)] = not result.sr.fallback
        self.update_view()
        if self.view is not None:  # the workspace has just titled the panels for the whole slice
            self._label(self.view, ready=self.shown_view == self.view)

    def _on_encoded(self, item: Encoded) -> None:
        self.encoded.emit(item)
        view = self.view
        if view is not None and item.key == view.key and self.renders.current != view:
            self.renders.submit(view)

    def _on_rendered(self, result: ZoomResult) -> None:
        view = self.renders.current
        if view is None or view != self.view:  # LatestRequest already drops other views: belt and braces
            return
        self._place(self.sr_item, result.image, view.region)
        self.sr_placeholder.setVisible(False)
        self.shown, self.shown_view = result, view
        self._label(view, ready=True)
        self.srShown.emit(result)

    def _on_render_failed(self, view: ZoomView, exc: BaseException) -> None:
        if isinstance(exc, LookupError):  # evicted by prefetching meanwhile: encode it again
            self.renders.reset()
            self._request_sr(view)
            return
        self._on_failed(exc)

    def _on_failed(self, exc: BaseException) -> None:
        """Zoom SR could not run: the bicubic on screen stays, and the panel says so."""
        message = f"zoom SR unavailable: {exc}"
        log.warning(message)
        self.sr_panel.set_warning(message + " — bicubic shown")
        self.failed.emit(message)

    # --- state events ------------------------------------------------------------------------
    def _volume_changed(self) -> None:
        self._input = None
        engine = self.engine
        if engine is not None:
            engine.clear()  # features of the previous volume: up to a few hundred MB
        self.update_view()

    def _slice_changed(self, index: int) -> None:
        previous = self._input[0].index if self._input is not None else index
        if index != previous:
            self._ahead = 1 if index > previous else -1
        self.update_view()

    def shutdown(self) -> None:
        self.encodes.reset()
        self.renders.reset()
        self.encode_pool.wait(5000)
        self.render_pool.wait(5000)
