"""MedSR Viewer: the Qt GUI (PySide6 + pyqtgraph) over the engine."""

from medsr_viewer.refcount_guard import protect_singletons

# Before any widget exists: PySide6 6.12 on Python 3.11 would otherwise crash long sessions.
SINGLETONS_PROTECTED = protect_singletons()
