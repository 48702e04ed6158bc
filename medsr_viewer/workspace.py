"""The comparison workspace: the image row (LR/input, bicubic, SR, HR), the error row, the per-slice
plot and the slice slider — all following one ``ViewerState`` and the controller's results.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QSpinBox, QSplitter, QVBoxLayout, QWidget

from medsr_viewer.comparison import ComparisonController
from medsr_viewer.error_maps import ErrorMapsView
from medsr_viewer.panels import SlicePanel, ViewLink, format_value, two_line
from medsr_viewer.pipeline import SliceRequest, SliceResult
from medsr_viewer.slice_metrics_plot import SliceMetricsPlot
from medsr_viewer.slicing import EDGE_LETTERS, SliceGeometry
from medsr_viewer.state import AXIS_NAMES, SIMULATE, LoadedVolume, ViewerState, WindowLevel
from medsr_viewer.zoom_sr import ZoomSR

IMAGE_KEYS = ("a", "bicubic", "sr", "hr")  # panel "a" shows LR (Simulate) or the input (Enhance)
STALE_OPACITY = 0.35
STALE_AFTER_MS = 150  # dim panels only if the new slice takes longer than this (avoids flicker)


def unit_of(loaded: LoadedVolume) -> str:
    return "HU" if loaded.volume.modality == "CT" else ""


class Workspace(QWidget):
    """Panels, error maps, per-slice plot and slider; applies results of the current request."""

    cursorInfo = Signal(str)  # status-bar text for the crosshair

    def __init__(self, state: ViewerState, controller: ComparisonController, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.controller = controller
        self.last: SliceResult | None = None  # the last result applied (preview or final)
        self.last_final: SliceResult | None = None
        self._view_key: tuple[int, int] | None = None

        self.panels = {k: SlicePanel(k) for k in IMAGE_KEYS}
        self.panels["sr"].setProperty("sr", True)
        row = QWidget()
        row_lay = QHBoxLayout(row)
        row_lay.setContentsMargins(0, 0, 0, 0)
        row_lay.setSpacing(4)
        for k in IMAGE_KEYS:
            row_lay.addWidget(self.panels[k], 1)
        self.errors = ErrorMapsView()
        self.curves = SliceMetricsPlot()
        self.curves.sliceClicked.connect(lambda i: setattr(self.state, "slice", i))

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("workspaceSplitter")
        self.splitter.addWidget(row)
        self.splitter.addWidget(self.errors)
        self.splitter.addWidget(self.curves)
        self.splitter.setStretchFactor(0, 5)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setStretchFactor(2, 2)
        self.splitter.setChildrenCollapsible(False)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("sliceSlider")
        self.slider.valueChanged.connect(lambda v: setattr(self.state, "slice", v))
        self.slice_spin = QSpinBox()
        self.slice_spin.setObjectName("sliceSpin")
        self.slice_spin.setKeyboardTracking(False)
        self.slice_spin.valueChanged.connect(lambda v: setattr(self.state, "slice", v - 1))
        self.slice_label = QLabel("")
        self.slice_label.setObjectName("dimLabel")
        slider_row = QHBoxLayout()
        slider_row.setContentsMargins(6, 0, 6, 2)
        title = QLabel("Slice")
        title.setObjectName("barLabel")
        slider_row.addWidget(title)
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.slice_spin)
        slider_row.addWidget(self.slice_label)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 0)
        lay.setSpacing(4)
        lay.addWidget(self.splitter, 1)
        lay.addLayout(slider_row)

        self._stale_timer = QTimer(self, singleShot=True, interval=STALE_AFTER_MS, timeout=self._mark_stale)
        self.link = ViewLink(on_zoom=lambda z: setattr(self.state, "zoom", z))
        for p in self.all_panels():
            self.link.add(p.vb)
            p.vb.sliceStep.connect(self.state.step_slice)
            p.vb.windowDrag.connect(self._window_drag)
            p.vb.cursorPicked.connect(lambda x, y: setattr(self.state, "cursor", (x, y)))

        ev = state.events
        ev.volume.connect(self._volume_changed)
        ev.axis.connect(lambda _a: self._plane_changed())
        ev.slice.connect(lambda _s: self._slice_changed())
        ev.window.connect(self._window_changed)
        ev.cursor.connect(self._cursor_changed)
        ev.mode.connect(lambda _m: self._mode_changed())
        ev.view_reset.connect(lambda _v: self._reset_view())
        for e in (ev.model, ev.scale, ev.blur, ev.device):
            e.connect(lambda _v: self._titles())
        controller.sliceResult.connect(self.apply_result)
        controller.sliceFailed.connect(self._slice_failed)
        controller.curvesReset.connect(self._curves_reset)
        controller.curvePoints.connect(self.curves.add_points)
        self._mode_changed()
        # After the workspace's own connections: it re-titles the panels it labels while zoomed.
        self.zoom_sr = ZoomSR(
            state, controller, self.panels["sr"], self.panels["bicubic"], self.link, self.restore_titles, self
        )

    def all_panels(self) -> list[SlicePanel]:
        return [*self.panels.values(), *self.errors.panels]

    def set_wheel_zooms(self, on: bool) -> None:
        """Plain wheel zooms around the cursor (ctrl+wheel steps slices), or the other way round."""
        for vb in self.link.views:
            vb.wheel_zooms = bool(on)

    def restore_titles(self) -> None:
        """Titles of the comparison's own images (after zoom SR titled the panels for the display scale)."""
        self._titles()
        last, s = self.last_final, self.state
        if last is not None and (last.request.model, last.request.scale) == (s.model, s.scale):
            self._show_sr_label(last)

    # --- state events --------------------------------------------------------------------------
    def _volume_changed(self, loaded: LoadedVolume) -> None:
        self.last = self.last_final = None
        unit = unit_of(loaded)
        for p in self.panels.values():
            p.unit = unit
            p.set_hint("computing…")
        self.errors.set_unit(unit)
        self.errors.clear()
        self._plane_changed()

    def _plane_changed(self) -> None:
        loaded = self.state.loaded
        if loaded is None:
            return
        n = self.state.n_slices
        for w, hi in ((self.slider, n - 1), (self.slice_spin, n)):
            w.blockSignals(True)
            w.setRange(0 if w is self.slider else 1, max(hi, 0 if w is self.slider else 1))
            w.blockSignals(False)
        for p in self.all_panels():
            p.canvas.letters = EDGE_LETTERS[self.state.axis]
            p.canvas.viewport().update()
        self._slice_changed()
        self._titles()
        self._reset_view()

    def _reset_view(self) -> None:
        loaded = self.state.loaded
        if loaded is None:
            return
        geo = SliceGeometry.of(loaded.volume, self.state.axis, self.state.slice)
        self._view_key = (loaded.volume_id, self.state.axis)
        self.link.reset(geo.extent_mm)

    def _slice_changed(self) -> None:
        s = self.state
        if s.loaded is None:
            return
        for w, v in ((self.slider, s.slice), (self.slice_spin, s.slice + 1)):
            if w.value() != v:
                w.blockSignals(True)
                w.setValue(v)
                w.blockSignals(False)
        self.slice_label.setText(f"/ {s.n_slices}  ·  {AXIS_NAMES[s.axis]}")
        self.curves.set_current(s.slice)
        self._stale_timer.start()
        self._cursor_changed(s.cursor)

    def _mark_stale(self) -> None:
        """Until the new slice arrives, dim what is shown so it cannot be taken for the new slice."""
        current = self.controller.slices.current
        if self.last_final is not None and self.last_final.request == current:
            return
        shown = self.last.request if self.last is not None else None
        for key, p in [*self.panels.items(), *(("error", e) for e in self.errors.panels)]:
            fresh = shown == current and key in ("a", "bicubic", "hr")  # the preview already shows these
            if p.layer is not None and not fresh:
                p.image.setOpacity(STALE_OPACITY)
        sr = self.panels["sr"]
        sr.canvas.hint = "computing SR…"
        sr.canvas.viewport().update()

    def _window_changed(self, wl: WindowLevel) -> None:
        for p in self.panels.values():
            p.set_levels(wl.low, wl.high)

    def _window_drag(self, dx: float, dy: float) -> None:
        loaded = self.state.loaded
        if loaded is None:
            return
        wl = self.state.window
        step = max(wl.width, loaded.data_range * 0.01) / 250.0
        self.state.window = WindowLevel(
            wl.level + dy * step, max(wl.width + dx * step, loaded.data_range * 1e-4)
        )

    def _mode_changed(self) -> None:
        simulate = self.state.mode == SIMULATE
        self.panels["hr"].setVisible(simulate)
        self.errors.set_mode(self.state.mode)
        self._stale_timer.start()
        self._titles()

    def _titles(self) -> None:
        s = self.state
        sc = f"×{s.scale:g}"
        blur = " + blur (k3, σ1)" if s.blur else ""
        if s.mode == SIMULATE:
            self.panels["a"].set_title(
                two_line("LR input", f"simulated {sc} degradation{blur}"),
                "Antialiased bicubic downscale of the loaded slice (the engine's degradation)",
            )
            self.panels["hr"].set_title(two_line("HR — ground truth", "the loaded slice"))
        else:
            self.panels["a"].set_title(two_line("Input", "as acquired (native resolution)"))
        self.panels["bicubic"].set_title(two_line(f"Bicubic {sc}", "interpolated"))
        last = self.last_final
        if last is None or last.request.model != s.model or last.request.scale != s.scale:
            self.panels["sr"].set_title(two_line(f"SR — not acquired · {s.model} {sc}", "computing…"))

    def _curves_reset(self, request) -> None:
        loaded = self.state.loaded
        if loaded is None or request is None:
            return
        self.curves.reset(
            loaded.volume.shape[request.axis], request.mode, f"{request.model} ×{request.scale:g}"
        )
        self.curves.set_current(self.state.slice)

    # --- results -------------------------------------------------------------------------------
    def apply_result(self, result: SliceResult) -> None:
        loaded = self.state.loaded
        if loaded is None or result.request.volume_id != loaded.volume_id:
            return
        key = (result.request.volume_id, result.request.axis)
        if key != self._view_key:
            self._view_key = key
            self.link.reset(result.geometry.extent_mm)
        wl = self.state.window
        levels = (wl.low, wl.high)
        simulate = result.request.mode == SIMULATE
        mapping = {"a": "lr" if simulate else "input", "bicubic": "bicubic", "sr": "sr", "hr": "hr"}
        for key_panel, key_img in mapping.items():
            layer = result.images.get(key_img)
            panel = self.panels[key_panel]
            if layer is not None:
                if layer is not panel.layer:  # the final result repeats the preview's layers
                    panel.set_layer(layer, levels)
                panel.image.setOpacity(1.0)
        self.last = result
        if result.final:
            self.last_final = result
            self._show_sr_label(result)
            self.errors.show_result(result)
            for p in self.errors.panels:
                p.image.setOpacity(1.0)
        self._cursor_changed(self.state.cursor)

    def _show_sr_label(self, result: SliceResult) -> None:
        info = result.sr
        panel = self.panels["sr"]
        if info is None:
            return
        tip = (
            f"Super-resolved by {info.ran} ×{info.scale:g}; weights sha256 {info.weights_sha256 or '—'}; "
            f"{info.ms:.0f} ms on this slice. Computed, not acquired: not for primary diagnosis."
        )
        panel.set_title(two_line(info.headline, info.detail), tip)
        panel.set_notice(f"⚠ {info.notice}" if info.fallback else "")
        panel.setProperty("fallback", info.fallback)
        panel.style().unpolish(panel)
        panel.style().polish(panel)

    def _slice_failed(self, request: SliceRequest, message: str) -> None:
        for p in self.all_panels():
            p.set_hint(message)

    # --- crosshair -----------------------------------------------------------------------------
    def _cursor_changed(self, pos) -> None:
        loaded = self.state.loaded
        if loaded is None:
            return
        if pos is None:
            for p in self.all_panels():
                p.set_cursor(None)
            self.cursorInfo.emit("")
            return
        geo = SliceGeometry.of(loaded.volume, self.state.axis, self.state.slice)
        ijk = geo.voxel_at(*pos)
        for p in self.all_panels():
            p.set_cursor(pos)
        if ijk is None:
            self.cursorInfo.emit("crosshair outside the slice")
            return
        value = float(loaded.volume.data[ijk])
        ras = loaded.volume.affine @ np.array([*ijk, 1.0])
        unit = unit_of(loaded)
        self.panels["hr" if self.state.mode == SIMULATE else "a"].footer.setText(
            self.panels["hr" if self.state.mode == SIMULATE else "a"].footer.text() + f"  · voxel {ijk}"
        )
        self.cursorInfo.emit(
            f"voxel (i, j, k) = {ijk}   ·   RAS ({ras[0]:.1f}, {ras[1]:.1f}, {ras[2]:.1f}) mm"
            f"   ·   value {format_value(value)} {unit}".rstrip()
        )
