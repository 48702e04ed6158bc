"""Garbage in reference cycles is collected on the GUI thread only (see medsr_viewer.gui_gc)."""

from __future__ import annotations

import gc
import threading
import weakref

from PySide6.QtCore import QObject, QThread

from medsr_viewer.gui_gc import collect_on_gui_thread


class Cyclic(QObject):
    """A QObject in a reference cycle, recording the thread that destroyed it."""

    destroyed_on: list = []

    def __init__(self):
        super().__init__()
        self.me = self

    def __del__(self):
        Cyclic.destroyed_on.append(threading.current_thread().name)


def test_a_window_turns_automatic_collection_off(qtbot, make_window):
    make_window()
    assert not gc.isenabled()
    assert collect_on_gui_thread() is collect_on_gui_thread()  # installed once per application


def test_cycles_made_and_dropped_on_a_worker_thread_die_on_the_gui_thread(qtbot, make_window):
    collector = make_window() and collect_on_gui_thread()
    refs = []

    def worker():
        for _ in range(3):
            obj = Cyclic()
            refs.append(weakref.ref(obj))
            del obj
        [[i] for i in range(50_000)]  # enough allocations to have triggered automatic collection

    Cyclic.destroyed_on.clear()
    thread = threading.Thread(target=worker, name="worker")
    thread.start()
    thread.join()
    assert all(r() is not None for r in refs)  # not collected on the worker thread
    collector.collect_if_due()  # what the GUI-thread timer does
    gc.collect()
    assert all(r() is None for r in refs)
    assert Cyclic.destroyed_on and set(Cyclic.destroyed_on) == {threading.main_thread().name}
    assert QThread.currentThread() is collector.thread()
