"""The real window, offscreen: open, drop, navigate, change model/scale/mode, export, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication, QMessageBox

from engine.io import load_volume
from medsr_viewer.state import ENHANCE, SIMULATE


def _open(qtbot, win, path):
    with qtbot.waitSignal(win.volumeLoaded, timeout=30_000):
        win.open_path(path)
    return win.state.loaded


def test_open_by_path_shows_labelled_sr(qtbot, make_window, wait_sr, cspine, carn_weights):
    win = make_window()
    win.use_weights(carn_weights)
    loaded = _open(qtbot, win, cspine)
    assert loaded.volume.shape == (42, 76, 77)
    result = wait_sr(win, model="new_carn", scale=2.0, mode=SIMULATE)
    sr_panel = win.workspace.panels["sr"]
    title = sr_panel.title.text()
    assert "SR — not acquired" in title and "new_carn ×2" in title
    assert result.sr.weights_sha256[:12] in title  # provenance on screen
    assert sr_panel.layer is not None and sr_panel.image.image is not None
    assert "PSNR" in win.inspector.metrics.text() and "Data range" in win.inspector.metrics.text()
    assert win.workspace.errors.colorbar.levels()[1] == result.error_max  # one shared colour scale
    errors = win.workspace.errors.panels
    assert errors[0].image.levels[1] == errors[1].image.levels[1] == result.error_max
    assert str(cspine) in win.settings.recent()


@pytest.mark.filterwarnings("ignore:Function.*QDragEnterEvent:DeprecationWarning")  # Qt 6.12: QPoint form
def test_drop_opens_the_dropped_file(qtbot, make_window, cspine):
    win = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(cspine))])
    enter = QDragEnterEvent(
        QPoint(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(win, enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(win.volumeLoaded, timeout=30_000):
        QApplication.sendEvent(win, drop)
    assert win.state.volume.source.name == cspine.name


def test_navigation_orientation_and_keys(qtbot, make_window, wait_sr, cspine):
    win = make_window()
    win.state.model = "bicubic"
    _open(qtbot, win, cspine)
    axis = win.state.axis
    wait_sr(win, model="bicubic")
    win.state.slice = 5
    result = wait_sr(win, index=5, axis=axis)
    assert result.request.index == 5 and win.workspace.slider.value() == 5
    qtbot.keyClick(win, Qt.Key.Key_PageUp)
    assert win.state.slice == 6
    win.workspace.panels["hr"].vb.sliceStep.emit(-1)  # mouse wheel
    assert win.state.slice == 5

    level0 = win.state.window
    win.workspace.panels["sr"].vb.windowDrag.emit(40.0, -20.0)  # right-drag: wider, brighter
    assert win.state.window.width > level0.width and win.state.window.level < level0.level
    win.controls.window_combo.setCurrentText("CT Lung")
    assert (win.state.window.level, win.state.window.width) == (-600, 1500)
    assert win.workspace.panels["hr"].image.levels[0] == -600 - 750

    applied = []
    win.controller.sliceResult.connect(lambda r: applied.append(r.request.index))
    for i in range(10, 20):  # fast scrolling: only the last slice may end up on screen
        win.state.slice = i
        qtbot.wait(5)
    wait_sr(win, index=19)
    qtbot.wait(300)
    assert win.workspace.last.request.index == 19
    assert set(applied[applied.index(19) :]) == {19}  # nothing older arrived after the current slice

    qtbot.keyClick(win, Qt.Key.Key_3)  # sagittal
    assert win.state.axis == 0
    result = wait_sr(win, axis=0, index=21)
    rows, cols = result.images["hr"].image.shape
    assert (rows, cols) == (76, 76)  # 77 superior-inferior rows cropped to an even size at x2
    w, h = result.images["hr"].extent_mm
    assert np.isclose(w, cols * 1.0) and np.isclose(h, rows * 1.0)
    assert win.workspace.panels["hr"].canvas.letters == ("A", "P", "S", "I")

    win.state.cursor = (10.5, 20.5)  # crosshair: a value in every panel, in the volume's units
    for panel in win.workspace.all_panels():
        assert panel.footer.text().startswith(("value", "|Δ|")), panel.key
    assert "voxel (i, j, k) = (21," in win.cursor_label.text()


def test_model_scale_and_mode_changes(qtbot, make_window, wait_sr, cspine, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSR_RESOURCES", str(tmp_path))  # as before training: no network has weights
    win = make_window()
    win.state.model = "bicubic"
    _open(qtbot, win, cspine)
    wait_sr(win, model="bicubic", scale=2.0)

    win.controls.model_combo.setCurrentIndex(win.controls.model_combo.findData("edsr"))
    assert win.state.model == "edsr"
    win.state.scale = 3.0
    result = wait_sr(win, model="edsr", scale=3.0)
    assert result.sr.fallback  # no trained weights: bicubic is shown and the user is told, on screen
    assert "no trained weights for edsr x3" in win.workspace.panels["sr"].notice.text()
    assert win.workspace.panels["sr"].notice.isVisibleTo(win)
    assert "SR unavailable" in win.workspace.panels["sr"].title.text()
    assert "(untrained)" in win.controls.model_combo.currentText()

    win.controls.model_combo.setCurrentIndex(win.controls.model_combo.findData("meta_srgan"))
    assert win.controls.scale_stack.currentWidget() is win.controls.scale_spin
    win.controls.scale_spin.setValue(2.5)
    assert win.state.scale == 2.5
    wait_sr(win, model="meta_srgan", scale=2.5)

    qtbot.keyClick(win, Qt.Key.Key_M)
    assert win.state.mode == ENHANCE
    result = wait_sr(win, mode=ENHANCE, model="meta_srgan")
    assert set(result.images) == {"input", "bicubic", "sr"}
    assert not win.workspace.panels["hr"].isVisibleTo(win)
    assert "Data consistency" in win.workspace.errors.panels[1].title.text()
    inp = result.images["input"].image
    assert result.images["sr"].image.shape == (round(inp.shape[0] * 2.5), round(inp.shape[1] * 2.5))


def test_export_nifti_round_trip_and_png(qtbot, make_window, wait_sr, cspine, carn_weights, tmp_path):
    win = make_window()
    win.use_weights(carn_weights)
    loaded = _open(qtbot, win, cspine)
    wait_sr(win, model="new_carn")
    png = win.export_png(tmp_path / "view.png")
    assert QImage(str(png)).width() > 400

    out = tmp_path / "sr.nii.gz"
    progress = []
    win.progress.valueChanged.connect(progress.append)
    with qtbot.waitSignal(win.exportFinished, timeout=60_000):
        win.export_volume(out)
    assert progress
    sr = load_volume(out)
    axis = win.state.axis
    expected = [n * 2 for n in loaded.volume.shape]
    expected[axis] = loaded.volume.shape[axis]
    assert sr.shape == tuple(expected)
    sp_in, sp_out = loaded.volume.spacing, sr.spacing
    for a in range(3):
        assert np.isclose(sp_out[a], sp_in[a] if a == axis else sp_in[a] / 2, rtol=1e-4)
    assert (tmp_path / "sr.json").exists()  # provenance sidecar


def test_bad_file_reports_an_error_and_the_window_keeps_working(
    qtbot, make_window, tmp_path, cspine, monkeypatch
):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file")
    win = make_window(dialogs=True)
    with qtbot.waitSignal(win.errorReported, timeout=30_000) as blocker:
        win.open_path(bad)
    title, message = blocker.args
    assert "broken.nii.gz" in message
    boxes = [d for d in win.open_dialogs if isinstance(d, QMessageBox)]
    assert boxes and boxes[0].isVisible() and "broken.nii.gz" in boxes[0].text()  # shown, non-blocking
    boxes[0].accept()
    _open(qtbot, win, cspine)  # still works
    assert win.state.volume is not None


def test_folder_with_several_series_asks_which(qtbot, make_window, shared_data):
    win = make_window()
    with qtbot.waitSignal(win.seriesChoiceRequested, timeout=60_000) as blocker:
        win.open_path(shared_data / "dicom")
    choice = blocker.args[0]
    assert len(choice.series) >= 2
    from medsr_viewer.loading import SeriesChooser

    dialog = SeriesChooser(choice, win)
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == len(choice.series)
    assert dialog.selected_uid() == choice.series[0].uid


def test_load_can_be_cancelled(qtbot, make_window, shared_data):
    win = make_window()
    win.open_path(shared_data / "dicom" / "rorden_trio_b17_t1_MPRAGE")
    assert win.loader.busy and win.cancel_button.isVisibleTo(win)
    win.cancel_background_work()
    assert not win.loader.busy
    qtbot.wait(200)
    assert win.io_pool.wait(30_000)
    assert win.state.volume is None  # nothing applied after cancel


def test_settings_persist(qtbot, make_window, cspine):
    win = make_window(settings_file="persist.ini")
    win.state.model = "wdsr"
    win.state.scale = 3.0
    win.state.mode = ENHANCE
    win.close()
    again = make_window(settings_file="persist.ini")
    assert (again.state.model, again.state.scale, again.state.mode) == ("wdsr", 3.0, ENHANCE)


def test_per_slice_plot_fills_and_click_jumps(qtbot, make_window, wait_sr, cspine):
    win = make_window(curves=True)
    win.state.model = "bicubic"
    win.set_pending_view(axis=0)
    _open(qtbot, win, cspine)
    with qtbot.waitSignal(win.controller.curvesFinished, timeout=60_000):
        pass
    plot = win.workspace.curves
    assert len(plot.points) == 42
    assert np.isfinite(plot.mean("psnr", "sr"))
    vb = plot.plots["psnr"].vb
    (_, _), (y0, y1) = vb.viewRange()
    scene_pt = vb.mapViewToScene(QPointF(8.0, (y0 + y1) / 2))  # slice 8 as numbered on screen
    widget_pt = plot.view.mapFromScene(scene_pt)
    with qtbot.waitSignal(plot.sliceClicked, timeout=2000):
        qtbot.mouseClick(plot.view.viewport(), Qt.MouseButton.LeftButton, pos=widget_pt)
    assert win.state.slice == 7
