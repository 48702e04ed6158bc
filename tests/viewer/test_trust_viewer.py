"""Trust, in the real window: hostile files, warnings never dropped, unexpected errors shown and
logged, SR labelled everywhere, out-of-range banner, model-disagreement map, GPU out-of-memory notes."""

from __future__ import annotations

import json
import logging
import threading

import nibabel as nib
import numpy as np
import pytest
import torch
from PySide6.QtCore import QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMessageBox

from engine.inference import Upscaler
from engine.models import build_model
from engine.weights import save_weights
from medsr_viewer.about import AboutDialog
from medsr_viewer.exporting import HEADER_PX
from medsr_viewer.logging_setup import (
    UNEXPECTED_TITLE,
    install_exception_hooks,
    setup_logging,
    uninstall_exception_hooks,
)
from medsr_viewer.state import ENHANCE, SIMULATE
from tests.engine.test_volume_io import _make_bad_input, _raw_nifti

# pydicom warns as it reads the damaged files; what the window shows is what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:(End of file reached|Invalid value for VR):UserWarning")

BAD_FILES = [
    "empty .nii.gz",
    "random .nii",
    "corrupt gzip crc",
    "4D NIfTI",
    "DICOM without pixel data",
    "folder without DICOM",
    "non-existent path",
]


def _open(qtbot, win, path):
    with qtbot.waitSignal(win.volumeLoaded, timeout=30_000):
        win.open_path(path)
    return win.state.loaded


def _weights(path, arch, scale, card=None, seed=None):
    """A real weights file; ``seed`` perturbs every parameter so the network differs from bicubic."""
    model = build_model(arch, scale)
    if seed is not None:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    save_weights(model, path, arch=arch, args={}, scale=scale, card=card)
    return path


@pytest.fixture
def viewer_log(tmp_path, monkeypatch):
    """The viewer's log set up as at start-up (in a temporary user folder), then put back."""
    monkeypatch.setenv("MEDSR_USER_DIR", str(tmp_path / "user"))
    root = logging.getLogger()
    workers = logging.getLogger("medsr_viewer.workers")
    saved = (root.level, list(root.handlers), workers.level)
    path = setup_logging()
    yield path
    uninstall_exception_hooks()
    for h in list(root.handlers):
        if h not in saved[1]:
            root.removeHandler(h)
            h.close()
    root.setLevel(saved[0])
    workers.setLevel(saved[2])


# --- bad input ------------------------------------------------------------------------------------
def test_each_bad_file_shows_a_dialog_naming_it_and_the_window_keeps_working(
    qtbot, make_window, wait_sr, tmp_path, cspine, shared_data
):
    win = make_window(dialogs=True)
    win.state.model = "bicubic"
    _open(qtbot, win, cspine)
    wait_sr(win, model="bicubic")
    for i, kind in enumerate(BAD_FILES):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        bad = _make_bad_input(kind, folder, shared_data)
        with qtbot.waitSignal(win.errorReported, timeout=30_000) as blocker:
            win.open_path(bad)
        title, message = blocker.args
        assert title == "Cannot open"
        assert bad.name in message, (kind, message)
        reason = message.split(f"{bad.name}:", 1)[-1].strip()
        assert len(reason) > 5 and "\n" not in message, (kind, message)
        boxes = [d for d in win.open_dialogs if isinstance(d, QMessageBox) and d.isVisible()]
        assert boxes and bad.name in boxes[-1].text(), kind  # shown without blocking the test
        boxes[-1].accept()
        assert win.state.volume.source == cspine, kind  # the volume on screen is untouched
    win.state.slice = 10  # and the window still computes
    assert wait_sr(win, index=10).sr is not None
    assert not win.volume_notice.isVisible()


def test_nan_voxels_load_with_every_warning_on_screen(qtbot, make_window, wait_sr, tmp_path, cspine):
    data = np.asarray(nib.load(cspine).dataobj, dtype=np.float32)
    data[10:12, 30:40, 30:40] = np.nan
    # a second warning: a voxel size of 0 stored in the header (1 mm is assumed)
    path = _raw_nifti(tmp_path / "nan_voxels.nii", data, pixdim=[1, 1, 1, 0, 1, 1, 1, 1])

    win = make_window()
    win.state.model = "bicubic"
    loaded = _open(qtbot, win, path)
    warnings = loaded.volume.metadata["warnings"]
    assert len(warnings) == 2 and any("non-finite voxels replaced" in w for w in warnings)
    assert win.volume_notice.isVisible() and "2 warnings" in win.volume_notice.text()
    for w in warnings:  # every one, not only the first
        assert w in win.volume_notice.toolTip()
        assert w in win.inspector.volume_info.text()
    assert warnings[0] in win.statusBar().currentMessage()
    win.volume_notice.click()  # details in a window the user can leave open
    assert win.volume_notice.box.isVisible() and not win.volume_notice.box.isModal()
    win.volume_notice.box.close()
    result = wait_sr(win, model="bicubic")
    assert all(np.isfinite(layer.image).all() for layer in result.images.values())


def test_constant_volume_is_shown_and_said_to_be_constant(qtbot, make_window, wait_sr, tmp_path):
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.full((20, 24, 16), 7, np.int16), np.eye(4)), path)
    win = make_window()
    win.state.model = "bicubic"
    _open(qtbot, win, path)
    result = wait_sr(win, model="bicubic")
    assert win.workspace.panels["sr"].layer is not None
    assert "constant" in win.volume_notice.toolTip() and win.volume_notice.isVisible()
    assert result.scores["sr"] is None and "constant" in win.inspector.metrics.text()


# --- unexpected errors ----------------------------------------------------------------------------
@pytest.mark.qt_no_exception_capture
def test_unexpected_exceptions_are_logged_and_shown_with_the_log_path(qtbot, make_window, viewer_log):
    assert viewer_log.exists() and viewer_log.parent.name == "logs"  # created at start-up
    assert viewer_log.name == "medsr-viewer.log"
    install_exception_hooks()
    win = make_window(dialogs=True)

    def broken_slot():
        raise ZeroDivisionError("broken slot for the test")

    with qtbot.waitSignal(win.errorReported, timeout=10_000) as blocker:
        QTimer.singleShot(0, broken_slot)  # raised inside a Qt slot: PySide calls sys.excepthook
    title, message = blocker.args
    assert title == UNEXPECTED_TITLE and "ZeroDivisionError" in message and str(viewer_log) in message
    box = next(d for d in win.open_dialogs if d.windowTitle() == UNEXPECTED_TITLE)
    assert box.isVisible() and str(viewer_log) in box.text()

    def broken_thread():
        raise KeyError("broken worker thread")

    threading.Thread(target=broken_thread, name="test-thread").start()  # while the dialog is open:
    qtbot.waitUntil(lambda: "KeyError" in win.statusBar().currentMessage(), timeout=10_000)
    assert sum(d.windowTitle() == UNEXPECTED_TITLE for d in win.open_dialogs) == 1  # no second dialog
    box.accept()

    with qtbot.waitSignal(win.errorReported, timeout=10_000) as blocker:  # a failing state subscriber
        win.state.events.zoom.connect(lambda _z: [][1])
        win.state.zoom = 3.0
    assert "IndexError" in blocker.args[1]

    for h in logging.getLogger().handlers:
        h.flush()
    text = viewer_log.read_text()
    for what in ("broken slot for the test", "broken worker thread", "IndexError"):
        assert what in text
    assert text.count("Traceback (most recent call last)") >= 3
    assert win.isVisible()  # the window stayed open


# --- SR never passes for acquired data -------------------------------------------------------------
def test_sr_png_and_nifti_exports_carry_model_scale_and_hash(
    qtbot, make_window, wait_sr, cspine, carn_weights, tmp_path
):
    win = make_window()
    win.use_weights(carn_weights)
    _open(qtbot, win, cspine)
    result = wait_sr(win, model="new_carn", scale=2.0)
    sha = result.sr.weights_sha256
    title = win.workspace.panels["sr"].title.text()
    assert "SR — not acquired" in title and "new_carn ×2" in title and sha[:12] in title

    png = win.export_png(tmp_path / "view.png")
    image = QImage(str(png))
    label = image.text("Title")
    assert "new_carn ×2" in label and sha[:12] in label and "not acquired" in image.text("Disclaimer")
    header = image.copy(0, 0, image.width(), HEADER_PX)  # the label is burnt into the pixels too
    bright = sum(
        1
        for x in range(0, header.width(), 2)
        for y in range(header.height())
        if header.pixelColor(x, y).lightness() > 180
    )
    assert bright > 200

    with qtbot.waitSignal(win.exportFinished, timeout=120_000):
        win.export_volume(tmp_path / "sr.nii.gz")
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["model"] == "new_carn" and sidecar["scale"] == 2.0 and sidecar["weights_sha256"] == sha
    assert "not for primary diagnosis" in sidecar["disclaimer"]


def test_out_of_range_banner_over_the_sr_panel(qtbot, make_window, wait_sr, cspine, tmp_path):
    card = {"scales_trained": [2.0], "modalities": ["CT"], "training_spacing_mm": [0.1, 0.2]}
    weights = _weights(tmp_path / "ct_only.safetensors", "new_carn", 2.0, card=card)
    win = make_window()
    win.use_weights(weights)
    _open(qtbot, win, cspine)  # an MR with 1 mm voxels
    wait_sr(win, model="new_carn", mode=SIMULATE)
    banner = win.workspace.panels["sr"].banner
    assert banner.isVisible()
    assert "new_carn was trained on CT only, not MR" in banner.text()
    assert "1 x 1 mm pixels" in banner.text() and "0.1-0.2 mm" in banner.text()
    win.state.mode = ENHANCE  # x2 beyond 1 mm: 0.5 mm pixels, still far from 0.1-0.2
    wait_sr(win, model="new_carn", mode=ENHANCE)
    assert "0.5 x 0.5 mm" in banner.text()
    win.state.model = "bicubic"  # not a network: nothing to warn about
    wait_sr(win, model="bicubic")
    assert not banner.isVisible()


def test_gpu_out_of_memory_falls_back_and_says_so(
    qtbot, make_window, wait_sr, cspine, carn_weights, monkeypatch
):
    win = make_window()
    win.use_weights(carn_weights)
    _open(qtbot, win, cspine)
    wait_sr(win, model="new_carn")
    up = win.controller.models.resolve("new_carn", 2.0, "auto", str(carn_weights)).upscaler
    assert not win.workspace.panels["sr"].banner.isVisible()

    # A stand-in CUDA device: moving tensors there is a no-op, and every run there is out of memory.
    real_to, real_tiled = torch.Tensor.to, Upscaler._run_tiled

    def to(self, *args, **kwargs):
        if args and isinstance(args[0], torch.device) and args[0].type == "cuda":
            return self
        return real_to(self, *args, **kwargs)

    def run_tiled(self, lr, scale, tile):
        if self.device.type == "cuda":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_tiled(self, lr, scale, tile)

    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(Upscaler, "_run_tiled", run_tiled)
    up.device = torch.device("cuda")
    win.state.slice = win.state.slice + 1
    result = wait_sr(win, model="new_carn", index=win.state.slice)
    assert not result.sr.fallback and np.isfinite(result.images["sr"].image).all()  # still SR, on CPU
    assert up.device.type == "cpu" and any("now runs on CPU" in n for n in up.notes)
    banner = win.workspace.panels["sr"].banner
    assert banner.isVisible() and "out of memory" in banner.text() and "now runs on CPU" in banner.text()
    assert "out of memory" in win.statusBar().currentMessage()


# --- model disagreement ---------------------------------------------------------------------------
def test_disagreement_map_replaces_the_error_row(qtbot, make_window, wait_sr, cspine, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSR_RESOURCES", str(tmp_path / "resources"))  # only the two below are trained
    carn = _weights(tmp_path / "carn.safetensors", "new_carn", 2.0, seed=1)
    edsr = _weights(tmp_path / "edsr.safetensors", "edsr", 2.0, seed=2)
    win = make_window()
    win.use_weights(carn)
    win.use_weights(edsr)
    _open(qtbot, win, cspine)
    result = wait_sr(win, model="edsr")
    view = win.disagreement
    assert view.networks() == ["edsr", "new_carn"]  # by default every trained one (the SR panel's first)
    with qtbot.waitSignal(view.resultShown, timeout=60_000) as blocker:
        win.act_disagreement.trigger()  # View › Model disagreement map
    assert win.act_disagreement.isChecked() and view.isVisible() and not win.workspace.errors.isVisible()
    spread = blocker.args[0]
    assert spread.request.index == win.state.slice and len(spread.labels) == 2
    assert spread.spread.image.shape == result.images["sr"].image.shape
    assert spread.spread.image.max() > 0 and np.isfinite(spread.spread.image).all()

    # the map is the per-pixel std of the two networks' SR (in the image's units)
    models = win.controller.models
    outs = [
        models.resolve(n, 2.0, "auto", str(w)).upscaler.upscale_slice(
            result.images["lr"].image, 2.0, win.state.loaded.normalizer
        )
        for n, w in (("new_carn", carn), ("edsr", edsr))
    ]
    assert np.allclose(spread.spread.image, np.std(outs, axis=0), atol=1e-3)
    assert view.colorbar.levels() == (0.0, spread.top)
    assert "2 networks ×2" in view.panel.title.text() and "not acquired" in view.panel.title.text()
    assert all(label.split("(")[1][:12] in view.info.text() for label in spread.labels)  # hashes

    with qtbot.waitSignal(view.resultShown, timeout=60_000) as blocker:  # follows the slice
        win.state.slice = 5
    assert blocker.args[0].request.index == 5
    view.set_networks(["edsr"])  # one network: nothing to compare, said on the panel
    qtbot.waitUntil(lambda: "two trained networks" in view.panel.canvas.hint, timeout=5_000)
    win.act_disagreement.trigger()
    assert win.workspace.errors.isVisible() and not view.isVisible()


# --- About ----------------------------------------------------------------------------------------
def test_about_box_says_not_for_diagnosis_and_lists_networks_hashes_licence(qtbot, make_window, carn_weights):
    from engine.models import get_card, model_names
    from engine.weights import read_metadata

    win = make_window(dialogs=True)
    win.use_weights(carn_weights)
    win.show_about()
    about = next(d for d in win.open_dialogs if isinstance(d, AboutDialog))
    assert about.isVisible()
    text = about.text.toPlainText()
    assert "Not for primary diagnosis" in text and "not acquired data" in text
    for name in model_names():
        assert name in text and get_card(name).paper[:30] in text
    assert read_metadata(carn_weights)["sha256"][:16] in text
    assert "Licence: MIT" in text  # the bundled sample's
    about.accept()
