"""The side panel: slice metrics (PSNR/SSIM with the data range stated), the window/level histogram
(pyqtgraph's HistogramLUTItem bound to the input panel) and the current model's card.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from engine.metrics import SliceScores
from medsr_viewer.error_maps import BICUBIC_COLOR, SR_COLOR
from medsr_viewer.pipeline import SliceResult
from medsr_viewer.state import AXIS_NAMES, SIMULATE, LoadedVolume, ViewerState, WindowLevel
from medsr_viewer.trust_notices import volume_notices


def _section(text: str) -> QLabel:
    lab = QLabel(text)
    lab.setObjectName("sectionTitle")
    return lab


def _fmt(v: float | None, digits: int) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"


def _delta(a: float | None, b: float | None, digits: int) -> str:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return "–"
    d = a - b
    color = "#7bd88f" if d > 0 else "#ff6b6b" if d < 0 else "#cccccc"
    return f"<span style='color:{color}'>{d:+.{digits}f}</span>"


def metrics_html(result: SliceResult, loaded: LoadedVolume, unit: str) -> str:
    """The metrics table of one slice, with the data range and what was scored stated."""
    req = result.request
    bic: SliceScores | None = result.scores.get("bicubic")
    sr: SliceScores | None = result.scores.get("sr")
    sr_name = html.escape(result.sr.ran if result.sr else "SR")
    if bic is None or sr is None:
        table = "<p>Metrics: the reference slice is constant (empty): nothing to score.</p>"
    else:
        rows = [
            ("<th></th><th>PSNR dB</th><th>SSIM</th><th>PSNR fg</th><th>SSIM fg</th>"),
            (
                f"<td style='color:{BICUBIC_COLOR}'><b>Bicubic</b></td><td>{_fmt(bic.psnr, 2)}</td>"
                f"<td>{_fmt(bic.ssim, 4)}</td><td>{_fmt(bic.psnr_fg, 2)}</td><td>{_fmt(bic.ssim_fg, 4)}</td>"
            ),
            (
                f"<td style='color:{SR_COLOR}'><b>SR</b> {sr_name}</td><td>{_fmt(sr.psnr, 2)}</td>"
                f"<td>{_fmt(sr.ssim, 4)}</td><td>{_fmt(sr.psnr_fg, 2)}</td><td>{_fmt(sr.ssim_fg, 4)}</td>"
            ),
            (
                f"<td>Δ SR − bic</td><td>{_delta(sr.psnr, bic.psnr, 2)}</td>"
                f"<td>{_delta(sr.ssim, bic.ssim, 4)}</td>"
                f"<td>{_delta(sr.psnr_fg, bic.psnr_fg, 2)}</td><td>{_delta(sr.ssim_fg, bic.ssim_fg, 4)}</td>"
            ),
        ]
        table = (
            "<table cellspacing='0' cellpadding='3' width='100%'>"
            + "".join(f"<tr>{r}</tr>" for r in rows)
            + "</table>"
        )
    what = (
        "SR and bicubic vs HR (the loaded slice)"
        if req.mode == SIMULATE
        else "data consistency: degrade(x) vs the acquired slice"
    )
    unit_txt = f" {unit}" if unit else ""
    notes = [
        f"Slice {req.index + 1} / {loaded.volume.shape[req.axis]} ({AXIS_NAMES[req.axis]}) · ×{req.scale:g}"
        f"{' · blur' if req.blur else ''}",
        f"Scored: {what}; {result.border} px border excluded",
        f"Data range: {loaded.data_range:g}{unit_txt} = volume max − min (fixed for all slices)",
        "fg = foreground: Otsu mask of the reference, dilated 3 px",
    ]
    if result.sr and result.sr.fallback:
        notes.insert(0, f"<span style='color:#ff9f1c'>{html.escape(result.sr.notice)}</span>")
    return table + "<p style='color:#aaaaaa'>" + "<br>".join(notes) + "</p>"


class Inspector(QWidget):
    """Metrics, window/level and the model card, stacked in the side dock."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.unit = ""
        self.metrics = QLabel("Open a volume to compare SR with bicubic.")
        self.metrics.setObjectName("metricsLabel")
        self.metrics.setWordWrap(True)
        self.metrics.setTextFormat(Qt.TextFormat.RichText)
        self.metrics.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        self.histogram = pg.HistogramLUTWidget(orientation="horizontal")
        self.histogram.setAcceptDrops(False)
        self.histogram.setMinimumHeight(110)
        self.histogram.setMaximumHeight(140)
        self.histogram.item.gradient.hide()
        self.histogram.item.sigLevelsChanged.connect(self._levels_dragged)
        self.window_label = QLabel("")
        self.window_label.setObjectName("dimLabel")
        self._bound = False
        self._syncing = False

        self.card = QLabel("")
        self.card.setObjectName("cardLabel")
        self.card.setWordWrap(True)
        self.card.setTextFormat(Qt.TextFormat.RichText)
        self.card.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.card.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.volume_info = QLabel("")
        self.volume_info.setObjectName("dimLabel")
        self.volume_info.setWordWrap(True)

        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(6)
        lay.addWidget(_section("Slice metrics"))
        lay.addWidget(self.metrics)
        lay.addWidget(_section("Window / level"))
        lay.addWidget(self.histogram)
        lay.addWidget(self.window_label)
        lay.addWidget(_section("Volume"))
        lay.addWidget(self.volume_info)
        lay.addWidget(_section("Model"))
        lay.addWidget(self.card)
        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        state.events.window.connect(self._window_changed)

    def bind_image(self, image_item: pg.ImageItem) -> None:
        """Show the histogram of ``image_item`` (the input panel); its levels follow the state."""
        self._syncing = True
        try:
            self.histogram.item.setImageItem(image_item)
        finally:
            self._syncing = False
        image_item.sigImageChanged.connect(self._log_counts)  # after the histogram's own update
        self._bound = True
        self._window_changed(self.state.window)

    def _log_counts(self) -> None:
        """Show log10(1 + count): the background peak would otherwise flatten the tissue histogram."""
        x, y = self.histogram.item.plot.getData()
        if x is not None and y is not None and len(y):
            self.histogram.item.plot.setData(x, np.log10(1.0 + np.asarray(y, dtype=float)))

    def _levels_dragged(self, item) -> None:
        if self._syncing or self.state.loaded is None:
            return
        lo, hi = item.getLevels()
        wl = WindowLevel.from_range(float(lo), float(hi))
        cur = self.state.window
        tol = 1e-6 * max(self.state.loaded.data_range, 1.0)
        if abs(wl.level - cur.level) > tol or abs(wl.width - cur.width) > tol:
            self.state.window = wl

    def _window_changed(self, wl: WindowLevel) -> None:
        unit = f" {self.unit}" if self.unit else ""
        self.window_label.setText(f"W {wl.width:.4g} · L {wl.level:.4g}{unit}   (right-drag on an image)")
        if not self._bound:
            return
        self._syncing = True
        try:
            self.histogram.item.setLevels(wl.low, wl.high)
            loaded = self.state.loaded
            if loaded is not None:
                lo = min(wl.low, float(loaded.volume.data.min()))
                hi = max(wl.high, float(loaded.volume.data.max()))
                self.histogram.item.setHistogramRange(lo, hi, padding=0.02)
        finally:
            self._syncing = False

    def show_volume(self, loaded: LoadedVolume, unit: str) -> None:
        self.unit = unit
        v = loaded.volume
        sp = " × ".join(f"{s:.3g}" for s in v.spacing)
        name = v.source.name if v.source else "(memory)"
        desc = html.escape(v.description or "")
        warn = volume_notices(loaded)  # every loader warning, never only the first few
        lines = [
            f"<b>{html.escape(name)}</b> {desc}",
            f"{v.modality} · {' × '.join(map(str, v.shape))} voxels",
            f"voxel {sp} mm (RAS: sagittal × coronal × axial)",
            "Display: radiological (patient's right on screen left in axial/coronal; "
            "anterior left in sagittal)",
        ]
        lines += [f"<span style='color:#ff9f1c'>⚠ {html.escape(str(w))}</span>" for w in warn]
        self.volume_info.setText("<br>".join(lines))
        self.metrics.setText("computing…")
        self._window_changed(self.state.window)

    def show_metrics(self, result: SliceResult) -> None:
        if self.state.loaded is None:
            return
        self.metrics.setText(metrics_html(result, self.state.loaded, self.unit))

    def show_card(self, text: str, notice: str = "") -> None:
        extra = f"<p style='color:#ff9f1c'><b>{html.escape(notice)}</b></p>" if notice else ""
        self.card.setText(extra + text)
