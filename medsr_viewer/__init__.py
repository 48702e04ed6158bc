"""MedSR Viewer: the Qt GUI (PySide6 + pyqtgraph) over the engine."""
