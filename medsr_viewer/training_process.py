"""A training run as a separate process (``medsr train``), watched through its JSON-line events.

The trainer runs outside the viewer, so a crash or an out-of-memory there never takes the viewer
down. Its stdout (one JSON event per line) and stderr go to files in the run's folder, which the
viewer reads as they grow: no pipe ties the process to the viewer, so it can be left running when
the viewer closes (``detach``). Cancel is SIGTERM (``QProcess.terminate``): the trainer stops between
steps and keeps its checkpoint, which ``TrainingRequest.resumed`` continues with ``--resume``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QIODeviceBase, QObject, QProcess, QTimer, Signal

from engine.launch import medsr_command
from engine.resources import user_data_dir, user_weights_dir

log = logging.getLogger(__name__)

POLL_MS = 200
STDERR_TAIL_LINES = 15

DONE = "done"
CANCELLED = "cancelled"
FAILED = "failed"


@dataclass(frozen=True)
class TrainingRequest:
    """Everything one ``medsr train`` run is started with; built and checked by the Train dialog."""

    arch: str
    scale: float | None  # None: an arbitrary-scale network (trained on 1.1-4.0)
    data: tuple[Path, ...]
    val_data: tuple[Path, ...]
    out: Path  # the weights file written when the run finishes
    run_dir: Path  # events, stderr, checkpoint, request.json
    steps: int | None = None
    minutes: float | None = None
    loss: str = "l1"  # l1 | mse | gan
    init: Path | None = None  # fine-tune from these weights (transfer learning)
    resume: Path | None = None  # continue this checkpoint
    device: str = "auto"
    batch_size: int = 8
    patch: int = 64
    val_every: int = 25  # validation and checkpoint (hence preview) every N steps
    blur: bool = False
    threads: int | None = None
    held_out: bool = False  # validation volumes are not among the training volumes

    @property
    def name(self) -> str:
        return self.out.name.removesuffix(".safetensors")

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / f"{self.name}.ckpt.safetensors"

    @property
    def events_path(self) -> Path:
        return self.run_dir / "events.jsonl"

    @property
    def stderr_path(self) -> Path:
        return self.run_dir / "stderr.log"

    @property
    def scale_text(self) -> str:
        return "any scale" if self.scale is None else f"×{self.scale:g}"

    def arguments(self) -> list[str]:
        """``train`` and its options, to append to ``medsr_command()``."""
        args = ["train", "--arch", self.arch]
        if self.scale is not None:
            args += ["--scale", f"{self.scale:g}"]
        args += ["--data", *map(str, self.data)]
        if self.val_data:
            args += ["--val-data", *map(str, self.val_data)]
        args += ["--out", str(self.out), "--checkpoint", str(self.checkpoint)]
        if self.steps:
            args += ["--steps", str(self.steps)]
        if self.minutes:
            args += ["--minutes", f"{self.minutes:g}"]
        args += [
            "--loss", self.loss,
            "--device", self.device,
            "--batch-size", str(self.batch_size),
            "--patch", str(self.patch),
            "--val-every", str(self.val_every),
            "--checkpoint-every", str(self.val_every),
            "--progress", "json",
        ]  # fmt: skip
        if self.blur:
            args.append("--blur")
        if self.init is not None:
            args += ["--init", str(self.init)]
        if self.resume is not None:
            args += ["--resume", str(self.resume)]
        if self.threads:
            args += ["--threads", str(self.threads)]
        return args

    def resumed(self) -> TrainingRequest:
        """The same run, continued from its checkpoint (same budget, same output file)."""
        return replace(self, resume=self.checkpoint)

    def as_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def run_name(arch: str, scale: float | None, when: float | None = None) -> str:
    """``<arch>_x<scale>_<YYYYmmdd-HHMM>`` (no scale part for arbitrary-scale networks)."""
    stamp = time.strftime("%Y%m%d-%H%M", time.localtime(when))
    return f"{arch}_x{scale:g}_{stamp}" if scale is not None else f"{arch}_{stamp}"


def training_runs_dir() -> Path:
    return user_data_dir() / "training"


def new_run_paths(arch: str, scale: float | None) -> tuple[Path, Path]:
    """(weights file in the user's weights folder, run folder) under a name not used yet."""
    base = run_name(arch, scale)
    for k in range(1, 1000):
        name = base if k == 1 else f"{base}-{k}"
        out = user_weights_dir() / f"{name}.safetensors"
        run_dir = training_runs_dir() / name
        if not out.exists() and not run_dir.exists():
            return out, run_dir
    raise FileExistsError(f"no free run name for {base} in {user_weights_dir()}")


def parse_event(line: str | bytes) -> dict[str, Any] | None:
    """One trainer event from one line of its stdout, or None for anything else (blank, not JSON)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    return ev if isinstance(ev, dict) and isinstance(ev.get("event"), str) else None


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: ``done`` (weights written), ``cancelled`` (checkpoint kept) or ``failed``."""

    status: str
    request: TrainingRequest
    step: int = 0
    weights: Path | None = None
    checkpoint: Path | None = None  # a checkpoint Resume can continue
    validation: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    exit_code: int | None = None
    stderr_tail: str = ""

    @property
    def resumable(self) -> bool:
        return self.checkpoint is not None and self.checkpoint.is_file()


class _LineReader:
    """New complete lines of a file another process appends to."""

    def __init__(self, path: Path, offset: int = 0):
        self.path = path
        self.offset = offset
        self._partial = b""

    def read(self, final: bool = False) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = b"" if final else lines.pop()
        return [ln for ln in lines if ln.strip()]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def tail_text(path: Path, offset: int = 0, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` lines written to ``path`` after ``offset``."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class TrainingProcess(QObject):
    """One ``medsr train`` process: start, follow its events, cancel, or leave it running."""

    event = Signal(object)  # dict: every trainer event, in order
    finished = Signal(object)  # RunOutcome (never emitted once detached)

    def __init__(
        self,
        request: TrainingRequest,
        command: Sequence[str] | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.request = request
        self.command = list(command) if command is not None else medsr_command()
        self.process = QProcess(self)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)
        self._timer = QTimer(self, interval=POLL_MS, timeout=self._poll)
        self._reader: _LineReader | None = None
        self._stderr_offset = 0
        self._cancel_requested = False
        self._detached = False
        self._ended = False
        self.seen: dict[str, dict[str, Any]] = {}  # last event of each kind
        self.step = 0
        self.started_at: float | None = None

    # --- control -------------------------------------------------------------------------------
    def start(self) -> None:
        req = self.request
        req.run_dir.mkdir(parents=True, exist_ok=True)
        req.out.parent.mkdir(parents=True, exist_ok=True)
        (req.run_dir / "request.json").write_text(json.dumps(req.as_json(), indent=2))
        append = req.resume is not None  # a resumed run continues the same event log
        mode = QIODeviceBase.OpenModeFlag.Append if append else QIODeviceBase.OpenModeFlag.Truncate
        self._reader = _LineReader(req.events_path, _size(req.events_path) if append else 0)
        self._stderr_offset = _size(req.stderr_path) if append else 0
        p = self.process
        p.setProgram(self.command[0])
        p.setArguments([*self.command[1:], *req.arguments()])
        p.setWorkingDirectory(str(req.run_dir))
        p.setStandardInputFile(QProcess.nullDevice())
        p.setStandardOutputFile(str(req.events_path), mode)
        p.setStandardErrorFile(str(req.stderr_path), mode)
        if sys.platform != "win32":
            # Its own session: Ctrl+C in the viewer's terminal or the terminal closing does not reach
            # it, and it can outlive the viewer when the user leaves it running.
            params = QProcess.UnixProcessParameters()
            params.flags = QProcess.UnixProcessFlag.CreateNewSession
            p.setUnixProcessParameters(params)
        log.info("training: %s %s", p.program(), " ".join(p.arguments()))
        self.started_at = time.monotonic()
        p.start()
        self._timer.start()

    def cancel(self) -> None:
        """Stop between two steps (SIGTERM); the trainer writes its checkpoint and exits."""
        if not self.running:
            return
        self._cancel_requested = True
        if sys.platform == "win32":  # a console process ignores WM_CLOSE: no clean stop there
            self.process.kill()
        else:
            self.process.terminate()

    def detach(self) -> int | None:
        """Stop watching and let the process outlive this object and the viewer; returns its pid."""
        if not self.running:
            return None
        pid = self.pid
        self._timer.stop()
        self._detached = True
        self.process.blockSignals(True)
        # QProcess kills a child it still thinks is running when it is destroyed: tell it it is not.
        self.process.setProcessState(QProcess.ProcessState.NotRunning)
        log.info("training process %s left running; it writes %s when done", pid, self.request.out)
        return pid

    def wait(self, msecs: int) -> bool:
        return self.process.waitForFinished(msecs)

    @property
    def running(self) -> bool:
        return not self._detached and self.process.state() != QProcess.ProcessState.NotRunning

    @property
    def pid(self) -> int | None:
        pid = self.process.processId()
        return int(pid) if pid else None

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    # --- events --------------------------------------------------------------------------------
    def _poll(self, final: bool = False) -> None:
        if self._reader is None:
            return
        for line in self._reader.read(final):
            ev = parse_event(line)
            if ev is None:
                log.debug("trainer output: %s", line[:200])
                continue
            kind = ev["event"]
            self.seen[kind] = ev
            if isinstance(ev.get("step"), int):
                self.step = ev["step"]
            self.event.emit(ev)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            message = (
                f"the training process could not start ({self.process.errorString()}): "
                f"{' '.join(self.command)}"
            )
            self._end(FAILED, message=message)

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._poll(final=True)
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        code = None if crashed else int(exit_code)
        req = self.request
        done, cancelled, error = self.seen.get("done"), self.seen.get("cancelled"), self.seen.get("error")
        if done is not None:
            weights = Path(done["weights"]) if done.get("weights") else req.out
            self._end(DONE, weights=weights, validation=done.get("validation") or {}, exit_code=code)
        elif cancelled is not None or self._cancel_requested:
            ckpt = (
                Path(cancelled["checkpoint"]) if cancelled and cancelled.get("checkpoint") else req.checkpoint
            )
            self._end(CANCELLED, checkpoint=ckpt if ckpt.is_file() else None, exit_code=code)
        else:
            if error is not None:
                message = str(error.get("message") or "training failed")
            elif crashed:
                message = "the training process was killed (a crash, or out of memory) before it finished"
            elif code:
                message = f"the training process stopped with exit code {code} before it finished"
            else:
                message = "the training process ended without writing its weights"
            ckpt = req.checkpoint if req.checkpoint.is_file() else None
            self._end(FAILED, message=message, exit_code=code, checkpoint=ckpt)

    def _end(self, status: str, **fields: Any) -> None:
        if self._ended:
            return
        self._ended = True
        self._timer.stop()
        tail = tail_text(self.request.stderr_path, self._stderr_offset)
        outcome = RunOutcome(status, self.request, step=self.step, stderr_tail=tail, **fields)
        log.info("training %s: %s (step %d) %s", self.request.name, status, self.step, outcome.message)
        self.finished.emit(outcome)


def default_threads(device: str) -> int | None:
    """CPU training leaves a core to the viewer (the user keeps reading images meanwhile)."""
    if device in ("cpu", "auto"):
        return max(1, (os.cpu_count() or 2) - 1)
    return None
