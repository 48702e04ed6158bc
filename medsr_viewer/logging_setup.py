"""The viewer's log file, and its last line of defence against exceptions nobody handled.

``setup_logging`` writes ``<user data>/logs/medsr-viewer.log`` (rotating) from start-up.
``install_exception_hooks`` sends ``sys.excepthook`` (PySide6 calls it for exceptions raised in slots
and in overridden Qt methods) and ``threading.excepthook`` to the log with their traceback; every
viewer log record that carries a traceback (also a state subscriber that failed) is then relayed to
``error_relay().raised``, which the main window shows as a dialog naming the log file, instead of
the window closing.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal

from engine.resources import user_data_dir

log = logging.getLogger(__name__)
unexpected_log = logging.getLogger("medsr_viewer.unexpected")

LOG_NAME = "medsr-viewer.log"
LOG_BYTES = 2 * 2**20
LOG_BACKUPS = 3
FILE_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s"
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"
UNEXPECTED_TITLE = "Unexpected error"
RELAY_BURST = 5  # at most this many dialogs per RELAY_WINDOW_S (an error in paintEvent repeats)
RELAY_WINDOW_S = 10.0
RELAYED_LOGGERS = ("medsr_viewer", "engine", "training")


def log_path() -> Path:
    return user_data_dir() / "logs" / LOG_NAME


def current_log_file() -> Path | None:
    """The file the viewer logs to now (None before ``setup_logging`` or if it could not be written)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _ViewerFileHandler):
            return Path(handler.baseFilename)
    return None


class _ViewerFileHandler(RotatingFileHandler):
    """The viewer's own file handler (so set-up can be repeated without doubling it)."""


def setup_logging(console_level: int = logging.WARNING, path: Path | None = None) -> Path | None:
    """Log INFO and above to the rotating log file (created now) and ``console_level`` to stderr.

    Failed worker jobs are logged at DEBUG with their traceback by ``medsr_viewer.workers``: the file
    keeps those too. Returns the log file, or None when it cannot be written (said on stderr).
    """
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    logging.getLogger("medsr_viewer.workers").setLevel(logging.DEBUG)
    if not any(type(h) is logging.StreamHandler for h in root.handlers):
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
        root.addHandler(console)
    for h in root.handlers:
        if type(h) is logging.StreamHandler:
            h.setLevel(console_level)
    for h in [h for h in root.handlers if isinstance(h, _ViewerFileHandler)]:
        root.removeHandler(h)
        h.close()
    path = Path(path) if path is not None else log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _ViewerFileHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
    except OSError as exc:
        log.warning("no log file: cannot write %s (%s)", path, exc)
        return None
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    root.addHandler(handler)
    log.info("MedSR Viewer started (Python %s, log %s)", sys.version.split()[0], path)
    return path


class ErrorRelay(QObject):
    """Carries unexpected errors (from any thread) to the GUI thread: (one-line summary, traceback)."""

    raised = Signal(str, str)


_relay: ErrorRelay | None = None
_relay_lock = threading.Lock()


def error_relay() -> ErrorRelay:
    """The one relay; it lives in the application's thread, so its receivers run there."""
    global _relay
    with _relay_lock:
        if _relay is None:
            _relay = ErrorRelay()
            app = QCoreApplication.instance()
            if app is not None and QThread.currentThread() is not app.thread():
                _relay.moveToThread(app.thread())
        return _relay


class RelayHandler(logging.Handler):
    """Relays ERROR records with a traceback from the viewer's (and engine's) loggers, rate-limited."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self._times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.exc_info or not record.name.startswith(RELAYED_LOGGERS):
            return
        now = time.monotonic()
        self._times = [t for t in self._times if now - t < RELAY_WINDOW_S]
        if len(self._times) >= RELAY_BURST:
            return  # still in the log; a dialog storm would help nobody
        self._times.append(now)
        exc_type, exc, tb = record.exc_info
        try:
            details = "".join(traceback.format_exception(exc_type, exc, tb))
            error_relay().raised.emit(summarise(exc_type, exc), details)
        except RuntimeError:  # the relay is gone (interpreter shutting down)
            pass


def summarise(exc_type: type[BaseException] | None, exc: BaseException | None) -> str:
    name = exc_type.__name__ if exc_type is not None else "error"
    text = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else ""
    return f"{name}: {text[:300]}" if text else name


def report_exception(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None, where: str = ""
) -> None:
    """Log an exception nobody handled, with its traceback (and so show it, once hooks are in)."""
    unexpected_log.error("unexpected error%s", f" in {where}" if where else "", exc_info=(exc_type, exc, tb))


def _excepthook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    report_exception(exc_type, exc, tb)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "a thread"
    report_exception(args.exc_type, args.exc_value, args.exc_traceback, f"thread {name}")


_saved_hooks: tuple | None = None


def install_exception_hooks() -> ErrorRelay:
    """Route unhandled exceptions to the log and the relay (idempotent); returns the relay."""
    global _saved_hooks
    relay = error_relay()
    if _saved_hooks is None:
        _saved_hooks = (sys.excepthook, threading.excepthook)
        sys.excepthook = _excepthook
        threading.excepthook = _thread_excepthook
    root = logging.getLogger()
    if not any(isinstance(h, RelayHandler) for h in root.handlers):
        root.addHandler(RelayHandler())
    return relay


def uninstall_exception_hooks() -> None:
    """Put back the hooks found by ``install_exception_hooks`` and drop the relay handler (tests)."""
    global _saved_hooks
    if _saved_hooks is not None:
        sys.excepthook, threading.excepthook = _saved_hooks
        _saved_hooks = None
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, RelayHandler)]:
        root.removeHandler(h)


def unexpected_error_text(summary: str, log_file: Path | None = None) -> str:
    """What the dialog says: the error in one line, that the window keeps working, where details are."""
    log_file = log_file if log_file is not None else current_log_file()
    where = (
        f"The details (traceback) were written to the log file:\n{log_file}"
        if log_file is not None
        else "No log file could be written; the details went to the console."
    )
    return (
        f"Something went wrong that MedSR Viewer did not expect:\n{summary}\n\n"
        f"The window keeps working; the view may be incomplete until you change slice.\n{where}"
    )
