"""The dark theme (reading rooms are dim) and pyqtgraph's global options, set once at start-up."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

SR_ACCENT = "#ff9f1c"

STYLE_SHEET = f"""
QMainWindow, QDockWidget {{ background: #1b1c1f; }}
QToolBar {{ background: #232428; border: none; border-bottom: 1px solid #34363c; spacing: 4px; }}
QLabel#barLabel {{ color: #9aa0a6; padding-left: 4px; }}
QLabel#dimLabel {{ color: #9aa0a6; }}
QLabel#sectionTitle {{ color: #e8eaed; font-weight: bold; padding-top: 4px;
                      border-bottom: 1px solid #3c3f45; }}
QLabel#disclaimer {{ color: {SR_ACCENT}; padding: 0 6px; }}
QLabel#cursorLabel {{ color: #ffe066; font-family: monospace; }}
QToolButton#segment {{ background: #2c2e33; color: #d0d3d8; border: 1px solid #45484f; padding: 3px 10px; }}
QToolButton#segment:checked {{ background: #3d6fb6; color: white; border-color: #5a8fd8; }}
QFrame[objectName^="panel_"] {{ background: #000000; border: 1px solid #33353a; border-radius: 3px; }}
QFrame[sr="true"] {{ border: 2px solid {SR_ACCENT}; }}
QFrame[sr="true"][fallback="true"] {{ border: 2px dashed #9aa0a6; }}
QLabel#panelTitle {{ color: #e8eaed; background: #202124; padding: 3px 6px; }}
QFrame[sr="true"] QLabel#panelTitle {{ background: #4a3310; color: #ffd08a; }}
QLabel#panelNotice {{ color: #1b1c1f; background: {SR_ACCENT}; padding: 2px 6px; font-weight: bold; }}
QLabel#panelFooter {{ color: #ffe066; background: #111214; padding: 1px 6px; font-family: monospace; }}
QLabel#metricsLabel, QLabel#cardLabel {{ color: #d0d3d8; }}
QStatusBar {{ background: #232428; color: #d0d3d8; }}
QSplitter::handle {{ background: #2c2e33; }}
"""


def apply_theme(app: QApplication) -> None:
    """Fusion style with a dark palette, our style sheet, and pyqtgraph's image axis order."""
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True, background="k", foreground="#d0d3d8")
    app.setStyle("Fusion")
    pal = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#1b1c1f",
        QPalette.ColorRole.WindowText: "#e8eaed",
        QPalette.ColorRole.Base: "#141517",
        QPalette.ColorRole.AlternateBase: "#202124",
        QPalette.ColorRole.ToolTipBase: "#2c2e33",
        QPalette.ColorRole.ToolTipText: "#e8eaed",
        QPalette.ColorRole.Text: "#e8eaed",
        QPalette.ColorRole.Button: "#2c2e33",
        QPalette.ColorRole.ButtonText: "#e8eaed",
        QPalette.ColorRole.Highlight: "#3d6fb6",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: "#80868b",
    }
    for role, color in colors.items():
        pal.setColor(role, QColor(color))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#6b6f75"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#6b6f75"))
    app.setPalette(pal)
    app.setStyleSheet(STYLE_SHEET)
