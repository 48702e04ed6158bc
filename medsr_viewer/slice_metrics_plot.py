"""Per-slice PSNR and SSIM of SR and bicubic across the volume; click a point to go to that slice.

The curves fill in as a background job scores slices (from the current slice outwards). In
Enhance mode there is no ground truth, so the curves show data consistency instead: the scores of
degrade(SR) and degrade(bicubic) against the acquired slice.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from medsr_viewer.error_maps import BICUBIC_COLOR, SR_COLOR
from medsr_viewer.pipeline import CurvePoint
from medsr_viewer.state import SIMULATE

FIELDS = {
    ("psnr", False): "psnr",
    ("psnr", True): "psnr_fg",
    ("ssim", False): "ssim",
    ("ssim", True): "ssim_fg",
}


class SliceMetricsPlot(QWidget):
    """Two plots side by side (PSNR, SSIM) against slice index, with the current slice marked."""

    sliceClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel("Per-slice metrics")
        self.title.setObjectName("sectionTitle")
        self.status = QLabel("")
        self.status.setObjectName("dimLabel")
        for label in (self.title, self.status):  # long texts must not set the window's minimum width
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.foreground = QCheckBox("foreground only")
        self.foreground.toggled.connect(self._redraw)
        head = QHBoxLayout()
        head.addWidget(self.title, 2)
        head.addWidget(self.status, 3)
        head.addWidget(self.foreground)

        self.view = pg.GraphicsLayoutWidget()
        self.view.setAcceptDrops(False)
        self.plots = {}
        for col, (key, label) in enumerate((("psnr", "PSNR (dB)"), ("ssim", "SSIM"))):
            plot = self.view.addPlot(row=0, col=col)
            plot.setMenuEnabled(False)
            plot.setMouseEnabled(x=False, y=False)
            plot.hideButtons()
            plot.setLabel("left", label)
            plot.getAxis("left").setWidth(56)
            for side in ("left", "bottom"):
                plot.getAxis(side).enableAutoSIPrefix(False)  # SSIM 0.98 must not read "980 (x0.001)"
            plot.setLabel("bottom", "slice")
            self.plots[key] = plot
        self.plots["ssim"].setXLink(self.plots["psnr"])
        self.legend = self.plots["psnr"].addLegend(offset=(-8, 4), labelTextSize="8pt", colCount=2)
        self.curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        for key, plot in self.plots.items():
            for who, color in (("bicubic", BICUBIC_COLOR), ("sr", SR_COLOR)):
                curve = plot.plot(
                    [],
                    [],
                    pen=pg.mkPen(color, width=1.5),
                    symbol="o",
                    symbolSize=4,
                    symbolBrush=color,
                    symbolPen=None,
                    connect="finite",
                    name=("bicubic" if who == "bicubic" else "SR") if key == "psnr" else None,
                )
                self.curves[(key, who)] = curve
        self.markers = {
            k: pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffdc00", width=1), movable=False) for k in self.plots
        }
        for k, line in self.markers.items():
            self.plots[k].addItem(line, ignoreBounds=True)
        self.view.scene().sigMouseClicked.connect(self._clicked)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(1)
        lay.addLayout(head)
        lay.addWidget(self.view, 1)

        self.n = 0
        self.mode = SIMULATE
        self.points: dict[int, CurvePoint] = {}

    def reset(self, n: int, mode: str, description: str = "") -> None:
        """Empty curves for ``n`` slices."""
        self.n = n
        self.mode = mode
        self.points = {}
        what = "vs HR" if mode == SIMULATE else "data consistency: degrade(x) vs input"
        self.title.setText(f"<b>Per-slice metrics</b> ({what}){' · ' + description if description else ''}")
        for plot in self.plots.values():
            plot.setXRange(0.5, max(n + 0.5, 1.5), padding=0.01)
        self._redraw()

    def add_points(self, points: list[CurvePoint]) -> None:
        for p in points:
            self.points[p.index] = p
        self._redraw()

    def set_current(self, index: int) -> None:
        for line in self.markers.values():
            line.setPos(index + 1)

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def _series(self, metric: str, who: str) -> tuple[np.ndarray, np.ndarray]:
        field = FIELDS[(metric, self.foreground.isChecked())]
        xs = np.arange(1, self.n + 1, dtype=float)  # slices numbered from 1, as on the slider
        ys = np.full(self.n, np.nan)
        for i, p in self.points.items():
            scores = p.bicubic if who == "bicubic" else p.sr
            if scores is not None and 0 <= i < self.n:
                v = getattr(scores, field)
                ys[i] = v if np.isfinite(v) else np.nan
        return xs, ys

    def _redraw(self) -> None:
        means = {}
        for (metric, who), curve in self.curves.items():
            xs, ys = self._series(metric, who)
            ok = np.isfinite(ys)
            curve.setSymbol("o" if self.n <= 60 else None)  # symbols cost paint time on long volumes
            curve.setData(xs[ok], ys[ok]) if ok.any() else curve.setData([], [])
            means[(metric, who)] = float(np.mean(ys[ok])) if ok.any() else float("nan")
        done = len(self.points)
        summary = ""
        if done:
            summary = (
                f"mean PSNR SR {means[('psnr', 'sr')]:.2f} / bicubic {means[('psnr', 'bicubic')]:.2f} dB · "
                f"SSIM SR {means[('ssim', 'sr')]:.3f} / bicubic {means[('ssim', 'bicubic')]:.3f}"
            )
        progress = f"{done}/{self.n} slices" if done < self.n else f"{self.n} slices"
        self.status.setText(f"  {progress}   {summary}")
        for plot in self.plots.values():
            plot.enableAutoRange(axis="y")

    def mean(self, metric: str, who: str) -> float:
        _, ys = self._series(metric, who)
        ok = np.isfinite(ys)
        return float(np.mean(ys[ok])) if ok.any() else float("nan")

    def _clicked(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or self.n == 0:
            return
        for plot in self.plots.values():
            if plot.vb.sceneBoundingRect().contains(ev.scenePos()):
                x = plot.vb.mapSceneToView(ev.scenePos()).x()
                self.sliceClicked.emit(int(min(max(round(x) - 1, 0), self.n - 1)))
                ev.accept()
                return
