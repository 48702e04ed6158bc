"""Keep ``None``, ``True`` and ``False`` alive under PySide6 builds that drop references to them.

PySide6/shiboken6 6.12 return ``None`` from void methods (``setText``, ``update``, ``processEvents``…)
and ``True`` from ``Signal.emit`` without taking a reference. From Python 3.12 these objects are
immortal and nothing happens; on Python 3.11 every such call lowers their reference count, and a
session of a few thousand calls ends in "Fatal Python error: none_dealloc". At import we measure
whether this build leaks and, only then, give the three singletons a reference count no session can
use up — what Python 3.12 does for every interpreter. The proper fix is upstream (or Python >= 3.12).
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_PROBE_CALLS = 200
_RESERVE = 1 << 40  # references added to each singleton; one leaked per call, so never used up


def _leaks() -> dict[str, bool]:
    """Which singletons this PySide6 build leaks (measured on harmless calls)."""
    from PySide6.QtCore import QObject, QTimer, Signal

    class _Probe(QObject):
        ping = Signal()

    timer, probe = QTimer(), _Probe()
    none0, true0 = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(_PROBE_CALLS):
        timer.stop()  # void: returns None
        probe.ping.emit()  # returns True
    none_lost = none0 - sys.getrefcount(None)
    true_lost = true0 - sys.getrefcount(True)
    return {"None": none_lost > _PROBE_CALLS // 2, "bool": true_lost > _PROBE_CALLS // 2}


def protect_singletons() -> bool:
    """Apply the guard if this interpreter and PySide6 need it; returns whether it was applied."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    leaks = _leaks()
    if not any(leaks.values()):
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _RESERVE
    log.info("PySide6 drops references to None/True on this Python (%s); singletons protected", leaks)
    return True
