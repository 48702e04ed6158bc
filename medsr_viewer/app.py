"""Application start-up: a minimal window until the full comparison workspace lands."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medsr-viewer")
    parser.add_argument("path", nargs="?", default=None, help="NIfTI file or DICOM folder (default: the sample)")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    from engine.resources import sample_volume_path

    app = QApplication.instance() or QApplication([])
    path = Path(args.path) if args.path else sample_volume_path()
    win = QMainWindow()
    win.setWindowTitle(f"MedSR Viewer — {path.name}")
    win.setCentralWidget(QLabel(f"MedSR Viewer\n{path}"))
    win.resize(800, 600)
    win.show()
    return app.exec()
