"""Viewer fixtures: a small real MRI, real (untrained) weights files, a window that never blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.models import build_model
from engine.weights import save_weights


@pytest.fixture(scope="session")
def cspine(shared_data) -> Path:
    """A small real MRI: 42x76x77, 1 mm isotropic cervical spine (T1w)."""
    return shared_data / "msk_spine" / "sct_t1w_cspine_crop.nii.gz"


@pytest.fixture(scope="session")
def carn_weights(tmp_path_factory) -> Path:
    """A real new_carn x2 weights file (untrained parameters are fine for GUI tests)."""
    path = tmp_path_factory.mktemp("weights") / "new_carn_x2.safetensors"
    save_weights(build_model("new_carn", 2), path, arch="new_carn", args={}, scale=2.0)
    return path


@pytest.fixture(scope="session")
def qapp_args():
    return ["medsr-viewer-tests"]


@pytest.fixture
def make_window(qtbot, tmp_path):
    """Build MainWindows with settings in tmp_path and dialogs replaced by signals."""
    from medsr_viewer.main_window import MainWindow
    from medsr_viewer.settings import Settings
    from medsr_viewer.theme import apply_theme

    created = []

    def make(*, curves: bool = False, dialogs: bool = False, settings_file: str = "settings.ini"):
        from PySide6.QtWidgets import QApplication

        apply_theme(QApplication.instance())
        win = MainWindow(Settings.at(tmp_path / settings_file), dialogs=dialogs, curves=curves)
        qtbot.addWidget(win)
        win.resize(1200, 800)
        win.show()
        created.append(win)
        return win

    yield make
    for win in created:
        win.loader.cancel()
        win.controller.shutdown()
        win.io_pool.wait(10_000)


@pytest.fixture
def wait_sr(qtbot):
    """wait_sr(win, **fields): the final result whose request has these fields (waits if not yet shown)."""

    def wait(win, timeout: int = 30_000, **match):
        def ok(result) -> bool:
            return all(getattr(result.request, k) == v for k, v in match.items())

        last = win.workspace.last_final
        if last is not None and ok(last) and last.request == win.controller.slices.current:
            return last
        with qtbot.waitSignal(win.srShown, timeout=timeout, check_params_cb=ok) as blocker:
            pass
        return blocker.args[0]

    return wait
