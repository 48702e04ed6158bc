"""The main window: menus, shortcuts, drag-and-drop, loading, exports and settings around the workspace."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSizePolicy,
    QToolButton,
    QWidget,
)

from engine.catalog import model_catalog
from engine.errors import MedSRError, WeightsError
from engine.export import DISCLAIMER
from engine.resources import resources_dir, sample_volume_path
from engine.weights import read_metadata
from medsr_viewer.about import AboutDialog
from medsr_viewer.comparison import ComparisonController
from medsr_viewer.controls import ControlsBar
from medsr_viewer.disagreement_panel import DisagreementView
from medsr_viewer.exporting import ExportRequest, export_job, labelled_grab, save_png
from medsr_viewer.gui_gc import collect_on_gui_thread
from medsr_viewer.inspector import Inspector
from medsr_viewer.loading import SeriesChoice, SeriesChooser, VolumeLoader
from medsr_viewer.logging_setup import UNEXPECTED_TITLE, error_relay, unexpected_error_text
from medsr_viewer.memory_release import MemoryReleaser
from medsr_viewer.model_cards import has_weights
from medsr_viewer.settings import Settings
from medsr_viewer.slicing import point_of
from medsr_viewer.state import AXIS_NAMES, MODES, SIMULATE, LoadedVolume, ViewerState
from medsr_viewer.training_dock import TrainingDock
from medsr_viewer.trust_notices import sr_notices, volume_notices
from medsr_viewer.volume_notice import VolumeNotice
from medsr_viewer.workers import GeneratorWorker, WorkerPool
from medsr_viewer.workspace import Workspace, unit_of

log = logging.getLogger(__name__)

APP_TITLE = "MedSR Viewer"
CATALOG_DELAY_MS = 3000


class MainWindow(QMainWindow):
    """One volume at a time, compared slice by slice; every long task runs on a worker."""

    volumeLoaded = Signal(object)  # LoadedVolume
    errorReported = Signal(str, str)  # (title, message): also shown in a non-blocking dialog
    seriesChoiceRequested = Signal(object)  # SeriesChoice
    srShown = Signal(object)  # SliceResult with SR, once per request
    exportFinished = Signal(object)  # Path written
    busyChanged = Signal(bool)

    def __init__(self, settings: Settings | None = None, *, dialogs: bool = True, curves: bool = True):
        super().__init__()
        collect_on_gui_thread()  # before any worker thread can run Python's collector on Qt objects
        self.t_created = time.perf_counter()
        self.settings = settings or Settings()
        self.dialogs = dialogs  # tests turn modal dialogs off and listen to the signals instead
        self.state = ViewerState()
        self._restore_choices()
        self.controller = ComparisonController(self.state, self, curves=curves)
        self.io_pool = WorkerPool(2, "medsr-io")
        self.loader = VolumeLoader(self.io_pool, self)
        self._export_worker: GeneratorWorker | None = None
        self.open_dialogs: list[QWidget] = []
        self.t_first_sr: float | None = None
        self._pending: dict = {}

        self.setWindowTitle(APP_TITLE)
        icon = resources_dir() / "icons" / "medsr-viewer.svg"
        if icon.exists():
            self.setWindowIcon(QIcon(str(icon)))
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks)

        self.workspace = Workspace(self.state, self.controller)
        self.setCentralWidget(self.workspace)
        self.disagreement = DisagreementView(self.state, self.controller)
        self.disagreement.attach(self.workspace)  # a mode of the error row (View › Model disagreement)
        self._told: set[str] = set()  # SR warnings already written to the log
        self.memory = MemoryReleaser(self)  # freed volumes and slices go back to the OS when quiet
        self.controls = ControlsBar(self.state)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.controls)

        self.inspector = Inspector(self.state)
        self.inspector.bind_image(self.workspace.panels["a"].image)
        dock = QDockWidget("Inspector")
        dock.setObjectName("inspectorDock")
        dock.setWidget(self.inspector)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        dock.setMinimumWidth(330)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.inspector_dock = dock
        self.training_dock = TrainingDock(self.state, self.settings, dialogs=dialogs, parent=self)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.training_dock)
        self.training_dock.hide()  # Tools › Train network shows it

        self._build_status_bar()
        self._build_actions()
        self._connect()
        QTimer.singleShot(CATALOG_DELAY_MS, self._start_catalog)  # after the first slice, not competing
        self.resize(1600, 1000)
        self._restore_layout()
        self._update_card()

    # --- construction --------------------------------------------------------------------------
    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.cursor_label = QLabel("")
        self.cursor_label.setObjectName("cursorLabel")
        self.cursor_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.latency_label = QLabel("")
        self.latency_label.setObjectName("dimLabel")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFixedWidth(220)
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_background_work)
        self.disclaimer = QLabel("SR images are computed, not acquired — not for primary diagnosis")
        self.disclaimer.setObjectName("disclaimer")
        self.volume_notice = VolumeNotice()
        sb.addWidget(self.cursor_label, 1)
        sb.addPermanentWidget(self.volume_notice)
        sb.addPermanentWidget(self.latency_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_button)
        sb.addPermanentWidget(self.disclaimer)

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            keys = shortcut if isinstance(shortcut, list) else [shortcut]
            a.setShortcuts([QKeySequence(k) for k in keys])
        if tip:
            a.setToolTip(tip)
            a.setStatusTip(tip)
        a.triggered.connect(lambda _checked=False: slot())
        self.addAction(a)  # shortcuts work even when the menu bar is hidden
        return a

    def _build_actions(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.act_open = self._action(
            "Open file…",
            self.open_file_dialog,
            QKeySequence.StandardKey.Open,
            "Open a NIfTI file or a DICOM file",
        )
        self.act_open_folder = self._action(
            "Open folder…", self.open_folder_dialog, "Ctrl+Shift+O", "Open a DICOM folder"
        )
        self.act_sample = self._action("Open bundled sample", lambda: self.open_path(sample_volume_path()))
        f.addActions([self.act_open, self.act_open_folder, self.act_sample])
        self.recent_menu = f.addMenu("Open recent")
        self._fill_recent()
        f.addSeparator()
        self.act_export_png = self._action(
            "Export view as PNG…", self.export_png_dialog, "Ctrl+E", "Save the panels as a labelled PNG"
        )
        self.act_export_volume = self._action(
            "Export SR volume…",
            self.export_volume_dialog,
            "Ctrl+Shift+E",
            "Super-resolve the whole volume and write NIfTI or a DICOM series",
        )
        f.addActions([self.act_export_png, self.act_export_volume])
        f.addSeparator()
        f.addAction(self._action("Quit", self.close, QKeySequence.StandardKey.Quit))

        v = mb.addMenu("&View")
        self.act_mode = self._action("Toggle Simulate / Enhance", self.state.toggle_mode, "M")
        v.addAction(self.act_mode)
        v.addSeparator()
        for key, axis in (("1", 2), ("2", 1), ("3", 0)):
            v.addAction(
                self._action(
                    f"{AXIS_NAMES[axis].capitalize()} slices",
                    lambda a=axis: setattr(self.state, "axis", a),
                    key,
                )
            )
        v.addSeparator()
        v.addAction(self._action("Next slice", lambda: self.state.step_slice(1), ["PgUp", "Up"]))
        v.addAction(self._action("Previous slice", lambda: self.state.step_slice(-1), ["PgDown", "Down"]))
        v.addAction(self._action("Forward 10 slices", lambda: self.state.step_slice(10), "Shift+PgUp"))
        v.addAction(self._action("Back 10 slices", lambda: self.state.step_slice(-10), "Shift+PgDown"))
        v.addAction(self._action("First slice", lambda: setattr(self.state, "slice", 0), "Home"))
        v.addAction(
            self._action("Last slice", lambda: setattr(self.state, "slice", self.state.n_slices - 1), "End")
        )
        v.addSeparator()
        v.addAction(
            self._action(
                "Zoom in", lambda: self.workspace.link.set_zoom(self.workspace.link.zoom * 1.25), ["+", "="]
            )
        )
        v.addAction(
            self._action(
                "Zoom out", lambda: self.workspace.link.set_zoom(self.workspace.link.zoom / 1.25), "-"
            )
        )
        v.addAction(self._action("Fit slices to panels", self.state.reset_view, "R"))
        self.act_wheel_zooms = self._action(
            "Mouse wheel zooms",
            lambda: self.set_wheel_zooms(self.act_wheel_zooms.isChecked()),
            tip="Checked: the wheel zooms around the cursor and Ctrl+wheel steps slices; "
            "unchecked: the other way round. Page Up/Down and the slider always step slices.",
        )
        self.act_wheel_zooms.setCheckable(True)
        self.act_wheel_zooms.setChecked(self.settings.wheel_zooms)
        self.workspace.set_wheel_zooms(self.settings.wheel_zooms)
        v.addAction(self.act_wheel_zooms)
        v.addAction(self._action("Clear crosshair", lambda: setattr(self.state, "cursor", None), "Esc"))
        v.addSeparator()
        self.act_disagreement = self._action(
            "Model disagreement map",
            lambda: self.disagreement.set_active(self.act_disagreement.isChecked()),
            "D",
            "Replace the error maps by the spread of several networks' SR of this slice",
        )
        self.act_disagreement.setCheckable(True)
        v.addAction(self.act_disagreement)
        v.addAction(self.inspector_dock.toggleViewAction())

        m = mb.addMenu("&Model")
        m.addAction(
            self._action(
                "Use weights file…",
                self.weights_dialog,
                tip="Run a .safetensors weights file (e.g. one you trained) in the SR panel",
            )
        )
        m.addAction(
            self._action(
                "Rescan shipped weights",
                self.rescan_weights,
                "F5",
                tip="Look again for weights files (training may have written new ones)",
            )
        )

        t = mb.addMenu("&Tools")
        t.addAction(
            self._action(
                "Train network…",
                self.training_dock.open_dialog,
                tip="Train a network on your own volumes in the background (a separate process)",
            )
        )
        t.addAction(self.training_dock.toggleViewAction())

        h = mb.addMenu("&Help")
        h.addAction(self._action("Mouse and keys", self.show_help, "F1"))
        h.addAction(self._action("About", self.show_about))

    def _connect(self) -> None:
        self.loader.loaded.connect(self._loaded)
        self.loader.failed.connect(lambda path, msg: self.report_error("Cannot open", msg))
        self.loader.seriesChoice.connect(self._series_choice)
        self.loader.progress.connect(self._progress)
        self.loader.busyChanged.connect(self._busy)
        self.controller.srShown.connect(self._sr_shown)
        self.controller.sliceResult.connect(lambda r: self.inspector.show_metrics(r) if r.final else None)
        self.workspace.cursorInfo.connect(self.cursor_label.setText)
        self.training_dock.errorReported.connect(self.report_error)
        self.training_dock.weightsSaved.connect(lambda _path: self.rescan_weights())
        self.training_dock.showWeights.connect(self.controls.select)
        error_relay().raised.connect(self._unexpected_error)
        for sig in (self.controller.srShown, self.volumeLoaded):
            sig.connect(lambda _v: self.memory.request())
        ev = self.state.events
        for e in (ev.model, ev.scale, ev.mode, ev.device, ev.blur):
            e.connect(lambda _v: self._save_choices())
        ev.model.connect(lambda _v: self._update_card())
        ev.volume.connect(lambda _v: self._update_title())
        ev.mode.connect(lambda _v: self._update_title())

    # --- opening -------------------------------------------------------------------------------
    def open_path(self, path: str | Path, series_uid: str | None = None) -> None:
        """Load ``path`` in the background; the window keeps working meanwhile."""
        path = Path(path)
        self.settings.last_folder = str(path.parent if path.is_file() else path)
        self.loader.open(path, series_uid)

    def open_file_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self,
            "Open volume",
            self.settings.last_folder,
            "Volumes (*.nii *.nii.gz *.dcm *.DCM *.ima *.IMA);;All files (*)",
        )
        if name:
            self.open_path(name)

    def open_folder_dialog(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Open DICOM folder", self.settings.last_folder)
        if name:
            self.open_path(name)

    def _series_choice(self, choice: SeriesChoice) -> None:
        self.seriesChoiceRequested.emit(choice)
        if not self.dialogs:
            return
        dialog = SeriesChooser(choice, self)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.accepted.connect(lambda d=dialog: self.open_path(choice.path, d.selected_uid()))
        self._show_dialog(dialog)

    def _loaded(self, loaded: LoadedVolume) -> None:
        v = loaded.volume
        if v.source is not None:
            self.settings.add_recent(v.source)
            self._fill_recent()
        self.workspace.errors.set_unit(unit_of(loaded))
        self.inspector.show_volume(loaded, unit_of(loaded))
        pending, self._pending = self._pending, {}
        self.state.set_volume(loaded, axis=pending.get("axis"))
        if pending.get("slice") is not None:
            self.state.slice = pending["slice"]
        ijk = pending.get("crosshair")
        if ijk is not None and all(0 <= i < n for i, n in zip(ijk, v.shape, strict=True)):
            self.state.slice = ijk[self.state.axis]
            self.state.cursor = point_of(v, self.state.axis, ijk)
        if pending.get("zoom"):
            if self.state.cursor is not None:
                self.workspace.link.centre_on(*self.state.cursor)
            self.workspace.link.set_zoom(pending["zoom"])
        self.volumeLoaded.emit(loaded)
        self._show_volume_notices(loaded)

    def _show_volume_notices(self, loaded: LoadedVolume) -> None:
        """Every loader warning stays on screen (status bar notice, inspector) and goes to the log."""
        v = loaded.volume
        notes = volume_notices(loaded)
        name = v.source.name if v.source is not None else "this volume"
        self.volume_notice.set_warnings(name, notes)
        for w in notes:
            log.info("%s: %s", name, w)
        if notes:
            more = f" (+{len(notes) - 1} more: click the notice)" if len(notes) > 1 else ""
            self.statusBar().showMessage(f"{name}: {notes[0]}{more}", 15000)

    def set_pending_view(
        self,
        axis: int | None = None,
        slice_index: int | None = None,
        crosshair: tuple[int, int, int] | None = None,
        zoom: float | None = None,
    ) -> None:
        """Plane, slice, crosshair voxel and zoom to show once the volume being loaded arrives."""
        self._pending = {"axis": axis, "slice": slice_index, "crosshair": crosshair, "zoom": zoom}

    # --- drag and drop -------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        path = paths[0]
        if len(paths) > 1 and all(p.is_file() for p in paths) and len({p.parent for p in paths}) == 1:
            if not any(p.name.endswith((".nii", ".nii.gz")) for p in paths):
                path = paths[0].parent  # several DICOM files dropped: open their folder
        self.open_path(path)

    # --- results and progress ------------------------------------------------------------------
    def _sr_shown(self, result) -> None:
        if self.t_first_sr is None:
            self.t_first_sr = time.perf_counter()
        ms = self.controller.last_latency_ms
        if result.sr is not None:
            text = f"SR {result.sr.ms:.0f} ms"
            if ms is not None:
                text += f" · slice {ms:.0f} ms"
            self.latency_label.setText(text)
        if result.sr is not None:
            self._update_card(result.sr.notice)
        self._show_sr_notices(result)
        self.srShown.emit(result)

    def _show_sr_notices(self, result) -> None:
        """Use beyond training and device fallbacks (GPU out of memory): a banner on the SR panel."""
        loaded = self.state.loaded
        notes = sr_notices(self.controller.models, loaded, result) if loaded is not None else []
        self.workspace.panels["sr"].set_banner(notes)
        new = [n for n in notes if n not in self._told]
        for n in new:
            log.info("SR panel: %s", n)
            self._told.add(n)
        if new:
            self.statusBar().showMessage(f"SR: {new[-1]}", 10000)

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(f"{message} %p%" if message else "%p%")

    def _busy(self, busy: bool) -> None:
        export_busy = self._export_worker is not None
        any_busy = self.loader.busy or export_busy
        self.progress.setVisible(any_busy)
        self.cancel_button.setVisible(any_busy)
        self.busyChanged.emit(any_busy)

    def cancel_background_work(self) -> None:
        """Cancel loading and export (the Cancel button)."""
        self.loader.cancel()
        if self._export_worker is not None:
            self._export_worker.cancel()
            self._export_worker = None
            self.statusBar().showMessage("Export cancelled", 5000)
        self._busy(False)

    # --- errors and dialogs --------------------------------------------------------------------
    def report_error(self, title: str, message: str) -> None:
        """Tell the user (non-blocking dialog) and emit ``errorReported``; the window keeps working."""
        log.info("%s: %s", title, message)
        self.statusBar().showMessage(message, 10000)
        self.errorReported.emit(title, message)
        if self.dialogs:
            box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, self)
            box.setObjectName("errorDialog")
            self._show_dialog(box)

    def _unexpected_error(self, summary: str, _details: str) -> None:
        """An exception nobody handled (already logged with its traceback): say so, keep the window."""
        if any(d.windowTitle() == UNEXPECTED_TITLE for d in self.open_dialogs):
            self.statusBar().showMessage(f"{UNEXPECTED_TITLE}: {summary}", 10000)
            return
        self.report_error(UNEXPECTED_TITLE, unexpected_error_text(summary))

    def _show_dialog(self, dialog: QWidget) -> None:
        self.open_dialogs.append(dialog)
        dialog.finished.connect(
            lambda _r, d=dialog: self.open_dialogs.remove(d) if d in self.open_dialogs else None
        )
        dialog.open()

    # --- exports -------------------------------------------------------------------------------
    def view_header(self) -> str:
        s = self.state
        v = s.volume
        src = v.source.name if v is not None and v.source else "(no volume)"
        sr = self.workspace.last_final.sr if self.workspace.last_final else None
        sr_txt = sr.title if sr else f"{s.model} ×{s.scale:g}"
        return (
            f"MedSR Viewer · {src} · {AXIS_NAMES[s.axis]} slice {s.slice + 1}/{s.n_slices} · "
            f"{s.mode.capitalize()} · {sr_txt}"
        )

    def export_png(self, path: str | Path) -> Path:
        """The panels (with their titles) as a PNG with a header and the SR disclaimer."""
        image = labelled_grab(self.workspace.splitter, self.view_header(), DISCLAIMER)
        return save_png(image, Path(path))

    def export_png_dialog(self) -> None:
        if self.state.volume is None:
            return
        default = (
            Path(self.settings.last_folder)
            / f"medsr_{self.state.model}_x{self.state.scale:g}_{self.state.slice + 1}.png"
        )
        name, _ = QFileDialog.getSaveFileName(self, "Export view as PNG", str(default), "PNG image (*.png)")
        if name:
            try:
                out = self.export_png(name)
            except OSError as exc:
                self.report_error("Cannot export", str(exc))
                return
            self.statusBar().showMessage(f"Saved {out}", 6000)

    def export_volume_dialog(self) -> None:
        if self.state.volume is None:
            return
        s = self.state
        stem = (
            s.volume.source.name.split(".")[0] if s.volume.source else "volume"
        ) + f"_sr_{s.model}_x{s.scale:g}"
        default = Path(self.settings.last_folder) / f"{stem}.nii.gz"
        name, chosen = QFileDialog.getSaveFileName(
            self,
            "Export SR volume",
            str(default),
            "NIfTI (*.nii.gz *.nii);;DICOM derived series (folder) (*)",
        )
        if not name:
            return
        path = Path(name)
        if "DICOM" in chosen:
            path = path.with_name(path.name.removesuffix(".gz").removesuffix(".nii"))
        elif not path.name.endswith((".nii", ".nii.gz")):
            path = path.with_name(path.name + ".nii.gz")
        self.export_volume(path, overwrite=path.exists() and path.is_file())

    def export_volume(self, path: str | Path, overwrite: bool = False) -> GeneratorWorker | None:
        """Super-resolve the loaded volume in the current plane and write it (worker, with progress)."""
        s = self.state
        if s.loaded is None:
            return None
        if not has_weights(s.model, s.scale, s.weights):
            self.report_error(
                "Cannot export",
                f"no trained weights for {s.model} x{s.scale:g}: pick a trained network "
                "(or bicubic) to export a volume",
            )
            return None
        if self._export_worker is not None:
            self._export_worker.cancel()
        request = ExportRequest(
            Path(path), s.model, s.scale, s.axis, s.device, s.weights.get(s.model), overwrite
        )
        worker = GeneratorWorker(export_job(request, s.loaded), f"export {path}")
        sig = worker.signals
        sig.progress.connect(lambda p: self._progress(p.fraction, p.message))
        notes: list[str] = []  # device fallbacks during the export (ExportNote)
        sig.yielded.connect(lambda note: notes.append(note.text))
        sig.finished.connect(lambda out, w=worker: self._export_done(w, out, notes))
        sig.failed.connect(lambda exc, w=worker: self._export_failed(w, exc))
        sig.done.connect(lambda w=worker: self._export_finished(w))
        self._export_worker = worker
        self._busy(True)
        self.io_pool.start(worker)
        return worker

    def _export_done(self, worker: GeneratorWorker, out: Path, notes: list[str] | None = None) -> None:
        for note in notes or []:
            log.info("export %s: %s", out, note)
        extra = f" — {notes[-1]}" if notes else ""
        self.statusBar().showMessage(f"Exported SR volume to {out}{extra}", 15000)
        self.exportFinished.emit(out)

    def _export_failed(self, worker: GeneratorWorker, exc: BaseException) -> None:
        msg = str(exc) if isinstance(exc, MedSRError) else f"export failed ({type(exc).__name__}: {exc})"
        self.report_error("Cannot export", msg)

    def _export_finished(self, worker: GeneratorWorker) -> None:
        if worker is self._export_worker:
            self._export_worker = None
        self._busy(False)

    # --- models --------------------------------------------------------------------------------
    def _start_catalog(self) -> None:
        """Parameter counts for the tooltips need every network built: do it off the GUI thread."""
        worker = GeneratorWorker(lambda _token: model_catalog(), "model catalog")
        worker.signals.finished.connect(self._catalog_ready)
        worker.signals.failed.connect(lambda exc: log.warning("model catalog unavailable: %s", exc))
        self.io_pool.start(worker)

    def _catalog_ready(self, rows) -> None:
        self.controls.set_catalog(rows)
        self._update_card()

    def _update_card(self, notice: str = "") -> None:
        self.inspector.show_card(self.controls.card_for_current(), notice)

    def rescan_weights(self) -> None:
        self.controls.populate_models()
        self.controller.refresh()
        self._update_card()

    def use_weights(self, path: str | Path) -> None:
        """Run ``path`` (a MedSR .safetensors file) as its network in the SR panel."""
        try:
            meta = read_metadata(Path(path))
        except WeightsError as exc:
            self.report_error("Cannot use weights", str(exc))
            return
        arch = meta["arch"]
        self.state.weights[arch] = str(path)
        self.controls.populate_models()
        self.state.model = arch
        if meta["scale"] is not None:
            self.state.scale = meta["scale"]
        self.controller.refresh()
        self._update_card()

    def weights_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self, "Use weights file", self.settings.last_folder, "MedSR weights (*.safetensors)"
        )
        if name:
            self.use_weights(name)

    def set_wheel_zooms(self, on: bool) -> None:
        """What the plain mouse wheel does (a preference kept between sessions): zoom, or step slices."""
        self.settings.wheel_zooms = on
        self.act_wheel_zooms.setChecked(on)
        self.workspace.set_wheel_zooms(on)

    # --- help ------------------------------------------------------------------------------------
    def show_help(self) -> None:
        wheel = (
            "Wheel: zoom around the cursor · Ctrl+wheel: slices"
            if self.settings.wheel_zooms
            else "Wheel: slices · Ctrl+wheel: zoom around the cursor"
        )
        text = (
            "<b>Mouse</b><br>Left click/drag: crosshair (value in every panel)<br>Right-drag: window/level"
            f"<br>{wheel} (View › Mouse wheel zooms swaps them)<br>Middle- or Shift-drag: pan"
            "<br>Zoomed with meta_srgan, the SR panel is re-rendered at the display scale"
            "<br>Click the per-slice plot: go to that slice<br><br><b>Keys</b><br>"
            "PgUp/PgDown, ↑/↓: slice · Home/End: first/last<br>"
            "1/2/3: axial/coronal/sagittal · M: Simulate/Enhance<br>+/−: zoom · R: fit · Esc: clear crosshair"
            "<br>Ctrl+O / Ctrl+Shift+O: open file/folder · Ctrl+E: export PNG"
            "<br>Ctrl+Shift+E: export SR volume"
            "<br>F5: rescan weights<br><br>Drag a NIfTI file or a DICOM folder anywhere onto the window."
        )
        box = QMessageBox(
            QMessageBox.Icon.Information, "Mouse and keys", text, QMessageBox.StandardButton.Ok, self
        )
        self._show_dialog(box)

    def show_about(self) -> None:
        """Not for primary diagnosis; the networks, their papers, weights hashes, the sample's licence."""
        self._show_dialog(AboutDialog(self.state.weights, self))

    # --- title, recent, settings ---------------------------------------------------------------
    def _update_title(self) -> None:
        v = self.state.volume
        name = v.source.name if v is not None and v.source else ""
        self.setWindowTitle(f"{name} — {self.state.mode.capitalize()} — {APP_TITLE}" if name else APP_TITLE)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent()
        for p in recent:
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda _c=False, path=p: self.open_path(path))
        self.recent_menu.setEnabled(bool(recent))
        if recent:
            self.recent_menu.addSeparator()
            clear = self.recent_menu.addAction("Clear list")
            clear.triggered.connect(lambda: (self.settings.clear_recent(), self._fill_recent()))

    def _restore_choices(self) -> None:
        st = self.settings
        from engine.models import model_names

        model = st.value("choices/model", "new_carn")
        if model in model_names():
            self.state.model = model
        self.state.scale = st.value("choices/scale", 2.0, float)
        mode = st.value("choices/mode", SIMULATE)
        self.state.mode = mode if mode in MODES else SIMULATE
        device = st.value("choices/device", "auto")
        from engine.devices import available_devices

        self.state.device = device if device in ["auto", *available_devices()] else "auto"
        self.state.blur = st.value("choices/blur", "false").lower() == "true"

    def _save_choices(self) -> None:
        s = self.state
        self.settings.set("choices/model", s.model)
        self.settings.set("choices/scale", s.scale)
        self.settings.set("choices/mode", s.mode)
        self.settings.set("choices/device", s.device)
        self.settings.set("choices/blur", "true" if s.blur else "false")

    def _restore_layout(self) -> None:
        geo = self.settings.geometry()
        if geo is not None:
            self.restoreGeometry(geo)
        state = self.settings.window_state()
        if state is not None:
            self.restoreState(state)
        splitter = self.settings.splitter()
        if splitter is not None:
            self.workspace.splitter.restoreState(splitter)

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self.training_dock.confirm_close():  # stop the training run, leave it running, or stay
            event.ignore()
            return
        self.settings.save_layout(self.saveGeometry(), self.saveState(), self.workspace.splitter.saveState())
        self._save_choices()
        self.settings.sync()
        self.loader.cancel()
        if self._export_worker is not None:
            self._export_worker.cancel()
        self.controller.shutdown()
        self.workspace.zoom_sr.shutdown()
        self.disagreement.shutdown()
        self.training_dock.shutdown()
        self.io_pool.wait(5000)
        super().closeEvent(event)

    def changeEvent(self, event) -> None:  # noqa: N802
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            QTimer.singleShot(0, self.controls.populate_models)  # weights may have appeared meanwhile
        super().changeEvent(event)
