"""Exports: the current view as a labelled PNG, and the SR volume as NIfTI or a derived DICOM series.

The PNG carries a header naming the source, slice, model and scale, and the "not acquired" warning,
so a screenshot cannot pass for acquired data. The volume export runs the network over every slice
of the loaded volume (in the plane being viewed) on a worker, then writes through
``engine.export.export_volume`` (provenance in the file and beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QWidget

from engine.errors import ModelError
from engine.export import DISCLAIMER, export_volume
from engine.inference import Progress, Upscaler, upscale_volume
from medsr_viewer.state import LoadedVolume
from medsr_viewer.workers import CancelToken

HEADER_PX = 28
FOOTER_PX = 22


def labelled_grab(widget: QWidget, header: str, footer: str = DISCLAIMER) -> QImage:
    """``widget`` rendered with a header line and a footer line of text (dark theme)."""
    shot = widget.grab()
    dpr = shot.devicePixelRatio() or 1.0
    w, h = int(shot.width() / dpr), int(shot.height() / dpr)
    image = QImage(w, h + HEADER_PX + FOOTER_PX, QImage.Format.Format_RGB32)
    image.fill(QColor(18, 18, 20))
    image.setText("Title", header)  # also in the PNG's text chunks, beside the burnt-in lines
    image.setText("Disclaimer", footer)
    image.setText("Software", "MedSR Viewer")
    p = QPainter(image)
    try:
        p.drawPixmap(QRect(0, HEADER_PX, w, h), shot)
        font = QFont(widget.font())
        font.setPointSizeF(10)
        font.setBold(True)
        p.setFont(font)
        p.setPen(QColor(235, 235, 235))
        p.drawText(
            QRect(8, 0, w - 16, HEADER_PX), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, header
        )
        font.setBold(False)
        font.setPointSizeF(9)
        p.setFont(font)
        p.setPen(QColor(255, 170, 60))
        p.drawText(
            QRect(8, HEADER_PX + h, w - 16, FOOTER_PX),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            footer,
        )
    finally:
        p.end()
    return image


def save_png(image: QImage, path: Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    if not image.save(str(path), "PNG"):
        raise OSError(f"{path}: could not write the PNG (folder missing or not writable?)")
    return path


@dataclass(frozen=True)
class ExportNote:
    """Something the user must read about an export (e.g. the GPU ran out of memory: CPU finished it)."""

    text: str


@dataclass(frozen=True)
class ExportRequest:
    """The SR volume to write: which network, scale and plane, and where."""

    path: Path
    model: str
    scale: float
    axis: int
    device: str = "auto"
    weights: str | None = None
    overwrite: bool = False


def export_job(request: ExportRequest, loaded: LoadedVolume):
    """Generator job: load the network, upscale every slice (yielding Progress), write the result."""

    def job(token: CancelToken):
        yield Progress(0, 1, f"loading {request.model}")
        weights = Path(request.weights) if request.weights else None
        try:
            up = Upscaler.load(request.model, request.scale, weights=weights, device=request.device)
        except ModelError as exc:
            raise ModelError(f"cannot export SR: {exc.reason}") from None
        sr = yield from upscale_volume(loaded.volume, up, request.scale, plane=request.axis, cancel=token)
        n = loaded.volume.shape[request.axis]
        yield Progress(n, n, f"writing {request.path.name}")
        export_volume(sr, request.path, up, request.scale, overwrite=request.overwrite)
        for note in dict.fromkeys(up.notes):
            yield ExportNote(note)
        return request.path

    return job
