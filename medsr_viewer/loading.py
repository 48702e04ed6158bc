"""Opening volumes off the GUI thread: progress, cancel, the DICOM series chooser, errors as signals.

A folder is first scanned for DICOM series (headers only); when it holds several, the user picks one
in ``SeriesChooser`` before any pixels are read. Errors are ``MedSRError`` whose text names the file
and the reason; the window shows them and keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.errors import MedSRError
from engine.inference import Progress
from engine.io import SeriesInfo, list_dicom_series, load_volume
from medsr_viewer.state import LoadedVolume
from medsr_viewer.workers import CancelToken, GeneratorWorker, WorkerPool


@dataclass(frozen=True)
class SeriesChoice:
    """A folder holding several series: the user must pick one."""

    path: Path
    series: list[SeriesInfo]


def load_job(path: Path, series_uid: str | None):
    """The loading job: scan a folder for series, then read and prepare the chosen volume."""

    def job(token: CancelToken):
        if series_uid is None and path.is_dir():
            token.report(0.0, f"scanning {path.name} for DICOM series")
            series = list_dicom_series(path)
            if len(series) > 1:
                return SeriesChoice(path, series)
        volume = load_volume(
            path, series_uid, cancel=token, progress=lambda f: token.report(f, f"reading {path.name}")
        )
        token.report(1.0, "preparing")
        return LoadedVolume.prepare(volume)

    return job


class VolumeLoader(QObject):
    """Loads one volume at a time; a new open cancels the one in progress."""

    loaded = Signal(object)  # LoadedVolume
    failed = Signal(object, str)  # (path, message)
    seriesChoice = Signal(object)  # SeriesChoice
    progress = Signal(float, str)
    busyChanged = Signal(bool)

    def __init__(self, pool: WorkerPool, parent: QObject | None = None):
        super().__init__(parent)
        self.pool = pool
        self._worker: GeneratorWorker | None = None
        self.path: Path | None = None

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def open(self, path: str | Path, series_uid: str | None = None) -> None:
        self.cancel()
        self.path = Path(path)
        worker = GeneratorWorker(load_job(self.path, series_uid), f"load {path}")
        sig = worker.signals
        sig.progress.connect(lambda p, w=worker: self._on_progress(w, p))
        sig.finished.connect(lambda value, w=worker: self._on_finished(w, value))
        sig.failed.connect(lambda exc, w=worker, p=self.path: self._on_failed(w, p, exc))
        sig.done.connect(lambda w=worker: self._on_done(w))
        self._worker = worker
        self.busyChanged.emit(True)
        self.progress.emit(0.0, f"opening {self.path.name}")
        self.pool.start(worker)

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
            self.busyChanged.emit(False)

    def _on_progress(self, worker: GeneratorWorker, p: Progress) -> None:
        if worker is self._worker:
            self.progress.emit(p.fraction, p.message)

    def _on_finished(self, worker: GeneratorWorker, value) -> None:
        if worker is not self._worker:
            return
        if isinstance(value, SeriesChoice):
            self.seriesChoice.emit(value)
        elif isinstance(value, LoadedVolume):
            self.loaded.emit(value)

    def _on_failed(self, worker: GeneratorWorker, path: Path, exc: BaseException) -> None:
        if worker is not self._worker:
            return
        if isinstance(exc, MedSRError):
            message = str(exc)
        elif isinstance(exc, MemoryError):
            message = f"{path}: not enough memory to load this volume"
        else:  # an unexpected failure still names the file and says what happened
            message = f"{path}: could not be opened ({type(exc).__name__}: {exc})"
        self.failed.emit(path, message)

    def _on_done(self, worker: GeneratorWorker) -> None:
        if worker is self._worker:
            self._worker = None
            self.busyChanged.emit(False)


class SeriesChooser(QDialog):
    """Lists the DICOM series of a folder (description, modality, size, slices) for the user to pick."""

    def __init__(self, choice: SeriesChoice, parent: QWidget | None = None):
        super().__init__(parent)
        self.choice = choice
        self.setWindowTitle("Choose a DICOM series")
        self.setObjectName("seriesChooser")
        self.table = QTableWidget(len(choice.series), 4)
        self.table.setHorizontalHeaderLabels(["Description", "Modality", "Size (rows × cols)", "Slices"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        for row, s in enumerate(choice.series):
            cells = [s.description or "(no description)", s.modality, f"{s.rows} × {s.cols}", str(s.n_slices)]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{s.uid}\n{len(s.files)} file(s), first: {s.files[0] if s.files else '-'}")
                if col >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.selectRow(0)
        self.table.doubleClicked.connect(lambda _i: self.accept())
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(
            QLabel(f"<b>{choice.path}</b> holds {len(choice.series)} image series. Open which one?")
        )
        lay.addWidget(self.table)
        lay.addWidget(buttons)
        self.resize(680, 120 + 30 * min(len(choice.series), 10))

    def selected_uid(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.choice.series[rows[0].row()].uid if rows else None
