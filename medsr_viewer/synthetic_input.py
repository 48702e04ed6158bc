"""Real input events for scripts that drive the window: benchmarks, tests and the self-test."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget


def send_wheel(viewport: QWidget, pos: QPoint, delta: int = 120, ctrl: bool = False) -> None:
    """A vertical wheel turn of ``delta`` eighths of a degree at ``pos`` (viewport pixels), delivered
    synchronously as if from the mouse (120 = one notch; positive = away from the user)."""
    mods = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    event = QWheelEvent(
        QPointF(pos),
        QPointF(viewport.mapToGlobal(pos)),
        QPoint(0, 0),
        QPoint(0, delta),
        Qt.MouseButton.NoButton,
        mods,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(viewport, event)
