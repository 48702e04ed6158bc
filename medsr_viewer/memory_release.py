"""Hand memory the viewer has freed back to the operating system.

Volumes, slice images and network activations are large NumPy/torch buffers, most allocated on
worker threads. When they are freed, glibc keeps the pages in its per-thread heaps, so the process's
resident size only ever grows (by ~200 MB over 1000 rapid slice changes and a few reopened volumes,
measured with ``bench/stress.py``). ``malloc_trim(0)`` returns the free pages; ``MemoryReleaser``
runs it off the GUI thread (it takes up to ~50 ms) once the viewer has been quiet for a moment.
Where the C library has no ``malloc_trim`` (macOS, Windows, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer

log = logging.getLogger(__name__)

QUIET_MS = 1500  # release once nothing was requested for this long (not while the user scrolls)


def _find_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()


def release_freed_memory() -> bool:
    """Return free heap pages to the OS now (blocking); False where that is not possible."""
    if _malloc_trim is None:
        return False
    return bool(_malloc_trim(0))


class MemoryReleaser(QObject):
    """Calls ``release_freed_memory`` on a background thread ``QUIET_MS`` after the last ``request``."""

    def __init__(self, parent: QObject | None = None, quiet_ms: int = QUIET_MS):
        super().__init__(parent)
        self._timer = QTimer(self, singleShot=True, interval=quiet_ms, timeout=self._release)
        self._thread: threading.Thread | None = None
        self.releases = 0

    @property
    def available(self) -> bool:
        return _malloc_trim is not None

    def request(self) -> None:
        """Something large was probably freed (a volume replaced, a burst of slices): release soon."""
        if self.available:
            self._timer.start()

    def _release(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._timer.start()  # the previous one is still running: try again later
            return
        self.releases += 1
        self._thread = threading.Thread(target=release_freed_memory, name="medsr-memory-release", daemon=True)
        self._thread.start()
