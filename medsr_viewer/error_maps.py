"""The error row: two absolute-error maps on ONE colour scale with its colour bar, and a histogram of both.

Simulate: |bicubic − HR| and |SR − HR|. Enhance: |SR − bicubic| and the data-consistency map
|degrade(SR) − input|. Both maps share one colour scale (the 99.5th percentile of both), so a
brighter pixel means a larger error in either map.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from medsr_viewer.panels import SlicePanel, error_colormap
from medsr_viewer.pipeline import SliceResult
from medsr_viewer.state import SIMULATE

BICUBIC_COLOR = "#4ea1ff"
SR_COLOR = "#ff9f1c"

TITLES = {
    SIMULATE: ("|Bicubic − HR|", "|SR − HR|", "bicubic", "SR"),
    "enhance": (
        "|SR − Bicubic|",
        "Data consistency |degrade(SR) − input|",
        "|SR − bicubic|",
        "|degrade(SR) − input|",
    ),
}


class ErrorMapsView(QWidget):
    """Two error panels, a shared colour bar and the error histogram plot."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.panels = [SlicePanel("error_a", error_map=True), SlicePanel("error_b", error_map=True)]
        self.unit = ""
        self.mode = SIMULATE

        self.colorbar_view = pg.GraphicsLayoutWidget()
        self.colorbar_view.setAcceptDrops(False)
        self.colorbar_view.setFixedWidth(78)
        self.colorbar = pg.ColorBarItem(
            values=(0.0, 1.0), colorMap=error_colormap(), interactive=False, width=14, colorMapMenu=False
        )
        self.colorbar.setImageItem([p.image for p in self.panels])
        self.colorbar_view.addItem(self.colorbar)

        self.hist_plot = pg.PlotWidget()
        self.hist_plot.setAcceptDrops(False)
        self.hist_plot.setMenuEnabled(False)
        self.hist_plot.setMouseEnabled(x=False, y=False)
        self.hist_plot.setLabel("left", "pixels")
        for side in ("left", "bottom"):
            self.hist_plot.getAxis(side).enableAutoSIPrefix(False)
        self.colorbar.axis.enableAutoSIPrefix(False)
        self.legend = self.hist_plot.addLegend(offset=(-8, 8), labelTextSize="8pt")
        self.curves = {
            "a": self.hist_plot.plot(
                [0, 1], [0], stepMode="center", pen=pg.mkPen(BICUBIC_COLOR, width=2), name="bicubic"
            ),
            "b": self.hist_plot.plot(
                [0, 1], [0], stepMode="center", pen=pg.mkPen(SR_COLOR, width=2), name="SR"
            ),
        }
        self.log_y = QCheckBox("log y")
        self.log_y.setChecked(True)
        self.log_y.toggled.connect(self._redraw_histogram)
        self.hist_title = QLabel("Error histogram")
        self.hist_title.setObjectName("sectionTitle")
        self.hist_title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._histogram: tuple[np.ndarray, dict[str, np.ndarray]] | None = None

        hist_box = QWidget()
        hb = QVBoxLayout(hist_box)
        hb.setContentsMargins(2, 2, 2, 2)
        hb.setSpacing(1)
        head = QHBoxLayout()
        head.addWidget(self.hist_title, 1)
        head.addWidget(self.log_y)
        hb.addLayout(head)
        hb.addWidget(self.hist_plot, 1)

        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        lay.addWidget(self.panels[0], 3)
        lay.addWidget(self.panels[1], 3)
        lay.addWidget(self.colorbar_view)
        lay.addWidget(hist_box, 4)
        self.set_mode(SIMULATE)

    def set_unit(self, unit: str) -> None:
        self.unit = unit
        for p in self.panels:
            p.unit = unit
        self._label_axes()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        a, b, name_a, name_b = TITLES[mode]
        scale_note = "one colour scale for both maps"
        self.panels[0].set_title(f"<b>{a}</b><br><span style='color:#9aa0a6'>{scale_note}</span>")
        self.panels[1].set_title(f"<b>{b}</b><br><span style='color:#9aa0a6'>{scale_note}</span>")
        self.legend.clear()
        self.legend.addItem(self.curves["a"], name_a)
        self.legend.addItem(self.curves["b"], name_b)
        self.hist_title.setText(
            "Error histogram (foreground)" if mode == SIMULATE else "Difference / consistency histogram"
        )
        self.clear()
        self._label_axes()

    def _label_axes(self) -> None:
        unit = f" ({self.unit})" if self.unit else ""
        self.hist_plot.setLabel("bottom", f"absolute difference{unit}")
        self.colorbar.axis.setLabel(f"|Δ|{unit}")

    def clear(self, hint: str = "computing…") -> None:
        for p in self.panels:
            p.set_hint(hint)
        self._histogram = None
        for c in self.curves.values():
            c.setData([0, 1], [0])

    def show_result(self, result: SliceResult) -> None:
        maps = list(result.errors.values())
        if len(maps) != 2:
            return
        top = float(result.error_max)
        for panel, layer in zip(self.panels, maps, strict=True):
            panel.set_layer(layer, levels=(0.0, top))
        self.colorbar.setLevels((0.0, top))
        self._histogram = result.histogram
        self._redraw_histogram()

    def _redraw_histogram(self) -> None:
        log = self.log_y.isChecked()
        self.hist_plot.setLogMode(x=False, y=log)
        self.hist_plot.setLabel("left", "pixels (log)" if log else "pixels")
        if self._histogram is None:
            return
        edges, counts = self._histogram
        for key, name in zip(("a", "b"), counts, strict=False):
            y = counts[name].astype(float)
            if log:
                y = np.maximum(y, 1.0)  # log axis floor: empty bins sit at 1 pixel
            self.curves[key].setData(edges, y)
        self.hist_plot.enableAutoRange()

    def set_cursor(self, pos) -> None:
        for p in self.panels:
            p.set_cursor(pos)
