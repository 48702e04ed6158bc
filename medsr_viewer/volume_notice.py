"""A status-bar notice for warnings about the loaded volume (NaN replaced, frames dropped, constant).

Non-modal: it stays visible while the volume is shown, lists every warning in its tooltip, and a
click opens them in a window the user can leave open. Nothing the loader decided is silently dropped.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QToolButton, QWidget

NOTICE_STYLE = "QToolButton { color: #1b1c1f; background: #ff9f1c; font-weight: bold; padding: 0 6px; }"


class VolumeNotice(QToolButton):
    """ "⚠ N warnings about this volume": hidden when there is nothing to say."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("volumeNotice")
        self.setStyleSheet(NOTICE_STYLE)
        self.warnings: list[str] = []
        self.source = ""
        self.box: QMessageBox | None = None
        self.clicked.connect(self.show_details)
        self.setVisible(False)

    def set_warnings(self, source: str, warnings: list[str]) -> None:
        self.source = source
        self.warnings = list(warnings)
        n = len(self.warnings)
        self.setText(f"⚠ {n} warning{'s' if n != 1 else ''} about {source}" if n else "")
        self.setToolTip("\n".join(f"• {w}" for w in self.warnings))
        self.setVisible(bool(n))

    def details_text(self) -> str:
        return f"Opening {self.source}:\n\n" + "\n".join(f"• {w}" for w in self.warnings)

    def show_details(self) -> None:
        """The warnings in a non-modal window (the viewer stays usable beside it)."""
        if self.box is None:
            self.box = QMessageBox(
                QMessageBox.Icon.Warning,
                "Warnings about this volume",
                "",
                QMessageBox.StandardButton.Ok,
                self.window(),
            )
            self.box.setObjectName("volumeWarningsDialog")
            self.box.setModal(False)
        self.box.setText(self.details_text())
        self.box.show()
