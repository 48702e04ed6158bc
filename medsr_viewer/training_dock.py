"""The Training dock: follows a ``medsr train`` run while the user keeps reading images.

Progress with ETA, live loss and validation PSNR/SSIM curves, and a preview (bicubic | SR | HR) of a
fixed validation slice, redrawn from the EMA weights of each checkpoint the trainer writes (one per
validation) on a worker. Cancel keeps the checkpoint and Resume continues it. A finished run's weights
land in the user's weights folder, appear in the model picker, and can be compared with the shipped
weights on the current slice in one click.
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine.errors import MedSRError
from engine.metrics import SliceScores
from medsr_viewer.error_maps import BICUBIC_COLOR, SR_COLOR
from medsr_viewer.model_cache import ModelCache
from medsr_viewer.pipeline import SliceRequest, slice_job
from medsr_viewer.settings import Settings
from medsr_viewer.state import AXIS_NAMES, SIMULATE, LoadedVolume, ViewerState
from medsr_viewer.training_dialog import TrainingDialog
from medsr_viewer.training_process import (
    CANCELLED,
    DONE,
    RunOutcome,
    TrainingProcess,
    TrainingRequest,
)
from medsr_viewer.workers import CancelToken, GeneratorWorker, LatestRequest, WorkerPool

log = logging.getLogger(__name__)

DOCK_HEIGHT = 320  # px the dock takes from the panels when it first shows
PREVIEW_SIDE = 160
PREVIEW_MIN_WIDTH = (
    430  # px: the three titles must not overlap  # px of the validation slice crop shown in the preview
)
LOSS_COLORS = ("#e8eaed", "#c792ea", "#7bd88f", "#ffdc00")
CLOSE_STOP, CLOSE_LEAVE, CLOSE_CANCEL = "stop", "leave", "cancel"


# --- preview (worker) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Preview:
    """The preview slice at one checkpoint: bicubic, SR (EMA weights) and HR in normalised units."""

    step: int
    bicubic: np.ndarray
    sr: np.ndarray
    hr: np.ndarray
    psnr_bicubic: float
    psnr_sr: float
    pair: Any  # (lr, hr) tensors, kept so later previews skip loading the volume


def preview_job(request: TrainingRequest, checkpoint: Path, pair: Any = None):
    """Run the checkpoint's EMA weights on a fixed slice of the first validation volume."""

    def job(token: CancelToken) -> Preview:
        import torch

        from engine.metrics import foreground_mask, psnr
        from engine.models import build_model
        from engine.models.registry import bicubic_upsample
        from training.checkpoint import load_checkpoint
        from training.data import build_validation

        scale = float(request.scale or 2.0)
        nonlocal pair
        if pair is None:
            source = request.val_data[0]
            pairs = build_validation([source], [scale], 1, PREVIEW_SIDE, request.blur).pairs[scale]
            if not pairs:
                raise MedSRError("no slice large enough for a preview", source)
            pair = pairs[0]
        if token.cancelled:
            return None
        state = load_checkpoint(checkpoint)
        args = (state.get("config") or {}).get("arch_args") or {}
        model = build_model(request.arch, request.scale, **args)
        model.load_state_dict(state["ema"])
        model.eval()
        lr, hr = pair
        with torch.no_grad():
            sr = model(lr, scale)[0, 0].numpy()
            bic = bicubic_upsample(lr, tuple(hr.shape[-2:]))[0, 0].numpy()
        h = hr[0, 0].numpy()
        rng = float(h.max() - h.min()) or 1.0
        mask = foreground_mask(h)
        return Preview(int(state["step"]), bic, sr, h, psnr(bic, h, rng, mask), psnr(sr, h, rng, mask), pair)

    return job


# --- comparison on the current slice (worker) -----------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """Scores of bicubic, the shipped and the user's weights on one slice (Simulate: vs the slice)."""

    request: SliceRequest  # with the user's weights
    scores: dict[str, SliceScores | None]  # bicubic, shipped, yours
    notes: dict[str, str]  # why a row is missing (no shipped weights)


def compare_job(request: SliceRequest, loaded: LoadedVolume, models: ModelCache):
    """Both weights through the viewer's own slice pipeline, so numbers match the inspector's."""

    def job(token: CancelToken) -> Comparison:
        scores: dict[str, SliceScores | None] = {}
        notes: dict[str, str] = {}
        for who, weights in (("shipped", None), ("yours", request.weights)):
            req = SliceRequest(
                request.volume_id,
                request.axis,
                request.index,
                request.model,
                request.scale,
                SIMULATE,
                request.blur,
                request.device,
                weights,
            )
            final = None
            for result in slice_job(req, loaded, models, token):
                final = result if result.final else final
            assert final is not None and final.sr is not None
            scores["bicubic"] = final.scores.get("bicubic")
            scores[who] = None if final.sr.fallback else final.scores.get("sr")
            if final.sr.fallback:
                notes[who] = final.sr.notice
        return Comparison(request, scores, notes)

    return job


def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(max(0.0, seconds)))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def _label(text: str = "", name: str = "dimLabel", wrap: bool = True) -> QLabel:
    lab = QLabel(text)
    lab.setObjectName(name)
    lab.setWordWrap(wrap)
    lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return lab


class TrainingDock(QDockWidget):
    """One run at a time; the viewer stays usable throughout (the trainer is another process)."""

    runStarted = Signal(object)  # TrainingRequest
    runEvent = Signal(object)  # dict: each trainer event
    runFinished = Signal(object)  # RunOutcome
    previewShown = Signal(int)  # checkpoint step
    weightsSaved = Signal(object)  # Path of the new weights file
    compared = Signal(object)  # Comparison
    errorReported = Signal(str, str)  # (title, message)
    showWeights = Signal(str, object)  # (network, weights path or None for the shipped weights)

    def __init__(
        self,
        state: ViewerState,
        settings: Settings,
        *,
        dialogs: bool = True,
        parent: QWidget | None = None,
    ):
        super().__init__("Training", parent)
        self.setObjectName("trainingDock")
        self.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.state = state
        self.settings = settings
        self.dialogs = dialogs
        self.command: list[str] | None = None  # None: medsr_command(); tests point it at other programs
        self.ask_on_close: Callable[[], str] | None = None  # hook: "stop", "leave" or "cancel"
        self.pool = WorkerPool(1, "medsr-training")
        self.models = ModelCache()
        self.process: TrainingProcess | None = None
        self.request: TrainingRequest | None = None
        self.outcome: RunOutcome | None = None
        self.dialog: TrainingDialog | None = None
        self.preview: Preview | None = None
        self.last_validation: dict[str, Any] | None = None
        self._pair: Any = None
        self._compare_worker: GeneratorWorker | None = None
        self._last_progress: dict[str, Any] = {}
        self._last_progress_t = 0.0
        self.previews = LatestRequest(self.pool, self._make_preview_job, "training preview", self)
        self.previews.finished.connect(lambda _req, value: self._show_preview(value))
        self.previews.failed.connect(lambda _req, exc: log.warning("training preview failed: %s", exc))
        self._tick = QTimer(self, interval=1000, timeout=self._update_status)
        self._build()
        self._reset_view(None)

    # --- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        self.title = _label("<b>Training</b>", "sectionTitle")
        self.info = _label()
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.progress = QProgressBar()
        self.progress.setObjectName("trainingProgress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.status = _label("", "metricsLabel")
        self.new_button = QPushButton("New run…")
        self.new_button.setToolTip("Choose a network, data, loss and budget (Tools › Train network)")
        self.new_button.clicked.connect(self.open_dialog)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current step; the checkpoint is kept for Resume")
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the cancelled run from its checkpoint")
        self.resume_button.clicked.connect(self.resume)
        run_buttons = QHBoxLayout()
        for b in (self.new_button, self.cancel_button, self.resume_button):
            run_buttons.addWidget(b)
        self.result = _label("", "metricsLabel")
        self.result.setTextFormat(Qt.TextFormat.RichText)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.yours_button = QPushButton("Show yours")
        self.yours_button.setToolTip("Show the new weights in the SR panel (the model picker lists them too)")
        self.yours_button.clicked.connect(lambda: self._show_weights(mine=True))
        self.shipped_button = QPushButton("Show shipped")
        self.shipped_button.setToolTip("Show the shipped weights of the same network in the SR panel")
        self.shipped_button.clicked.connect(lambda: self._show_weights(mine=False))
        self.compare_button = QPushButton("Compare on this slice")
        self.compare_button.setToolTip(
            "Run the shipped and your weights on the current slice (Simulate: LR made from it) and "
            "show PSNR/SSIM side by side"
        )
        self.compare_button.clicked.connect(self.compare_current)
        use_buttons = QHBoxLayout()
        for b in (self.yours_button, self.shipped_button, self.compare_button):
            use_buttons.addWidget(b)
        self.comparison = _label("", "metricsLabel")
        self.comparison.setTextFormat(Qt.TextFormat.RichText)

        left = QWidget()
        lay = QVBoxLayout(left)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(3)
        for w in (self.title, self.info, self.progress, self.status):
            lay.addWidget(w)
        lay.addLayout(run_buttons)
        lay.addWidget(self.result)
        lay.addLayout(use_buttons)
        lay.addStretch(1)
        scroll = self.left_scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(380)

        self.plots_view = pg.GraphicsLayoutWidget()
        self.plots_view.setAcceptDrops(False)
        self.plots: dict[str, pg.PlotItem] = {}
        for col, (key, label) in enumerate((("loss", "loss"), ("psnr", "PSNR fg (dB)"), ("ssim", "SSIM fg"))):
            plot = self.plots_view.addPlot(row=0, col=col)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setLabel("left", label)
            plot.setLabel("bottom", "step")
            plot.getAxis("left").setWidth(64 if key == "loss" else 52)
            for side in ("left", "bottom"):
                plot.getAxis(side).enableAutoSIPrefix(False)
            self.plots[key] = plot
        self.plots["psnr"].setXLink(self.plots["loss"])
        self.plots["ssim"].setXLink(self.plots["loss"])
        self.plots["loss"].addLegend(offset=(-6, 4), labelTextSize="8pt")
        self.plots["psnr"].addLegend(offset=(-6, 40), labelTextSize="8pt")  # between SR and bicubic
        self.loss_curves: dict[str, pg.PlotDataItem] = {}
        self.val_curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        for key in ("psnr", "ssim"):
            for who, color, style in (
                ("bicubic", BICUBIC_COLOR, Qt.PenStyle.DashLine),
                ("sr", SR_COLOR, Qt.PenStyle.SolidLine),
            ):
                self.val_curves[(key, who)] = self.plots[key].plot(
                    [],
                    [],
                    pen=pg.mkPen(color, width=1.5, style=style),
                    symbol="o",
                    symbolSize=4,
                    symbolBrush=color,
                    symbolPen=None,
                    name=("bicubic" if who == "bicubic" else "SR (EMA)") if key == "psnr" else None,
                )

        # One view box for the three images: they share one scale, side by side like the panels.
        self.preview_view = pg.GraphicsLayoutWidget()
        self.preview_view.setAcceptDrops(False)
        self.preview_box = self.preview_view.addViewBox(lockAspect=True, enableMouse=False)
        self.preview_box.invertY(True)
        self.preview_images: dict[str, pg.ImageItem] = {}
        self.preview_titles: dict[str, pg.TextItem] = {}
        for key, color in (("bicubic", BICUBIC_COLOR), ("sr", SR_COLOR), ("hr", "#e8eaed")):
            image = pg.ImageItem(axisOrder="row-major")
            title = pg.TextItem("", color=color, anchor=(0, 1))
            font = title.textItem.font()
            font.setPointSizeF(8.5)
            title.setFont(font)
            self.preview_box.addItem(image)
            self.preview_box.addItem(title)
            self.preview_images[key] = image
            self.preview_titles[key] = title
        self.preview_caption = _label("")
        preview_box = QWidget()
        preview_box.setMinimumWidth(PREVIEW_MIN_WIDTH)
        pl = QVBoxLayout(preview_box)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.setSpacing(1)
        pl.addWidget(self.preview_view, 1)
        pl.addWidget(self.preview_caption)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll)
        split.addWidget(self.plots_view)
        split.addWidget(preview_box)
        self.compare_box = QWidget()  # shown by the first comparison
        cl = QVBoxLayout(self.compare_box)
        cl.setContentsMargins(4, 2, 4, 2)
        cl.addWidget(_label("<b>Shipped vs yours on this slice</b>", "sectionTitle"))
        cl.addWidget(self.comparison)
        cl.addStretch(1)
        self.compare_box.setMinimumWidth(330)
        self.compare_box.hide()
        split.addWidget(self.compare_box)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 3)
        split.setStretchFactor(2, 2)
        split.setSizes([380, 640, 480])
        self.splitter = split
        self.setWidget(split)
        self.setMinimumHeight(250)

    # --- runs ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def open_dialog(self) -> TrainingDialog:
        """The Train network panel (non-modal); its checked request starts here."""
        if self.dialog is None:
            self.dialog = TrainingDialog(self.state, self.settings, self.pool, self.parentWidget())
            self.dialog.requestReady.connect(self.start)
        else:
            self.dialog.refresh()
        self.reveal()
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def reveal(self) -> None:
        """Show the dock at a height that leaves the panels most of the window."""
        if not self.isHidden():
            return
        self.show()
        window = self.parentWidget()
        if isinstance(window, QMainWindow) and not self.isFloating():
            window.resizeDocks([self], [DOCK_HEIGHT], Qt.Orientation.Vertical)

    def start(self, request: TrainingRequest) -> TrainingProcess | None:
        """Start ``request`` as a separate process (one run at a time)."""
        if self.running:
            self.errorReported.emit(
                "Cannot start training", "a training run is already in progress: cancel it first"
            )
            return None
        resuming = request.resume is not None and self.request is not None and request.out == self.request.out
        self.request = request
        self.outcome = None
        if not resuming:
            self._reset_view(request)
            self._pair = None
        if self.process is not None:  # the previous run's watcher (its process has ended)
            self.process.deleteLater()
        proc = TrainingProcess(request, self.command, self)
        proc.event.connect(self._on_event)
        proc.finished.connect(self._on_finished)
        self.process = proc
        self._last_progress, self._last_progress_t = {}, time.monotonic()
        proc.start()
        self._tick.start()
        self._update_buttons()
        self._update_status()
        self.reveal()
        self.runStarted.emit(request)
        return proc

    def cancel(self) -> None:
        """Stop the run cleanly (SIGTERM): the trainer writes its checkpoint, then exits."""
        if self.running:
            self.process.cancel()
            self.status.setText("Stopping after the current step (writing the checkpoint)…")
            self.cancel_button.setEnabled(False)

    def resume(self) -> TrainingProcess | None:
        """Continue the last run from its checkpoint, with the same budget and output file."""
        if self.outcome is None or not self.outcome.resumable or self.running:
            return None
        return self.start(self.outcome.request.resumed())

    # --- trainer events ------------------------------------------------------------------------
    def _on_event(self, ev: dict[str, Any]) -> None:
        kind = ev["event"]
        if kind == "start":
            self._show_start(ev)
        elif kind == "resumed":
            self.status.setText(f"Resumed at step {ev.get('step', 0)}")
        elif kind == "progress":
            self._last_progress, self._last_progress_t = ev, time.monotonic()
            self.progress.setValue(int(1000 * float(ev.get("fraction") or 0.0)))
            self._add_loss(ev)
            self._update_status()
        elif kind == "validation":
            self._add_validation(ev)
        elif kind == "checkpoint":
            self.previews.submit((str(ev["path"]), int(ev.get("step", 0))))
        elif kind in ("done", "cancelled") and self._last_progress:
            last = self._last_progress
            self._last_progress = {**last, "step": ev.get("step", last["step"]), "eta_s": None}
            if "elapsed_s" in ev:
                self._last_progress["elapsed_s"] = ev["elapsed_s"]
        elif kind == "warning":
            self.info.setText(
                self.info.text() + f"<br><span style='color:#ff9f1c'>{html.escape(ev['message'])}</span>"
            )
        self.runEvent.emit(ev)

    def _show_start(self, ev: dict[str, Any]) -> None:
        req = self.request
        assert req is not None
        budget = f"{req.steps} steps" if req.steps else f"{req.minutes:g} min"
        start = html.escape(ev.get("init") or "") if req.init else "from scratch"
        val = (
            "held-out volume " + html.escape(req.val_data[0].name)
            if req.held_out
            else ("<span style='color:#ff9f1c'>the training volume(s) — not held out</span>")
        )
        self.info.setText(
            f"{req.arch} {req.scale_text} · {html.escape(req.loss)} · {budget} on "
            f"{html.escape(str(ev.get('device')))} · {ev.get('parameters', 0):,} parameters<br>{start}<br>"
            f"{ev.get('volumes', 0)} volume(s), {ev.get('slices', 0)} usable slices · validation on {val}"
        )

    def _add_loss(self, ev: dict[str, Any]) -> None:
        for name, value in (ev.get("loss") or {}).items():
            curve = self.loss_curves.get(name)
            if curve is None:
                color = LOSS_COLORS[len(self.loss_curves) % len(LOSS_COLORS)]
                curve = self.plots["loss"].plot([], [], pen=pg.mkPen(color, width=1.5), name=name)
                self.loss_curves[name] = curve
            xs, ys = curve.getData()
            xs = np.append(xs if xs is not None else [], ev["step"])
            ys = np.append(ys if ys is not None else [], float(value))
            curve.setData(xs, ys)

    def _add_validation(self, ev: dict[str, Any]) -> None:
        scales = ev.get("scales") or {}
        if not scales:
            return
        key = next(iter(scales))
        v = scales[key]
        for metric in ("psnr", "ssim"):
            for who, field in (("sr", f"{metric}_fg"), ("bicubic", f"bicubic_{metric}_fg")):
                curve = self.val_curves[(metric, who)]
                xs, ys = curve.getData()
                curve.setData(
                    np.append(xs if xs is not None else [], ev["step"]),
                    np.append(ys if ys is not None else [], float(v[field])),
                )
        self.last_validation = ev
        self._update_status()

    def _update_status(self) -> None:
        if self.request is None:
            return
        ev = self._last_progress
        parts = []
        if ev:
            step = ev["step"]
            total = f"/{ev['total_steps']}" if ev.get("total_steps") else ""
            parts.append(f"step {step}{total}")
            loss = ev.get("loss") or {}
            if loss:
                parts.append(" ".join(f"{k} {v:.4f}" for k, v in loss.items()))
            since = time.monotonic() - self._last_progress_t if self.running else 0.0
            elapsed = float(ev.get("elapsed_s") or 0.0) + since
            parts.append(f"{_clock(elapsed)} elapsed")
            eta = ev.get("eta_s")
            if eta is not None and self.running:
                parts.append(f"about {_clock(float(eta) - since)} left")
            self.progress.setFormat(f"%p%  ·  ETA {_clock(None if eta is None else float(eta) - since)}")
        elif self.running:
            started = self.process.started_at or time.monotonic()
            parts.append(f"starting the trainer (loading data)… {_clock(time.monotonic() - started)}")
            self.progress.setFormat("starting…")
        if self.running and self.process.cancel_requested:
            parts.insert(0, "stopping after the current step (writing the checkpoint)")
        val = self.last_validation
        line2 = ""
        if val:
            s, v = next(iter(val["scales"].items()))
            line2 = (
                f"<br>validation ×{s} at step {val['step']}: PSNR {v['psnr_fg']:.2f} dB "
                f"({_signed(v['gain_db'])} vs bicubic {v['bicubic_psnr_fg']:.2f}), "
                f"SSIM {v['ssim_fg']:.4f} (bicubic {v['bicubic_ssim_fg']:.4f})"
            )
        if parts or line2:
            self.status.setText(" · ".join(parts) + line2)

    # --- preview -------------------------------------------------------------------------------
    def _make_preview_job(self, key: tuple[str, int]):
        assert self.request is not None
        return preview_job(self.request, Path(key[0]), self._pair)

    def _show_preview(self, preview: Preview | None) -> None:
        if preview is None:
            return
        self.preview = preview
        self._pair = preview.pair
        lo, hi = np.percentile(preview.hr, [0.5, 99.5])
        hi = hi if hi > lo else lo + 1e-6
        h, w = preview.hr.shape
        gap = 0.04 * w
        titles = {
            "bicubic": f"bicubic\n{preview.psnr_bicubic:.2f} dB",
            "sr": f"SR — not acquired\nstep {preview.step} · {preview.psnr_sr:.2f} dB",
            "hr": "HR\nground truth",
        }
        for k, (key, image) in enumerate(
            (("bicubic", preview.bicubic), ("sr", preview.sr), ("hr", preview.hr))
        ):
            x = k * (w + gap)
            self.preview_images[key].setImage(image, levels=(lo, hi))
            self.preview_images[key].setRect(QRectF(x, 0, w, h))
            self.preview_titles[key].setText(titles[key])
            self.preview_titles[key].setPos(x, 0)
        self.preview_box.setRange(xRange=(0, 3 * w + 2 * gap), yRange=(-0.26 * h, h), padding=0.01)
        req = self.request
        source = req.val_data[0].name if req else ""
        self.preview_caption.setText(
            f"Preview: central slice of {source} (×{(req.scale or 2.0) if req else 2:g}), EMA weights of the "
            f"checkpoint at step {preview.step}; PSNR on the foreground vs HR"
        )
        self.previewShown.emit(preview.step)

    # --- the end of a run ----------------------------------------------------------------------
    def _on_finished(self, outcome: RunOutcome) -> None:
        self.outcome = outcome
        self._tick.stop()
        self._update_status()
        req = outcome.request
        if outcome.status == DONE:
            self.progress.setValue(1000)
            self.progress.setFormat("done")
            w = outcome.weights
            sha = ""
            try:
                from engine.weights import read_metadata

                sha = read_metadata(w)["sha256"][:12] if w else ""
            except MedSRError as exc:
                log.warning("new weights unreadable: %s", exc)
            self.result.setText(
                f"<span style='color:#7bd88f'><b>Saved {html.escape(w.name if w else '?')}</b></span>"
                f" (sha256 {sha}) in your weights folder; the model picker lists it as yours (★)"
            )
            if w is not None:
                self.weightsSaved.emit(w)
        elif outcome.status == CANCELLED:
            self.progress.setFormat(f"cancelled at step {outcome.step}")
            self.result.setText(
                f"Cancelled at step {outcome.step}; "
                + (
                    "the checkpoint is kept: Resume continues it."
                    if outcome.resumable
                    else "no checkpoint was written yet (Resume is not possible)."
                )
            )
        else:
            self.progress.setFormat("failed")
            self.result.setText(
                f"<span style='color:#ff6b6b'><b>Training failed</b></span>: {html.escape(outcome.message)}"
            )
            message = f"{req.arch} {req.scale_text}: {outcome.message}."
            if outcome.stderr_tail:
                where = req.stderr_path
                message += f"\n\nLast lines of the trainer's error output ({where}):\n{outcome.stderr_tail}"
            self.errorReported.emit("Training failed", message)
        self._update_buttons()
        self.runFinished.emit(outcome)

    # --- using the result ----------------------------------------------------------------------
    def _show_weights(self, mine: bool) -> None:
        o = self.outcome
        if o is None or o.status != DONE or o.weights is None:
            return
        self.showWeights.emit(o.request.arch, str(o.weights) if mine else None)

    def compare_current(self) -> GeneratorWorker | None:
        """Shipped vs your weights on the slice being viewed (LR made from it), PSNR/SSIM side by side."""
        o = self.outcome
        if o is None or o.status != DONE or o.weights is None:
            return None
        loaded = self.state.loaded
        if loaded is None:
            self.errorReported.emit(
                "Cannot compare", "open a volume first: the comparison runs on its current slice"
            )
            return None
        s = self.state
        scale = o.request.scale if o.request.scale is not None else s.scale
        request = SliceRequest(
            loaded.volume_id,
            s.axis,
            s.slice,
            o.request.arch,
            scale,
            SIMULATE,
            s.blur,
            s.device,
            str(o.weights),
        )
        worker = GeneratorWorker(compare_job(request, loaded, self.models), "compare weights")
        worker.signals.finished.connect(self._show_comparison)
        worker.signals.failed.connect(lambda exc: self.errorReported.emit("Cannot compare", str(exc)))
        worker.signals.done.connect(lambda: self.compare_button.setEnabled(True))
        self.compare_button.setEnabled(False)
        self.comparison.setText("Comparing on the current slice…")
        if self.compare_box.isHidden():  # room for the table, taken from the curves
            self.compare_box.show()
            sizes = self.splitter.sizes()
            width = self.compare_box.minimumWidth()
            from_preview = min(width, max(0, sizes[2] - PREVIEW_MIN_WIDTH))
            sizes[1], sizes[2], sizes[3] = (
                max(240, sizes[1] - (width - from_preview)),
                sizes[2] - from_preview,
                width,
            )
            self.splitter.setSizes(sizes)
        self._compare_worker = worker
        self.pool.start(worker)
        return worker

    def _show_comparison(self, c: Comparison) -> None:
        req = c.request
        rows = []
        for who, label, color in (
            ("bicubic", "bicubic", BICUBIC_COLOR),
            ("shipped", "shipped", "#d0d3d8"),
            ("yours", "yours", SR_COLOR),
        ):
            sc = c.scores.get(who)
            if sc is None:
                cells = f"<td colspan='4'>{html.escape(c.notes.get(who, 'n/a'))}</td>"
            else:
                values = (f"{sc.psnr:.2f}", f"{sc.ssim:.4f}", f"{sc.psnr_fg:.2f}", f"{sc.ssim_fg:.4f}")
                cells = "".join(f"<td>{v}</td>" for v in values)
            rows.append(f"<tr><td style='color:{color}'><b>{label}</b></td>{cells}</tr>")
        yours, shipped = c.scores.get("yours"), c.scores.get("shipped")
        if yours is not None and shipped is not None:
            rows.append(
                "<tr><td>Δ yours − shipped</td>"
                + "".join(
                    f"<td>{_signed(getattr(yours, f) - getattr(shipped, f), d)}</td>"
                    for f, d in (("psnr", 2), ("ssim", 4), ("psnr_fg", 2), ("ssim_fg", 4))
                )
                + "</tr>"
            )
        head = "<tr><th></th><th>PSNR dB</th><th>SSIM</th><th>PSNR fg</th><th>SSIM fg</th></tr>"
        note = (
            f"{AXIS_NAMES[req.axis]} slice {req.index + 1}, Simulate ×{req.scale:g} (LR made from the slice)"
        )
        loaded = self.state.loaded
        src = loaded.volume.source if loaded is not None else None
        if src is not None and self.outcome is not None and Path(src) in set(self.outcome.request.data):
            note += (
                "<br><span style='color:#ff9f1c'>This volume was in your training data: the comparison "
                "flatters your weights.</span>"
            )
        self.comparison.setText(f"<table cellspacing='0' cellpadding='2'>{head}{''.join(rows)}</table>{note}")
        self.compared.emit(c)

    # --- closing -------------------------------------------------------------------------------
    def confirm_close(self) -> bool:
        """Ask what becomes of a running training when the viewer closes; False keeps the viewer open."""
        if not self.running:
            return True
        if self.ask_on_close is not None:
            choice = self.ask_on_close()
        elif self.dialogs:
            choice = self._ask_close()
        else:
            choice = CLOSE_STOP
        if choice == CLOSE_CANCEL:
            return False
        proc = self.process
        assert proc is not None
        if choice == CLOSE_LEAVE:
            proc.detach()
            return True
        proc.cancel()
        if not proc.wait(15_000):  # still writing its checkpoint: let it finish on its own
            proc.detach()
        return True

    def _ask_close(self) -> str:
        req = self.request
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Training in progress")
        box.setText(f"{req.arch} {req.scale_text} is still training.")
        box.setInformativeText(
            "Stop it (its checkpoint is kept), or leave it running in the background: it then writes "
            f"{req.out.name} to your weights folder when done, and the model picker lists it next time."
        )
        stop = box.addButton("Stop training", QMessageBox.ButtonRole.DestructiveRole)
        leave = box.addButton("Leave running", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        return CLOSE_STOP if clicked is stop else CLOSE_LEAVE if clicked is leave else CLOSE_CANCEL

    def shutdown(self) -> None:
        self.previews.reset()
        self.pool.cancel_all()
        self.pool.wait(5000)

    # --- display state -------------------------------------------------------------------------
    def _reset_view(self, request: TrainingRequest | None) -> None:
        for curve in [*self.loss_curves.values()]:
            self.plots["loss"].removeItem(curve)
        self.loss_curves = {}
        for curve in self.val_curves.values():
            curve.setData([], [])
        for image in self.preview_images.values():
            image.clear()
        for title in self.preview_titles.values():
            title.setText("")
        self.preview = None
        self.last_validation = None
        self.progress.setValue(0)
        self.result.setText("")
        self.comparison.setText("")
        self.compare_box.hide()
        self.preview_caption.setText("The preview appears at the first validation.")
        if request is None:
            self.title.setText("<b>Training</b>")
            self.info.setText("No run yet: Tools › Train network… trains a network on your own volumes.")
            self.progress.setFormat("idle")
            self.status.setText("")
        else:
            self.title.setText(f"<b>Training {html.escape(request.name)}</b>")
            self.info.setText(html.escape(str(request.run_dir)))
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.running
        o = self.outcome
        done = o is not None and o.status == DONE and o.weights is not None
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(not running and o is not None and o.status != DONE and o.resumable)
        self.new_button.setEnabled(not running)
        for b in (self.yours_button, self.shipped_button, self.compare_button):
            b.setEnabled(done)


def _signed(value: float, digits: int = 2) -> str:
    color = "#7bd88f" if value > 0 else "#ff6b6b" if value < 0 else "#cccccc"
    return f"<span style='color:{color}'>{value:+.{digits}f}</span>"
