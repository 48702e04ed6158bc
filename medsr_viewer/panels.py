"""Slice panels: a pyqtgraph ImageItem in a ViewBox, titled, with crosshair, value readout,
orientation letters and a millimetre scale bar; and the link that keeps their pan/zoom together.

Scene coordinates are millimetres (x right, y down from the slice's top-left corner), so images of
different pixel counts (LR, HR, SR) covering the same anatomy overlay exactly and the scale bar is
true to size. Mouse: left = crosshair, right-drag = window/level, middle- or shift-drag = pan,
wheel = zoom around the cursor and ctrl+wheel = slices, or the other way round (a preference).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QFrame, QGraphicsView, QLabel, QSizePolicy, QVBoxLayout, QWidget

from medsr_viewer.pipeline import Layer
from medsr_viewer.slicing import pixel_at

CROSSHAIR_PEN = pg.mkPen(QColor(255, 220, 0, 150), width=1, style=Qt.PenStyle.DashLine)
OVERLAY_COLOR = QColor(255, 230, 120)
BANNER_STYLE = "color: #ffffff; background: #8f2d1f; padding: 2px 6px; font-weight: bold;"
WARNING_BACKGROUND = QColor(143, 45, 31, 230)  # the banner's red, painted over the image


class SliceViewBox(pg.ViewBox):
    """A ViewBox whose mouse gestures are a medical viewer's, reported as signals."""

    sliceStep = Signal(int)
    windowDrag = Signal(float, float)  # dx, dy in screen pixels since the last event
    cursorPicked = Signal(float, float)  # x, y in mm
    userZoomed = Signal()

    def __init__(self) -> None:
        super().__init__(invertY=True, lockAspect=True, enableMenu=False)
        self.setMouseMode(pg.ViewBox.PanMode)
        self.wheel_zooms = True  # plain wheel zooms (ctrl+wheel steps slices); False: the other way round
        # The transform follows the range at once: pyqtgraph defers it to the paint, where changing it
        # schedules a second paint of the whole view for every zoom or pan step.
        self.sigRangeChanged.connect(lambda *_: self.updateMatrix())

    def wheelEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        ctrl = bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if ctrl != self.wheel_zooms:
            super().wheelEvent(ev, axis)  # pyqtgraph zooms around the point under the cursor
            self.userZoomed.emit()
            return
        delta = ev.delta()
        if delta:
            self.sliceStep.emit(1 if delta > 0 else -1)
        ev.accept()

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            p = self.mapSceneToView(ev.scenePos())
            self.cursorPicked.emit(p.x(), p.y())
        ev.accept()

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802
        button = ev.button()
        shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if button == Qt.MouseButton.RightButton:
            ev.accept()
            d = ev.screenPos() - ev.lastScreenPos()
            self.windowDrag.emit(d.x(), d.y())
        elif button == Qt.MouseButton.LeftButton and not shift:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self.cursorPicked.emit(p.x(), p.y())
        elif button == Qt.MouseButton.MiddleButton or shift:  # pan (pyqtgraph's PanMode drag)
            super().mouseDragEvent(ev, axis)
            self.userZoomed.emit()
        else:
            ev.ignore()


class SliceCanvas(pg.GraphicsView):
    """The graphics view of one panel; paints orientation letters, a scale bar and a warning strip
    over the image (drawn, not a widget: showing it must not resize the view it warns about)."""

    painted = Signal()  # after each repaint of the view (benchmarks time frames with it)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background="k")
        self.setAcceptDrops(False)  # drops go to the main window
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.vb = SliceViewBox()
        self.setCentralItem(self.vb)
        self.letters: tuple[str, str, str, str] | None = None
        self.show_scale_bar = True
        self.hint = ""  # centred text while there is nothing to show yet
        self.warning = ""  # red strip under the top edge: what the image is, when it is not what it seems

    def paintEvent(self, ev) -> None:  # noqa: N802
        super().paintEvent(ev)
        self.painted.emit()

    def mm_per_pixel(self) -> float | None:
        (x0, x1), _ = self.vb.viewRange()
        w = self.vb.width()
        return (x1 - x0) / w if w > 0 else None

    def drawForeground(self, painter: QPainter, rect) -> None:  # noqa: N802
        painter.save()
        painter.resetTransform()
        vp = self.viewport().rect()
        font = QFont(self.font())
        font.setPointSizeF(max(8.0, font.pointSizeF()))
        font.setBold(True)
        painter.setFont(font)
        align = Qt.AlignmentFlag
        if self.hint:
            shadowed_text(painter, vp, align.AlignCenter, self.hint)
        if self.letters:
            left, right, top, bottom = self.letters
            m = 4
            shadowed_text(painter, vp.adjusted(m, 0, 0, 0), align.AlignLeft | align.AlignVCenter, left)
            shadowed_text(painter, vp.adjusted(0, 0, -m, 0), align.AlignRight | align.AlignVCenter, right)
            shadowed_text(painter, vp.adjusted(0, m, 0, 0), align.AlignHCenter | align.AlignTop, top)
            shadowed_text(painter, vp.adjusted(0, 0, 0, -m), align.AlignHCenter | align.AlignBottom, bottom)
        mmpp = self.mm_per_pixel()
        if self.show_scale_bar and mmpp and not self.hint:
            self._draw_scale_bar(painter, vp, mmpp)
        if self.warning:
            self._draw_warning(painter, vp, self.warning)
        painter.restore()

    @staticmethod
    def _draw_warning(painter: QPainter, vp, text: str) -> None:
        flags = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextWordWrap
        width = vp.width() - 16
        box = painter.boundingRect(QRect(0, 0, width, vp.height()), flags, f"⚠ {text}")
        strip = QRect(vp.left() + 8, vp.top() + 22, width, box.height() + 6)  # below the top letter
        painter.fillRect(strip, WARNING_BACKGROUND)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(strip, flags, f"⚠ {text}")

    @staticmethod
    def _draw_scale_bar(painter: QPainter, vp, mm_per_px: float) -> None:
        length_mm = nice_length(mm_per_px * vp.width() * 0.22)
        px = length_mm / mm_per_px
        x1, y = vp.right() - 12, vp.bottom() - 22
        x0 = x1 - px
        for pen in (QPen(QColor(0, 0, 0, 220), 4), QPen(OVERLAY_COLOR, 2)):  # outlined, like the text
            painter.setPen(pen)
            painter.drawLine(QPointF(x0, y), QPointF(x1, y))
            painter.drawLine(QPointF(x0, y - 4), QPointF(x0, y + 4))
            painter.drawLine(QPointF(x1, y - 4), QPointF(x1, y + 4))
        text = f"{length_mm:g} mm"
        shadowed_text(painter, QRectF(x0 - 40, y - 20, px + 80, 16), Qt.AlignmentFlag.AlignHCenter, text)


def shadowed_text(painter: QPainter, rect, flags, text: str, color: QColor = OVERLAY_COLOR) -> None:
    """Overlay text with a dark outline, readable over bright anatomy."""
    painter.setPen(QColor(0, 0, 0, 220))
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        painter.drawText(QRectF(rect).translated(dx, dy), flags, text)
    painter.setPen(color)
    painter.drawText(QRectF(rect), flags, text)


def nice_length(mm: float) -> float:
    """The largest 1, 2 or 5 x 10^n not above ``mm`` (scale bar lengths)."""
    if mm <= 0:
        return 1.0
    exp = math.floor(math.log10(mm))
    for m in (5, 2, 1):
        if m * 10**exp <= mm:
            return float(m * 10**exp)
    return float(10**exp)


class SlicePanel(QFrame):
    """A titled slice view: image, crosshair and a footer with the value under the crosshair."""

    def __init__(self, key: str, *, error_map: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self.key = key
        self.error_map = error_map
        self.layer: Layer | None = None
        self.unit = ""
        self.setObjectName(f"panel_{key}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(key)
        self.title.setObjectName("panelTitle")
        self.title.setWordWrap(False)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.notice = QLabel("")
        self.notice.setObjectName("panelNotice")
        self.notice.setWordWrap(True)
        self.notice.setVisible(False)
        self.banner = QLabel("")  # use beyond training, device fallbacks: never hidden in a tooltip
        self.banner.setObjectName("panelBanner")
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet(BANNER_STYLE)
        self.banner.setVisible(False)
        self.value_prefix = "|Δ| " if error_map else "value "
        self.canvas = SliceCanvas()
        self.footer = QLabel(" ")
        self.footer.setObjectName("panelFooter")
        self.footer.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(1)
        lay.addWidget(self.title)
        lay.addWidget(self.notice)
        lay.addWidget(self.banner)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.footer)

        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setAutoDownsample(True)
        self.vb.addItem(self.image)
        self.vline = pg.InfiniteLine(angle=90, pen=CROSSHAIR_PEN, movable=False)
        self.hline = pg.InfiniteLine(angle=0, pen=CROSSHAIR_PEN, movable=False)
        for line in (self.vline, self.hline):
            line.setVisible(False)
            line.setZValue(10)
            self.vb.addItem(line, ignoreBounds=True)
        self.canvas.hint = "no volume"

    @property
    def vb(self) -> SliceViewBox:
        return self.canvas.vb

    def set_title(self, html: str, tooltip: str = "") -> None:
        self.title.setText(html)
        self.title.setToolTip(tooltip)

    def set_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def set_banner(self, lines: list[str]) -> None:
        """Warnings about what this panel shows (one per line); an empty list hides the banner."""
        self.banner.setText("\n".join(f"⚠ {line}" for line in lines))
        self.banner.setToolTip("\n".join(lines))
        self.banner.setVisible(bool(lines))

    def set_layer(self, layer: Layer | None, levels: tuple[float, float] | None = None) -> None:
        """Show ``layer`` in millimetre coordinates, with ``levels`` (no auto-levelling per slice)."""
        self.layer = layer
        if layer is None:
            self.image.clear()
            self.canvas.hint = "computing…"
            self.canvas.viewport().update()
            return
        kwargs = {"levels": levels} if levels is not None else {"autoLevels": False}
        self.image.setImage(layer.image, **kwargs)
        w, h = layer.extent_mm
        self.image.setRect(QRectF(0.0, 0.0, w, h))
        if self.canvas.hint:
            self.canvas.hint = ""
            self.canvas.viewport().update()

    def set_hint(self, text: str) -> None:
        self.canvas.hint = text
        if text:
            self.image.clear()
            self.layer = None
        self.canvas.viewport().update()

    def set_levels(self, low: float, high: float) -> None:
        self.image.setLevels((low, high))

    def set_warning(self, text: str) -> None:
        """A warning painted over the top of the image (empty: none)."""
        if text != self.canvas.warning:
            self.canvas.warning = text
            self.canvas.viewport().update()

    def value_at(self, x_mm: float, y_mm: float) -> float | None:
        if self.layer is None:
            return None
        rc = pixel_at(self.layer.image.shape, self.layer.extent_mm, x_mm, y_mm)
        return None if rc is None else float(self.layer.image[rc])

    def set_cursor(self, pos: tuple[float, float] | None, extra: str = "") -> None:
        """Crosshair at ``pos`` (mm) and the panel's own value there, in the volume's units."""
        if pos is None:
            self.vline.setVisible(False)
            self.hline.setVisible(False)
            self.footer.setText(" ")
            return
        x, y = pos
        self.vline.setPos(x)
        self.hline.setPos(y)
        self.vline.setVisible(True)
        self.hline.setVisible(True)
        value = self.value_at(x, y)
        if value is None:
            self.footer.setText("outside the slice")
            return
        unit = f" {self.unit}" if self.unit else ""
        self.footer.setText(f"{self.value_prefix}{format_value(value)}{unit}{extra}")


def two_line(title: str, detail: str) -> str:
    """Panel title: bold first line, dimmer second line (every panel has two, so rows align)."""
    return f"<b>{html.escape(title)}</b><br><span style='color:#9aa0a6'>{html.escape(detail)}</span>"


def format_value(v: float) -> str:
    a = abs(v)
    if a >= 1000 or v == int(v):
        return f"{v:.0f}" if a >= 1000 else f"{v:.1f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


class ViewLink:
    """Keeps every panel on the same centre and magnification, whatever its size.

    pyqtgraph's X/Y links assume views of equal size; panels here differ (top row, error row), so
    each view gets the same centre and the same zoom relative to its own fit of the slice.
    """

    def __init__(self, on_zoom: Callable[[float], None] | None = None):
        self.views: list[SliceViewBox] = []
        self.extent: tuple[float, float] = (1.0, 1.0)
        self.zoom = 1.0
        self.centre = (0.5, 0.5)
        self._busy = False
        self._on_zoom = on_zoom

    def add(self, vb: SliceViewBox) -> None:
        self.views.append(vb)
        vb.sigRangeChangedManually.connect(lambda *_, v=vb: self._follow(v))
        vb.userZoomed.connect(lambda v=vb: self._follow(v))
        vb.sigResized.connect(lambda v=vb: self._apply_to(v))

    def reset(self, extent: tuple[float, float] | None = None) -> None:
        if extent is not None:
            self.extent = (max(extent[0], 1e-3), max(extent[1], 1e-3))
        self.zoom = 1.0
        self.centre = (self.extent[0] / 2, self.extent[1] / 2)
        for v in self.views:
            self._apply_to(v)
        if self._on_zoom:
            self._on_zoom(self.zoom)

    def centre_on(self, x_mm: float, y_mm: float) -> None:
        self.centre = (float(x_mm), float(y_mm))
        for v in self.views:
            self._apply_to(v)

    def set_zoom(self, zoom: float) -> None:
        self.zoom = float(min(max(zoom, 0.25), 40.0))
        for v in self.views:
            self._apply_to(v)
        if self._on_zoom:
            self._on_zoom(self.zoom)

    def zoom_of(self, vb: SliceViewBox) -> float | None:
        """Magnification ``vb`` shows now, relative to fitting the slice (None before it has a size).

        Read from the view itself: while the wheel zooms one view, ``zoom`` is updated after it."""
        fit = self._fit_mm_per_px(vb)
        (x0, x1), _ = vb.viewRange()
        if fit is None or x1 <= x0:
            return None
        return fit / ((x1 - x0) / vb.width())

    def _fit_mm_per_px(self, vb: SliceViewBox) -> float | None:
        w, h = vb.width(), vb.height()
        if w < 2 or h < 2:
            return None
        return max(self.extent[0] / w, self.extent[1] / h) * 1.02

    def _follow(self, source: SliceViewBox) -> None:
        if self._busy:
            return
        zoom = self.zoom_of(source)
        if zoom is None:
            return
        (x0, x1), (y0, y1) = source.viewRange()
        self.zoom = zoom
        self.centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        for v in self.views:
            if v is not source:
                self._apply_to(v)
        if self._on_zoom:
            self._on_zoom(self.zoom)

    def _apply_to(self, vb: SliceViewBox) -> None:
        fit = self._fit_mm_per_px(vb)
        if fit is None:
            return
        mmpp = fit / self.zoom
        half_w, half_h = vb.width() * mmpp / 2, vb.height() * mmpp / 2
        cx, cy = self.centre
        self._busy = True
        try:
            vb.setRange(xRange=(cx - half_w, cx + half_w), yRange=(cy - half_h, cy + half_h), padding=0)
        finally:
            self._busy = False


def error_colormap() -> pg.ColorMap:
    return pg.colormap.get("inferno")


def finite_range(a: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)
