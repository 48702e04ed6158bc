"""Training from the viewer: a real ``medsr train`` process on a small real MRI, followed by the dock.

Runs are a few steps on 32-pixel patches (seconds of CPU); the user's folder is a temporary one.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import shiboken6
from PySide6.QtCore import Qt

from engine.weights import read_metadata
from medsr_viewer import training_dialog
from medsr_viewer.controls import WEIGHTS_ROLE
from medsr_viewer.training_dialog import TrainingChoice, build_request, check_choice
from medsr_viewer.training_process import CANCELLED, DONE, FAILED, parse_event

RUN_TIMEOUT_MS = 180_000


@pytest.fixture
def user_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user"
    monkeypatch.setenv("MEDSR_USER_DIR", str(folder))
    return folder


def _open(qtbot, win, path):
    with qtbot.waitSignal(win.volumeLoaded, timeout=30_000):
        win.open_path(path)
    return win.state.loaded


def _request(cspine: Path, steps: int):
    choice = TrainingChoice(
        "new_carn", 2.0, (cspine,), steps=steps, minutes=None, device="cpu", patch=32, batch_size=2
    )
    assert check_choice(choice) is None
    return build_request(choice)


def _is_event(kind: str, **fields):
    return lambda ev: ev["event"] == kind and all(ev.get(k) == v for k, v in fields.items())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_parse_event_takes_json_lines_only():
    assert parse_event('{"event": "progress", "step": 3}\n') == {"event": "progress", "step": 3}
    assert parse_event(b'{"event": "done"}') == {"event": "done"}
    assert parse_event("Warning: something printed by a library") is None
    assert parse_event('{"no_event": 1}') is None
    assert parse_event('{"event": ') is None


def test_short_run_reaches_the_dock_and_the_picker(qtbot, make_window, wait_sr, cspine, user_dir):
    win = make_window()
    _open(qtbot, win, cspine)
    dock = win.training_dock
    dialog = dock.open_dialog()
    assert dialog.checked_data() == (cspine,)  # the loaded volume is offered, ticked
    dialog.set_choice("new_carn", 2.0, steps=3, patch=32, batch_size=2, device="cpu", start="scratch")
    events = []
    dock.runEvent.connect(events.append)
    with qtbot.waitSignal(dock.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        dialog.start()
    outcome = finished.args[0]
    assert outcome.status == DONE, outcome
    kinds = [e["event"] for e in events]
    for kind in ("start", "progress", "validation", "checkpoint", "done"):
        assert kind in kinds
    assert dock.progress.value() == 1000
    assert len(dock.loss_curves["l1"].getData()[0]) >= 1
    assert len(dock.val_curves[("psnr", "sr")].getData()[0]) == 3  # validated at every step of 3
    assert "PSNR" in dock.status.text()
    qtbot.waitUntil(lambda: dock.preview is not None, timeout=60_000)
    assert dock.preview.sr.shape == dock.preview.hr.shape
    assert dock.preview_images["sr"].image is not None

    # the weights: in the user's folder, named after network, scale and time, with their card
    weights = outcome.weights
    assert weights.parent == user_dir / "weights"
    assert re.fullmatch(r"new_carn_x2_\d{8}-\d{4}\.safetensors", weights.name)
    meta = read_metadata(weights)
    assert meta["card"]["steps"] == 3 and len(meta["sha256"]) == 64
    assert "gain_db" in meta["card"]["validation"]["2"]

    # at once in the picker, marked as the user's own
    i = win.controls.model_index("new_carn", str(weights))
    assert i >= 0 and "yours" in win.controls.model_combo.itemText(i)
    assert "Your weights" in win.controls.model_combo.itemData(i, Qt.ItemDataRole.ToolTipRole)

    # one click: the SR panel runs them ...
    dock.yours_button.click()
    assert win.state.weights["new_carn"] == str(weights) and win.state.model == "new_carn"
    assert win.controls.model_combo.currentData(WEIGHTS_ROLE) == str(weights)
    result = wait_sr(win, weights=str(weights), timeout=60_000)
    assert result.sr.weights_sha256 == meta["sha256"]
    # ... and the comparison with the shipped weights on the current slice
    with qtbot.waitSignal(dock.compared, timeout=60_000) as compared:
        dock.compare_button.click()
    c = compared.args[0]
    assert c.scores["yours"] is not None and c.scores["bicubic"] is not None
    assert c.scores["shipped"] is not None or "shipped" in c.notes
    assert "yours" in dock.comparison.text() and "training data" in dock.comparison.text()
    dock.shipped_button.click()
    assert "new_carn" not in win.state.weights
    assert win.controls.model_combo.currentData(WEIGHTS_ROLE) is None
    win.controls.model_combo.setCurrentIndex(i)  # picking it in the list does the same
    assert win.state.weights["new_carn"] == str(weights)


def test_cancel_keeps_the_checkpoint_and_resume_continues(qtbot, make_window, cspine, user_dir):
    win = make_window()
    dock = win.training_dock
    request = _request(cspine, steps=2000)
    with qtbot.waitSignal(dock.runEvent, timeout=RUN_TIMEOUT_MS, check_params_cb=_is_event("checkpoint")):
        dock.start(request)
    assert dock.running and not dock.resume_button.isEnabled()
    with qtbot.waitSignal(dock.runFinished, timeout=60_000) as finished:
        dock.cancel_button.click()
    first = finished.args[0]
    assert first.status == CANCELLED and first.resumable and first.step >= request.val_every
    assert not request.out.exists()  # no weights from a cancelled run; the checkpoint is kept
    assert dock.resume_button.isEnabled() and "Resume" in dock.result.text()

    with qtbot.waitSignal(
        dock.runEvent, timeout=RUN_TIMEOUT_MS, check_params_cb=_is_event("resumed", step=first.step)
    ):
        dock.resume_button.click()
    assert "--resume" in dock.process.process.arguments()
    with qtbot.waitSignal(
        dock.runEvent,
        timeout=RUN_TIMEOUT_MS,
        check_params_cb=lambda ev: ev["event"] == "progress" and ev["step"] > first.step,
    ):
        pass
    with qtbot.waitSignal(dock.runFinished, timeout=60_000) as finished:
        dock.cancel()
    second = finished.args[0]
    assert second.status == CANCELLED and second.step > first.step
    lines = request.events_path.read_text().splitlines()
    assert sum('"event": "start"' in ln for ln in lines) == 2  # one event log across both parts


def test_a_crashed_trainer_is_reported_with_its_stderr(qtbot, make_window, cspine, user_dir):
    win = make_window(dialogs=True)
    dock = win.training_dock
    dock.command = [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('RuntimeError: CUDA out of memory (simulated)\\n'); sys.exit(1)",
    ]
    with qtbot.waitSignal(win.errorReported, timeout=60_000) as reported:
        dock.start(_request(cspine, steps=3))
    title, message = reported.args
    assert title == "Training failed"
    assert "exit code 1" in message and "CUDA out of memory (simulated)" in message
    assert dock.outcome.status == FAILED and not dock.running
    boxes = [d for d in win.open_dialogs if d.objectName() == "errorDialog"]
    assert boxes and "out of memory" in boxes[-1].text()  # a non-blocking error dialog
    for box in boxes:
        box.close()


def test_bad_choices_are_refused_before_any_process(
    qtbot, make_window, cspine, user_dir, tmp_path, monkeypatch
):
    win = make_window()
    dock = win.training_dock
    dialog = dock.open_dialog()
    assert "does not serve ×1.5" in check_choice(TrainingChoice("new_carn", 1.5, (cspine,)))
    assert "not found" in check_choice(TrainingChoice("new_carn", 2.0, (tmp_path / "nope.nii.gz",)))

    dialog.add_data([cspine])
    dialog.set_choice("new_carn", 2.0, steps=3, patch=128, device="cpu")  # larger than any slice
    with qtbot.waitSignal(dialog.refused, timeout=60_000) as refused:
        dialog.start()
    assert "no usable training slices" in refused.args[0]

    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a volume at all")
    dialog.add_data([broken])
    dialog.set_choice(patch=32)
    with qtbot.waitSignal(dialog.refused, timeout=60_000) as refused:
        dialog.start()
    assert "broken.nii.gz" in refused.args[0] and "broken.nii.gz" in dialog.message.text()

    monkeypatch.setattr(training_dialog, "feature_net_path", lambda: tmp_path / "missing.safetensors")
    dialog.set_choice(loss="gan")
    with qtbot.waitSignal(dialog.refused, timeout=5_000) as refused:
        dialog.start()
    assert "perceptual feature network" in refused.args[0]
    assert dock.process is None and not (user_dir / "training").exists()


def test_closing_asks_and_a_run_left_running_survives(qtbot, make_window, cspine, user_dir):
    win = make_window()
    dock = win.training_dock
    with qtbot.waitSignal(dock.runEvent, timeout=RUN_TIMEOUT_MS, check_params_cb=_is_event("start")):
        dock.start(_request(cspine, steps=1_000_000))
    pid = dock.process.pid
    asked = []
    dock.ask_on_close = lambda: asked.append(1) or "cancel"
    win.close()
    assert asked and win.isVisible() and dock.running  # "cancel": the viewer stays open

    dock.ask_on_close = lambda: "leave"
    win.close()
    assert not win.isVisible()
    shiboken6.delete(dock.process.process)  # what the viewer's exit does to its QProcess
    time.sleep(0.5)
    try:
        assert _alive(pid), "the training process died with the viewer"
    finally:
        os.kill(pid, signal.SIGTERM)  # our own test process: stop it
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not _alive(pid)
