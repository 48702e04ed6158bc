"""Scroll-to-zoom SR in the real window, offscreen: the wheel zooms around the cursor, the SR panel shows
exactly ZoomEngine.render of the visible region at the display scale (bicubic first), stale renders
never reach the screen, the panel says when the scale is outside the trained range, and what the wheel
does is a persisted preference."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from engine.models import build_model
from engine.weights import save_weights
from engine.zoom import ZoomEngine, windowed
from medsr_viewer.state import ENHANCE, SIMULATE, WindowLevel
from medsr_viewer.synthetic_input import send_wheel
from medsr_viewer.zoom_region import display_scale, visible_region

ARGS = {"blocks": 2, "width": 16}  # a small meta_srgan: the same code paths, quick on a CPU


@pytest.fixture(scope="module")
def meta_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoom_sr") / "meta_srgan_small.safetensors"
    save_weights(build_model("meta_srgan", **ARGS), path, arch="meta_srgan", args=ARGS, scale=None)
    return path


def _open(qtbot, win, path):
    with qtbot.waitSignal(win.volumeLoaded, timeout=30_000):
        win.open_path(path)


def _meta_window(qtbot, make_window, wait_sr, cspine, meta_weights, mode=ENHANCE):
    win = make_window()
    win.state.mode = mode
    win.use_weights(meta_weights)
    _open(qtbot, win, cspine)
    wait_sr(win, model="meta_srgan", mode=mode)
    return win


def wheel(panel, pos: QPoint, delta: int = 120, ctrl: bool = False) -> None:
    """A real wheel event at ``pos`` (viewport pixels) over ``panel``."""
    send_wheel(panel.canvas.viewport(), pos, delta, ctrl)


def mm_under(panel, pos: QPoint) -> tuple[float, float]:
    p = panel.vb.mapSceneToView(panel.canvas.mapToScene(pos))
    return p.x(), p.y()


def centre(panel) -> QPoint:
    viewport = panel.canvas.viewport()
    return QPoint(viewport.width() // 2, viewport.height() // 2)


def input_pixel_mm(win) -> tuple[float, float]:
    layer = win.workspace.last.images["input" if win.state.mode == ENHANCE else "lr"]
    return layer.extent_mm[0] / layer.image.shape[1], layer.extent_mm[1] / layer.image.shape[0]


def screen_scale(win) -> float:
    """Screen pixels per input pixel in the SR panel now."""
    vb = win.workspace.panels["sr"].vb
    (x0, x1), _ = vb.viewRange()
    return display_scale(input_pixel_mm(win), (x1 - x0) / vb.width())


def zoom_to_scale(qtbot, win, scale: float):
    """Zoom (linked views, no wheel) until the SR panel shows ``scale`` screen pixels per input pixel."""
    link = win.workspace.link
    with qtbot.waitSignal(win.workspace.zoom_sr.srShown, timeout=30_000) as shown:
        link.set_zoom(link.zoom * scale / screen_scale(win))
    return shown.args[0]


def test_visible_region_is_the_view_in_output_pixels_plus_a_halo():
    extent, shape = (76.0, 42.0), (42, 76)  # 1 mm input pixels, 76 wide and 42 high
    whole = visible_region((-10.0, -10.0, 90.0, 60.0), 1 / 1.5, shape, extent, halo=4)
    assert whole.scale == 1.5 and whole.box == (0, 0, 63, 114) and whole.rect_mm == (0.0, 0.0, 76.0, 42.0)
    part = visible_region((20.0, 10.0, 30.0, 15.0), 1 / 3.0, shape, extent, halo=4)
    assert part.scale == 3.0 and part.box == (30 - 4, 60 - 4, 45 + 4, 90 + 4)
    assert part.rect_mm == pytest.approx((56 / 3, 26 / 3, 38 / 3, 23 / 3))  # output pixels of 1/3 mm
    assert whole.contains(whole) and not whole.contains(part)  # another scale
    assert visible_region((100.0, 0.0, 120.0, 10.0), 1 / 3.0, shape, extent) is None  # beside the slice


def test_wheel_zooms_around_the_cursor(qtbot, make_window, wait_sr, cspine):
    win = make_window()
    win.state.model = "bicubic"
    _open(qtbot, win, cspine)
    wait_sr(win, model="bicubic")
    panel = win.workspace.panels["hr"]
    viewport = panel.canvas.viewport()
    for pos in (QPoint(viewport.width() // 3, viewport.height() * 2 // 3), QPoint(viewport.width() - 20, 15)):
        before, zoom = mm_under(panel, pos), win.workspace.link.zoom
        wheel(panel, pos, 120)
        assert win.workspace.link.zoom > zoom * 1.2
        assert np.allclose(mm_under(panel, pos), before, atol=1e-3)  # the point under the cursor stays
    sr = win.workspace.panels["sr"]  # the other panels follow: same centre, same magnification
    (x0, x1), _ = panel.vb.viewRange()
    (u0, u1), _ = sr.vb.viewRange()
    assert np.isclose((x0 + x1) / 2, (u0 + u1) / 2)
    assert np.isclose(win.workspace.link.zoom_of(sr.vb), win.workspace.link.zoom)
    assert not win.workspace.zoom_sr.active  # bicubic in the SR panel: nothing to re-render


@pytest.mark.parametrize("mode", [ENHANCE, SIMULATE])
def test_zoomed_sr_is_the_engines_render_at_exactly_the_display_scale(
    qtbot, make_window, wait_sr, cspine, meta_weights, mode
):
    win = _meta_window(qtbot, make_window, wait_sr, cspine, meta_weights, mode)
    zoom = win.workspace.zoom_sr
    sr, bicubic = win.workspace.panels["sr"], win.workspace.panels["bicubic"]
    zoom_to_scale(qtbot, win, 2.2)
    order = []
    zoom.placeholderShown.connect(lambda view: order.append(("bicubic", view)))
    zoom.srShown.connect(lambda result: order.append(("sr", result)))
    painted = []
    sr.canvas.painted.connect(lambda: painted.append((zoom.view, zoom.sr_placeholder.isVisible())))
    with qtbot.waitSignal(zoom.srShown, timeout=30_000):
        wheel(sr, centre(sr), 120)
        assert order and order[0][0] == "bicubic"  # shown while the wheel event was handled
        assert zoom.sr_placeholder.isVisible() and zoom.bicubic_item.isVisible()
        assert painted and painted[0] == (zoom.view, True)  # and painted before the event returned
        assert not sr.image.isVisible() and not bicubic.image.isVisible()  # covered: not drawn
    view = zoom.shown_view
    assert view is zoom.view and zoom.sr_item.isVisible() and not zoom.sr_placeholder.isVisible()

    # exactly the display scale: one output pixel per screen pixel
    layer = win.workspace.last.images["input" if mode == ENHANCE else "lr"]
    (x0, x1), _ = sr.vb.viewRange()
    mm_per_px = (x1 - x0) / sr.vb.width()
    assert view.region.scale == screen_scale(win) and 2.5 < view.region.scale < 4.0
    rect = zoom.sr_item.mapRectToView(zoom.sr_item.boundingRect())
    out_w = zoom.engine.output_shape(view.key, view.region.scale)[1]  # round(w x scale) pixels: at most
    ratio = rect.width() / zoom.sr_item.image.shape[1] / mm_per_px  # half a pixel over the whole width
    assert abs(ratio - 1.0) <= 0.5 / out_w + 1e-9

    # the picture is the engine's render of that box, and bicubic of the same box beside it
    key, scale, box = view.key, view.region.scale, view.region.box
    expected = zoom.engine.render(key, scale, box).image
    span = win.state.loaded.normalizer.span
    np.testing.assert_allclose(zoom.sr_item.image, expected, atol=1e-4 * span, rtol=0)
    bicubic_values = zoom.values(zoom.bicubic_item)
    np.testing.assert_allclose(
        bicubic_values, ZoomEngine.placeholder(layer.image, scale, box).image, atol=1e-4 * span
    )
    # the bicubic panel paints its values windowed to uint8, through the state's window
    wl = win.state.window
    assert zoom.bicubic_item.image.dtype == np.uint8
    assert np.abs(zoom.bicubic_item.image.astype(int)
                  - windowed(bicubic_values, (wl.low, wl.high)).astype(int)).max() <= 1
    narrower = WindowLevel(wl.level, wl.width / 2)  # a new window re-windows the values, not the bytes
    win.state.window = narrower
    rewindowed = windowed(bicubic_values, (narrower.low, narrower.high))
    np.testing.assert_array_equal(zoom.bicubic_item.image, rewindowed)
    win.state.window = wl
    assert f"meta_srgan ×{scale:.3g}</b>" in sr.title.text() and "display scale" in sr.title.text()
    assert "display scale" in bicubic.title.text()

    win.state.reset_view()  # back to the fit: the comparison's own images and titles
    assert not zoom.active and not zoom.sr_item.isVisible() and not zoom.bicubic_item.isVisible()
    assert sr.image.isVisible() and bicubic.image.isVisible()
    assert "display scale" not in sr.title.text() and "meta_srgan ×2" in sr.title.text()


def test_a_stale_render_never_reaches_the_screen(
    qtbot, make_window, wait_sr, cspine, meta_weights, monkeypatch
):
    win = _meta_window(qtbot, make_window, wait_sr, cspine, meta_weights)
    zoom = win.workspace.zoom_sr
    sr = win.workspace.panels["sr"]
    zoom_to_scale(qtbot, win, 1.5)  # the slice is encoded from here on

    gate, calls = threading.Event(), []
    render = ZoomEngine.render

    def first_one_slow(self, key, scale, box, **kwargs):
        calls.append(scale)
        if len(calls) == 1:
            gate.wait(20)
        return render(self, key, scale, box, **kwargs)

    monkeypatch.setattr(ZoomEngine, "render", first_one_slow)
    shown = []
    zoom.srShown.connect(lambda result: shown.append(result.scale))
    dropped = zoom.renders.dropped
    wheel(sr, centre(sr), 120)
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=10_000)  # the first render is running, held
    stale = zoom.view
    wheel(sr, centre(sr), 120)
    latest = zoom.view
    assert latest.region.scale > stale.region.scale
    gate.set()
    qtbot.waitUntil(lambda: zoom.shown_view == latest and zoom.renders.dropped > dropped, timeout=10_000)
    assert shown == [latest.region.scale]  # the held render finished, and was dropped
    np.testing.assert_allclose(
        zoom.sr_item.image, render(zoom.engine, latest.key, latest.region.scale, latest.region.box).image
    )


def test_outside_the_trained_range_the_panel_says_so(qtbot, make_window, wait_sr, cspine, meta_weights):
    win = _meta_window(qtbot, make_window, wait_sr, cspine, meta_weights)
    sr = win.workspace.panels["sr"]
    result = zoom_to_scale(qtbot, win, 5.2)
    assert result.source == "sr+bicubic"
    assert sr.canvas.warning == "beyond trained range: SR ×4 + bicubic ×1.3"
    assert "meta_srgan ×4 + bicubic ×1.3" in sr.title.text() and "display scale ×5.2" in sr.title.text()

    result = zoom_to_scale(qtbot, win, 1.05)
    assert result.source == "bicubic"
    assert sr.canvas.warning == "below trained range (1.1-4): bicubic ×1.05"
    assert "Bicubic ×1.05 (display scale" in sr.title.text()

    result = zoom_to_scale(qtbot, win, 3.0)
    assert result.source == "sr" and sr.canvas.warning == ""


def test_a_new_slice_hides_the_old_region_until_its_own_is_ready(
    qtbot, make_window, wait_sr, cspine, meta_weights
):
    win = _meta_window(qtbot, make_window, wait_sr, cspine, meta_weights)
    zoom = win.workspace.zoom_sr
    zoom_to_scale(qtbot, win, 3.0)
    index = win.state.slice
    with qtbot.waitSignal(zoom.srShown, timeout=30_000):
        qtbot.keyClick(win, Qt.Key.Key_PageUp)  # Page Up steps slices whatever the wheel does
        assert win.state.slice == index + 1
        assert not zoom.sr_item.isVisible()  # the previous slice's SR is never shown over this one
    assert zoom.shown_view.key.index == index + 1 and zoom.sr_item.isVisible()


def test_the_wheel_preference_swaps_zoom_and_slices_and_persists(qtbot, make_window, wait_sr, cspine):
    win = make_window(settings_file="wheel.ini")
    win.state.model = "bicubic"
    _open(qtbot, win, cspine)
    wait_sr(win, model="bicubic")
    panel, link = win.workspace.panels["a"], win.workspace.link
    assert win.act_wheel_zooms.isChecked()  # the default: the wheel zooms
    index, zoom = win.state.slice, link.zoom
    wheel(panel, centre(panel), 120)
    assert win.state.slice == index and link.zoom > zoom
    zoom = link.zoom
    wheel(panel, centre(panel), 120, ctrl=True)
    assert win.state.slice == index + 1 and link.zoom == zoom

    win.act_wheel_zooms.trigger()  # View › Mouse wheel zooms, unchecked
    assert not win.act_wheel_zooms.isChecked()
    wheel(panel, centre(panel), -120)
    assert win.state.slice == index and link.zoom == zoom
    wheel(panel, centre(panel), 120, ctrl=True)
    assert link.zoom > zoom and win.state.slice == index
    win.close()

    again = make_window(settings_file="wheel.ini")
    assert not again.act_wheel_zooms.isChecked()
    assert all(not vb.wheel_zooms for vb in again.workspace.link.views)


def test_windowed_display_copy_paints_as_pyqtgraph_paints_the_values(qtbot, cspine):
    """The placeholder's uint8 copy looks exactly like the float image pyqtgraph would have windowed."""
    import pyqtgraph as pg

    from engine.io import load_volume

    data = np.asarray(load_volume(cspine).data, dtype=np.float32)
    values = np.ascontiguousarray(data[:, :, data.shape[2] // 2])
    levels = (float(np.percentile(values, 5)), float(np.percentile(values, 90)))
    item = pg.ImageItem(axisOrder="row-major")
    item.setImage(values, levels=levels)
    item.render()
    qimage = item.qimage
    rows = np.frombuffer(qimage.constBits(), dtype=np.uint8).reshape(qimage.height(), qimage.bytesPerLine())
    assert qimage.format() == qimage.Format.Format_Grayscale8
    np.testing.assert_array_equal(rows[:, : values.shape[1]], windowed(values, levels))
