"""The model-disagreement map: several networks on the current slice and the per-pixel spread of
their outputs (standard deviation across networks, in the image's units), with a colour bar.

Where the networks agree they may all still be wrong; where they differ, at least one of them invents
detail the input does not determine. The map is a mode of the error row (View › Model disagreement):
the request is built on the GUI thread, computed on its own worker after the interactive slice, and
applied only while still current (``engine.disagreement.disagreement_map`` does the work).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from engine.disagreement import disagreement_map
from engine.errors import Cancelled, MedSRError
from engine.models import get_card
from medsr_viewer.comparison import ComparisonController
from medsr_viewer.model_cache import BICUBIC, ModelCache
from medsr_viewer.model_cards import has_weights, picker_names
from medsr_viewer.panels import SlicePanel, two_line
from medsr_viewer.pipeline import Layer, prepare_inputs, shared_error_max
from medsr_viewer.slicing import EDGE_LETTERS, SliceGeometry, display_slice
from medsr_viewer.state import SIMULATE, LoadedVolume, ViewerState
from medsr_viewer.workers import CancelToken, LatestRequest, WorkerPool
from medsr_viewer.workspace import Workspace, unit_of

MAX_NETWORKS = 4  # the default set: each network costs one SR of the slice
DEBOUNCE_MS = 150  # while scrolling, wait for the slice to settle before running several networks
WAIT_FOR_SLICE_S = 5.0  # the interactive slice job goes first
STALE_OPACITY = 0.35
COLORMAP = "viridis"  # not the error maps' inferno: a different quantity


def candidate_networks(scale: float, user_weights: dict[str, str] | None = None) -> list[str]:
    """Every network (not bicubic) that serves ``scale`` and has weights on disk, in picker order."""
    return [
        n
        for n in picker_names()
        if n != BICUBIC and get_card(n).serves(scale) and has_weights(n, scale, user_weights)
    ]


def default_networks(
    scale: float, user_weights: dict[str, str] | None = None, shown: str | None = None
) -> list[str]:
    """What the map compares unless the user picks: up to ``MAX_NETWORKS`` trained networks, the one
    in the SR panel (``shown``) first, then those with weights the user chose, then picker order."""
    names = candidate_networks(scale, user_weights)
    chosen = user_weights or {}
    names.sort(key=lambda n: (n != shown, n not in chosen))  # stable: picker order within each group
    return names[:MAX_NETWORKS]


@dataclass(frozen=True)
class DisagreementRequest:
    """Everything that decides one disagreement map: the slice, the input's degradation, the networks."""

    volume_id: int
    axis: int
    index: int
    scale: float
    mode: str
    blur: bool
    device: str
    networks: tuple[str, ...]
    weights: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_state(cls, state: ViewerState, networks: list[str]) -> DisagreementRequest | None:
        if state.loaded is None:
            return None
        chosen = tuple(networks)
        weights = tuple(sorted((n, w) for n, w in state.weights.items() if n in chosen))
        return cls(
            state.loaded.volume_id,
            state.axis,
            state.slice,
            state.scale,
            state.mode,
            state.blur,
            state.device,
            chosen,
            weights,
        )


@dataclass(frozen=True)
class DisagreementResult:
    """The spread map of one request, the networks it compares (labels with hashes) and those skipped."""

    request: DisagreementRequest
    spread: Layer
    labels: tuple[str, ...]
    skipped: tuple[str, ...]
    top: float  # top of the colour scale: 99.5th percentile of the spread
    ms: float


def disagreement_job(
    request: DisagreementRequest,
    loaded: LoadedVolume,
    models: ModelCache,
    cancel: Callable[[], bool] | None = None,
    wait: Callable[[], None] | None = None,
):
    """Generator job: run the request's networks on its slice and yield the spread map."""
    if wait is not None:
        wait()
    geometry = SliceGeometry.of(loaded.volume, request.axis, request.index)
    image = display_slice(loaded.volume.data, request.axis, request.index)
    net_input, truth = prepare_inputs(image, request)
    reference = truth if truth is not None else net_input
    pixel_w, pixel_h = geometry.pixel_mm
    extent = (reference.shape[1] * pixel_w, reference.shape[0] * pixel_h)
    weights = dict(request.weights)
    upscalers, skipped = [], []
    for name in request.networks:
        if cancel is not None and cancel():
            raise Cancelled()
        resolved = models.resolve(name, request.scale, request.device, weights.get(name))
        if resolved.fallback:
            skipped.append(resolved.notice.removesuffix(" — the SR panel shows bicubic"))
        else:
            upscalers.append(resolved.upscaler)
    t0 = time.perf_counter()
    spread, outputs = disagreement_map(upscalers, net_input, request.scale, loaded.normalizer, cancel=cancel)
    ms = (time.perf_counter() - t0) * 1000.0
    yield DisagreementResult(
        request, Layer(spread, extent), tuple(outputs), tuple(skipped), shared_error_max([spread]), ms
    )


class DisagreementView(QWidget):
    """The spread panel, its colour bar, and the list of networks to compare (checkable)."""

    resultShown = Signal(object)  # DisagreementResult now on screen
    failedShown = Signal(str)  # why there is no map for the current slice

    def __init__(self, state: ViewerState, controller: ComparisonController, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("disagreementView")
        self.state = state
        self.controller = controller
        self.active = False
        self.last: DisagreementResult | None = None
        self._chosen: list[str] | None = None  # None: the default set for the scale
        self._stack: QStackedWidget | None = None
        self._errors: QWidget | None = None
        self._populating = False

        self.panel = SlicePanel("disagreement", error_map=True)
        self.panel.value_prefix = "σ "
        self.panel.set_title(two_line("Model disagreement", "σ across networks — computed, not acquired"))
        self.colorbar_view = pg.GraphicsLayoutWidget()
        self.colorbar_view.setAcceptDrops(False)
        self.colorbar_view.setFixedWidth(84)
        self.colorbar = pg.ColorBarItem(
            values=(0.0, 1.0), colorMap=pg.colormap.get(COLORMAP), interactive=False, width=14
        )
        self.colorbar.setImageItem(self.panel.image)
        self.colorbar.axis.enableAutoSIPrefix(False)
        self.colorbar_view.addItem(self.colorbar)

        self.network_list = QListWidget()
        self.network_list.setObjectName("disagreementNetworks")
        self.network_list.setToolTip("Tick the networks to compare (at least two)")
        self.network_list.itemChanged.connect(self._picked)
        self.info = QLabel("")
        self.info.setObjectName("dimLabel")
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(2, 2, 2, 2)
        sl.setSpacing(3)
        title = QLabel("Networks compared")
        title.setObjectName("sectionTitle")
        sl.addWidget(title)
        sl.addWidget(self.network_list, 1)
        sl.addWidget(self.info, 2)

        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        lay.addWidget(self.panel, 6)
        lay.addWidget(self.colorbar_view)
        lay.addWidget(side, 4)

        self.pool = WorkerPool(1, "medsr-disagreement")
        self.requests = LatestRequest(self.pool, self._make_job, "disagreement", self)
        self.requests.applied.connect(self._apply)
        self.requests.failed.connect(self._failed)
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS, timeout=self.update_request)

        ev = state.events
        for e in (ev.volume, ev.axis, ev.slice, ev.mode, ev.blur, ev.device):
            e.connect(lambda _v: self._view_changed())
        ev.scale.connect(lambda _v: self._scale_changed())
        ev.volume.connect(lambda loaded: self._set_unit(unit_of(loaded)))
        ev.cursor.connect(self.panel.set_cursor)
        self._set_unit("")
        self.panel.set_hint("off")

    # --- placement -----------------------------------------------------------------------------
    def attach(self, workspace: Workspace) -> None:
        """Take the error row's place in the workspace splitter (a stack: errors or this map)."""
        splitter = workspace.splitter
        errors = workspace.errors
        index = splitter.indexOf(errors)
        stack = QStackedWidget()
        stack.setObjectName("errorRowStack")
        stack.setSizePolicy(errors.sizePolicy())  # the row's stretch factor in the splitter
        splitter.replaceWidget(index, stack)
        stack.addWidget(errors)
        stack.addWidget(self)
        stack.setCurrentWidget(errors)
        errors.show()
        self._stack, self._errors = stack, errors
        vb = self.panel.vb
        workspace.link.add(vb)
        vb.sliceStep.connect(self.state.step_slice)
        vb.cursorPicked.connect(lambda x, y: setattr(self.state, "cursor", (x, y)))

    def set_active(self, on: bool) -> None:
        """Show the map in place of the error maps (and compute it), or go back to the error maps."""
        self.active = bool(on)
        if self._stack is not None:
            self._stack.setCurrentWidget(self if self.active else self._errors)
        if self.active:
            self._populate()
            self._view_changed()
        else:
            self._timer.stop()
            self.requests.reset()

    def shutdown(self) -> None:
        self._timer.stop()
        self.requests.reset()
        self.pool.wait(5000)

    # --- networks ------------------------------------------------------------------------------
    def networks(self) -> list[str]:
        """The networks the next map compares: the user's ticks, or the default set."""
        if self._chosen is not None:
            return list(self._chosen)
        return default_networks(self.state.scale, self.state.weights, self.state.model)

    def set_networks(self, names: list[str] | None) -> None:
        """Compare ``names`` (None: the default set for the scale)."""
        self._chosen = None if names is None else list(names)
        self._populate()
        self._view_changed()

    def _populate(self) -> None:
        scale = self.state.scale
        serving = [n for n in picker_names() if n != BICUBIC and get_card(n).serves(scale)]
        trained = set(candidate_networks(scale, self.state.weights))
        chosen = set(self.networks()) & trained
        self._populating = True
        try:
            self.network_list.clear()
            for name in serving:
                item = QListWidgetItem(name if name in trained else f"{name}  (untrained ×{scale:g})")
                item.setData(Qt.ItemDataRole.UserRole, name)
                flags = Qt.ItemFlag.ItemIsUserCheckable
                if name in trained:
                    flags |= Qt.ItemFlag.ItemIsEnabled
                item.setFlags(flags)
                item.setCheckState(Qt.CheckState.Checked if name in chosen else Qt.CheckState.Unchecked)
                self.network_list.addItem(item)
        finally:
            self._populating = False

    def _picked(self, _item: QListWidgetItem) -> None:
        if self._populating:
            return
        self._chosen = [
            self.network_list.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.network_list.count())
            if self.network_list.item(i).checkState() == Qt.CheckState.Checked
        ]
        self._view_changed()

    # --- requests ------------------------------------------------------------------------------
    def _scale_changed(self) -> None:
        if self._chosen is not None:  # keep the user's picks that still serve the new scale
            serving = candidate_networks(self.state.scale, self.state.weights)
            self._chosen = [n for n in self._chosen if n in serving]
        if self.active:
            self._populate()
        self._view_changed()

    def _view_changed(self) -> None:
        if not self.active or self.state.loaded is None:
            return
        self.panel.canvas.letters = EDGE_LETTERS[self.state.axis]
        if self.panel.layer is not None:
            self.panel.image.setOpacity(STALE_OPACITY)  # until the new map arrives
        self._timer.start()

    def update_request(self) -> None:
        if not self.active:
            return
        networks = self.networks()
        request = DisagreementRequest.from_state(self.state, networks)
        if request is None:
            return
        if len(networks) < 2:
            self.requests.reset()
            message = (
                f"a disagreement map needs two trained networks that serve ×{self.state.scale:g}; "
                f"{len(networks)} {'is' if len(networks) == 1 else 'are'} ticked"
            )
            self.panel.set_hint(message)
            self.failedShown.emit(message)
            return
        if self.requests.submit(request):
            self.panel.set_title(
                two_line(
                    f"Model disagreement · {len(networks)} networks ×{request.scale:g}",
                    "computing…",
                )
            )

    def _make_job(self, request: DisagreementRequest):
        loaded = self.state.loaded
        models = self.controller.models
        slice_busy = self.controller.slices.busy

        def wait(token: CancelToken) -> None:
            waited = 0.0
            while not token() and slice_busy.is_set() and waited < WAIT_FOR_SLICE_S:
                time.sleep(0.02)
                waited += 0.02

        def job(token: CancelToken):
            if loaded is None or loaded.volume_id != request.volume_id:
                return None
            return disagreement_job(request, loaded, models, token, wait=lambda: wait(token))

        return job

    # --- results (GUI thread) ------------------------------------------------------------------
    def _apply(self, result: DisagreementResult) -> None:
        loaded = self.state.loaded
        if loaded is None or result.request.volume_id != loaded.volume_id:
            return
        self.last = result
        self.panel.set_layer(result.spread, levels=(0.0, result.top))
        self.panel.image.setOpacity(1.0)
        self.colorbar.setLevels((0.0, result.top))
        req = result.request
        n = len(result.labels)
        what = "the simulated LR input" if req.mode == SIMULATE else "the acquired slice"
        self.panel.set_title(
            two_line(
                f"Model disagreement · {n} networks ×{req.scale:g}",
                "σ across SR outputs — computed, not acquired",
            ),
            "Per-pixel standard deviation across: " + ", ".join(result.labels),
        )
        unit = f" {self.panel.unit}" if self.panel.unit else ""
        skipped = "".join(f"<br><span style='color:#ff9f1c'>skipped: {s}</span>" for s in result.skipped)
        self.info.setText(
            f"Per-pixel standard deviation of {n} networks' SR of {what}, in the image's units{unit}. "
            "Bright: the networks disagree, so at least one invents detail the input does not "
            "determine. Dark does not prove them right.<br><br>"
            + "<br>".join(result.labels)
            + skipped
            + f"<br><br>{result.ms:.0f} ms for {n} networks"
        )
        self.panel.set_cursor(self.state.cursor)
        self.resultShown.emit(result)

    def _failed(self, _request: DisagreementRequest, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, MedSRError) else f"{type(exc).__name__}: {exc}"
        self.panel.set_hint(message)
        self.failedShown.emit(message)

    def _set_unit(self, unit: str) -> None:
        self.panel.unit = unit
        self.colorbar.axis.setLabel(f"σ across networks{f' ({unit})' if unit else ''}")
