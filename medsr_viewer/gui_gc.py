"""Python's cyclic garbage collector, run on the GUI thread only.

Left automatic, the collector runs in whichever thread happens to allocate, so a worker thread that
builds a network can end up destroying an unreachable window's QObjects. Qt takes its connection
mutex in ~QObject and PySide then waits for the GIL, while the GUI thread holds the GIL and waits for
that mutex: the whole application freezes (seen as a hung test run; py-spy showed exactly these two
stacks). So automatic collection is turned off once a window exists, and a timer on the GUI thread
collects each generation when it passes the thresholds automatic collection would have used.
Reference counting is unaffected: only garbage in reference cycles waits for the timer.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

INTERVAL_MS = 500

_installed: GuiThreadCollector | None = None


class GuiThreadCollector(QObject):
    """Disables automatic collection; collects on a GUI-thread timer with gc's own thresholds."""

    def __init__(self, parent: QObject, interval_ms: int = INTERVAL_MS):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.collections = 0
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect_if_due)
        self.timer.start(interval_ms)

    def collect_if_due(self) -> None:
        counts = gc.get_count()
        generation = -1
        for g in range(3):
            if counts[g] > self.thresholds[g]:
                generation = g
            else:
                break
        if generation >= 0:
            gc.collect(generation)
            self.collections += 1

    def stop(self) -> None:
        """Give collection back to Python (application exit, tests)."""
        self.timer.stop()
        gc.enable()


def collect_on_gui_thread() -> GuiThreadCollector:
    """Install the collector once per application (call from the GUI thread, after QApplication)."""
    global _installed
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() is not app.thread():
        raise RuntimeError("collect_on_gui_thread() needs a QApplication and must run on its thread")
    if _installed is None:
        _installed = GuiThreadCollector(app)
    return _installed
