"""The "Train network" panel: network, starting point, data, scale, loss, budget and device.

Every choice is checked before a process starts: the network serves the scale, the files exist, load,
and hold slices the trainer can sample (``training.data.SliceBank``, run on a worker), and the GAN
preset has its perceptual feature network. A refusal is said in the panel, in one clear sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.devices import available_devices, resolve_device
from engine.errors import MedSRError
from engine.inference import Progress
from engine.models import get_card
from engine.resources import shipped_weights_dir
from engine.weights import shipped_weights_path
from medsr_viewer.model_cards import card_html, list_user_weights, needs_weights, picker_names
from medsr_viewer.settings import Settings
from medsr_viewer.state import ViewerState
from medsr_viewer.training_process import TrainingRequest, default_threads, new_run_paths
from medsr_viewer.workers import CancelToken, GeneratorWorker, WorkerPool

log = logging.getLogger(__name__)

LOSS_PRESETS = (
    ("l1", "Fidelity — L1 (sharpest PSNR/SSIM)"),
    ("mse", "Fidelity — MSE"),
    ("gan", "Perceptual — GAN (L1 + adversarial + perceptual)"),
)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
VALIDATE_EVERY_CPU = 25  # steps: about every half minute on a laptop CPU
VALIDATE_EVERY_GPU = 250


def feature_net_path() -> Path:
    """The perceptual feature network the GAN trainer loads (imported late: the GAN pulls in torch)."""
    from training.gan import FEATURE_NET_FILE

    return shipped_weights_dir() / FEATURE_NET_FILE


def trainable_names() -> list[str]:
    """Every registered network with learnt weights (bicubic has none to train)."""
    return [n for n in picker_names() if needs_weights(n)]


@dataclass(frozen=True)
class TrainingChoice:
    """What the user picked in the panel, before any check."""

    arch: str
    scale: float | None
    data: tuple[Path, ...]
    loss: str = "l1"
    init: Path | None = None
    steps: int | None = None
    minutes: float | None = 2.0
    device: str = "auto"
    batch_size: int = 8
    patch: int = 64
    blur: bool = False
    hold_out: bool = False  # the last volume validates; it is not trained on


def check_choice(choice: TrainingChoice) -> str | None:
    """The first reason the run cannot start (without reading any volume), or None."""
    try:
        card = get_card(choice.arch)
    except MedSRError as exc:
        return str(exc)
    if not needs_weights(choice.arch):
        return f"{choice.arch} has no learnt weights: there is nothing to train"
    if not card.arbitrary_scale:
        if choice.scale is None:
            return f"{choice.arch} is a fixed-scale network: choose a scale"
        if not card.serves(choice.scale):
            served = ", ".join(f"×{s:g}" for s in card.scales)
            return f"{choice.arch} does not serve ×{choice.scale:g} (it serves {served})"
    if not choice.data:
        return "no training data: tick at least one volume (or add files or a folder)"
    missing = [p for p in choice.data if not Path(p).exists()]
    if missing:
        return f"{missing[0]}: file or folder not found"
    if choice.hold_out and len(choice.data) < 2:
        return "holding out a validation volume needs at least two volumes"
    if choice.loss == "gan" and not feature_net_path().is_file():
        return (
            "the perceptual (GAN) preset needs the perceptual feature network "
            f"{feature_net_path().name}, which is not installed in {feature_net_path().parent}; "
            "create it with `python -m training.recipes.feature_net`, or choose a fidelity preset "
            "(L1 or MSE)"
        )
    if not (choice.steps or choice.minutes):
        return "give a budget: a number of steps or of minutes"
    if choice.init is not None and not Path(choice.init).is_file():
        return f"{choice.init}: starting weights not found"
    try:
        resolve_device(choice.device)
    except MedSRError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class DataCheck:
    """Usable slices per volume, and the volumes that cannot be trained on (with why)."""

    slices: dict[Path, int]
    problems: list[str]


def data_check_job(paths: tuple[Path, ...], patch: int):
    """Load every volume as the trainer will and count the slices it would sample (worker job)."""

    def job(token: CancelToken) -> Iterator[Progress]:
        from training.data import SliceBank  # torch and scikit-image: imported on the worker

        slices: dict[Path, int] = {}
        problems: list[str] = []
        for k, path in enumerate(paths):
            yield Progress(k, len(paths), f"checking {Path(path).name}")
            skipped: list[str] = []
            try:
                bank = SliceBank([path], patch=patch, on_skip=skipped.append)
                slices[path] = bank.n_slices
            except MedSRError as exc:
                problems.append(f"{path.name}: {exc.reason}")
            except Exception as exc:  # a file the readers choke on is the user's to fix, not a crash
                problems.append(f"{path.name}: unreadable ({type(exc).__name__}: {exc})")
        yield Progress(len(paths), len(paths), "checked")
        return DataCheck(slices, problems)

    return job


def validation_interval(steps: int | None, device: str) -> int:
    """Steps between validations (each also writes the checkpoint the preview is drawn from)."""
    base = VALIDATE_EVERY_CPU if resolve_device(device).type == "cpu" else VALIDATE_EVERY_GPU
    return max(1, min(base, steps // 10)) if steps else base


def build_request(choice: TrainingChoice) -> TrainingRequest:
    """The run for a checked choice: output named ``<arch>_x<scale>_<date>`` in the user's folder."""
    card = get_card(choice.arch)
    scale = None if card.arbitrary_scale else choice.scale
    data = tuple(Path(p) for p in choice.data)
    train, val = (data[:-1], data[-1:]) if choice.hold_out else (data, data)
    out, run_dir = new_run_paths(choice.arch, scale)
    return TrainingRequest(
        arch=choice.arch,
        scale=scale,
        data=train,
        val_data=val,
        out=out,
        run_dir=run_dir,
        steps=choice.steps,
        minutes=choice.minutes,
        loss=choice.loss,
        init=choice.init,
        device=choice.device,
        batch_size=choice.batch_size,
        patch=choice.patch,
        val_every=validation_interval(choice.steps, choice.device),
        blur=choice.blur,
        threads=default_threads(choice.device),
        held_out=choice.hold_out,
    )


def volumes_in_folder(folder: Path) -> list[Path]:
    """The NIfTI files of a folder, or the folder itself (a DICOM series) when it holds none."""
    nifti = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))
    return nifti or [folder]


class TrainingDialog(QDialog):
    """Non-modal: the user keeps reading images while the data is checked."""

    requestReady = Signal(object)  # TrainingRequest: every check passed
    refused = Signal(str)  # why the run cannot start

    def __init__(
        self, state: ViewerState, settings: Settings, pool: WorkerPool, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.setObjectName("trainingDialog")
        self.setWindowTitle("Train network")
        self.state = state
        self.settings = settings
        self.pool = pool
        self._worker: GeneratorWorker | None = None

        self.arch_combo = QComboBox()
        for name in trainable_names():
            self.arch_combo.addItem(f"{name} — {get_card(name).title}", name)
            self.arch_combo.setItemData(
                self.arch_combo.count() - 1, card_html(name), Qt.ItemDataRole.ToolTipRole
            )
        self.scale_combo = QComboBox()
        self.init_combo = QComboBox()
        self.init_combo.setToolTip(
            "Fine-tuning (transfer learning) starts from trained weights and adapts them to your data: "
            "far better than from scratch on a few volumes or minutes"
        )

        self.data_list = QListWidget()
        self.data_list.setObjectName("trainingData")
        self.data_list.setMinimumHeight(90)
        add_files = QPushButton("Add files…")
        add_files.clicked.connect(self._add_files_dialog)
        add_folder = QPushButton("Add folder…")
        add_folder.clicked.connect(self._add_folder_dialog)
        self.hold_out = QCheckBox("Hold out the last ticked volume for validation")
        self.hold_out.setToolTip(
            "Validate on a volume the network never trains on (use another subject). Otherwise "
            "validation slices come from the training volumes and flatter the result."
        )
        data_buttons = QHBoxLayout()
        data_buttons.addWidget(add_files)
        data_buttons.addWidget(add_folder)
        data_buttons.addStretch(1)
        data_box = QVBoxLayout()
        data_box.addWidget(self.data_list)
        data_box.addLayout(data_buttons)
        data_box.addWidget(self.hold_out)

        self.loss_combo = QComboBox()
        for key, text in LOSS_PRESETS:
            self.loss_combo.addItem(text, key)
        if not feature_net_path().is_file():
            i = self.loss_combo.findData("gan")
            self.loss_combo.setItemText(i, self.loss_combo.itemText(i) + " — needs the feature network")

        self.minutes_radio = QRadioButton("minutes")
        self.steps_radio = QRadioButton("steps")
        budget_group = QButtonGroup(self)
        budget_group.addButton(self.minutes_radio)
        budget_group.addButton(self.steps_radio)
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.1, 24 * 60)
        self.minutes_spin.setDecimals(1)
        self.minutes_spin.setValue(2.0)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 10_000_000)
        self.steps_spin.setValue(500)
        self.minutes_radio.setChecked(True)
        budget = QHBoxLayout()
        for w in (self.minutes_spin, self.minutes_radio, self.steps_spin, self.steps_radio):
            budget.addWidget(w)
        budget.addStretch(1)

        self.device_combo = QComboBox()
        for name in ["auto", *available_devices()]:
            self.device_combo.addItem(name, name)
        self.patch_spin = QSpinBox()
        self.patch_spin.setRange(16, 256)
        self.patch_spin.setSingleStep(8)
        self.patch_spin.setValue(64)
        self.patch_spin.setToolTip("HR patch side in pixels: slices smaller than this are not used")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 128)
        self.batch_spin.setValue(8)
        self.blur_check = QCheckBox("blur in the degradation (k3/σ1)")
        self.blur_check.setChecked(state.blur)
        sizes = QHBoxLayout()
        sizes.addWidget(QLabel("patch"))
        sizes.addWidget(self.patch_spin)
        sizes.addWidget(QLabel("batch"))
        sizes.addWidget(self.batch_spin)
        sizes.addWidget(self.blur_check)
        sizes.addStretch(1)

        form = QFormLayout()
        form.addRow("Network", self.arch_combo)
        form.addRow("Scale", self.scale_combo)
        form.addRow("Start from", self.init_combo)
        form.addRow("Training data", data_box)
        form.addRow("Loss", self.loss_combo)
        form.addRow("Budget", budget)
        form.addRow("Device", self.device_combo)
        form.addRow("Batches", sizes)

        self.message = QLabel("")
        self.message.setObjectName("trainingMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_button = QPushButton("Start training")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(close)
        buttons.addWidget(self.start_button)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.message)
        lay.addLayout(buttons)
        self.resize(580, 520)

        self.arch_combo.currentIndexChanged.connect(lambda _i: self._fill_scales())
        self.scale_combo.currentIndexChanged.connect(lambda _i: self._fill_starts())
        self.data_list.itemChanged.connect(lambda _item: self._update_hold_out())
        self.refresh()

    # --- filling -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Follow the viewer: its network, scale and device, the loaded volume and recent files."""
        name = self.state.model if needs_weights(self.state.model) else "new_carn"
        i = self.arch_combo.findData(name)
        self.arch_combo.setCurrentIndex(max(i, 0))
        self._fill_scales()
        j = self.device_combo.findData(self.state.device)
        self.device_combo.setCurrentIndex(max(j, 0))
        current = self.state.volume.source if self.state.volume is not None else None
        if current is not None:
            self.add_data([current], checked=True, label="loaded")
        self.add_data([Path(p) for p in self.settings.recent() if Path(p).exists()], checked=False)

    def _fill_scales(self) -> None:
        card = get_card(self.arch)
        self.scale_combo.blockSignals(True)
        self.scale_combo.clear()
        if card.arbitrary_scale:
            lo, hi = card.scale_range
            self.scale_combo.addItem(f"every scale ×{lo:g}–{hi:g} (one network)", None)
        else:
            for s in card.scales:
                self.scale_combo.addItem(f"×{s:g}", float(s))
            k = self.scale_combo.findData(float(self.state.scale))
            self.scale_combo.setCurrentIndex(max(k, 0))
        self.scale_combo.blockSignals(False)
        self._fill_starts()

    def _fill_starts(self) -> None:
        arch, scale = self.arch, self.scale
        self.init_combo.clear()
        self.init_combo.addItem("from scratch (random weights)", None)
        shipped = shipped_weights_path(arch, scale)
        if shipped.is_file():
            self.init_combo.addItem(f"fine-tune the shipped weights ({shipped.name})", str(shipped))
        for w in list_user_weights():
            if w.arch == arch and (w.scale == scale or scale is None):
                self.init_combo.addItem(f"fine-tune your weights ({w.path.name})", str(w.path))
        self.init_combo.setCurrentIndex(1 if shipped.is_file() else 0)

    def add_data(self, paths: list[Path], checked: bool = True, label: str = "") -> None:
        """Add volumes to the list (ticked or not); a path already listed is ticked if asked."""
        for path in paths:
            path = Path(path)
            found = self._item(path)
            if found is not None:
                if checked:
                    found.setCheckState(Qt.CheckState.Checked)
                continue
            item = QListWidgetItem(f"{path.name}  ({label})" if label else path.name)
            item.setToolTip(str(path))
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.data_list.addItem(item)
        self._update_hold_out()

    def add_folder(self, folder: Path) -> None:
        self.add_data(volumes_in_folder(Path(folder)), checked=True)

    def _item(self, path: Path) -> QListWidgetItem | None:
        for i in range(self.data_list.count()):
            item = self.data_list.item(i)
            if Path(item.data(Qt.ItemDataRole.UserRole)) == path:
                return item
        return None

    def _add_files_dialog(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(
            self,
            "Training volumes",
            self.settings.last_folder,
            "Volumes (*.nii *.nii.gz *.dcm);;All files (*)",
        )
        self.add_data([Path(n) for n in names])

    def _add_folder_dialog(self) -> None:
        name = QFileDialog.getExistingDirectory(
            self, "Folder of volumes (or a DICOM series)", self.settings.last_folder
        )
        if name:
            self.add_folder(Path(name))

    def _update_hold_out(self) -> None:
        many = len(self.checked_data()) >= 2
        self.hold_out.setEnabled(many)
        if not many:
            self.hold_out.setChecked(False)

    # --- the choice ----------------------------------------------------------------------------
    @property
    def arch(self) -> str:
        return self.arch_combo.currentData()

    @property
    def scale(self) -> float | None:
        return self.scale_combo.currentData()

    def checked_data(self) -> tuple[Path, ...]:
        out = []
        for i in range(self.data_list.count()):
            item = self.data_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(Path(item.data(Qt.ItemDataRole.UserRole)))
        return tuple(out)

    def set_choice(
        self,
        arch: str | None = None,
        scale: float | None = None,
        *,
        steps: int | None = None,
        minutes: float | None = None,
        loss: str | None = None,
        start: str | None = None,
        device: str | None = None,
        patch: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        """Set several fields at once (scripts and tests); ``start`` is "scratch" or a weights path."""
        if arch is not None:
            self.arch_combo.setCurrentIndex(self.arch_combo.findData(arch))
        if scale is not None:
            self.scale_combo.setCurrentIndex(self.scale_combo.findData(float(scale)))
        if steps is not None:
            self.steps_spin.setValue(steps)
            self.steps_radio.setChecked(True)
        if minutes is not None:
            self.minutes_spin.setValue(minutes)
            self.minutes_radio.setChecked(True)
        if loss is not None:
            self.loss_combo.setCurrentIndex(self.loss_combo.findData(loss))
        if start is not None:
            self.init_combo.setCurrentIndex(0 if start == "scratch" else self.init_combo.findData(str(start)))
        if device is not None:
            self.device_combo.setCurrentIndex(self.device_combo.findData(device))
        if patch is not None:
            self.patch_spin.setValue(patch)
        if batch_size is not None:
            self.batch_spin.setValue(batch_size)

    def choice(self) -> TrainingChoice:
        init = self.init_combo.currentData()
        by_steps = self.steps_radio.isChecked()
        return TrainingChoice(
            arch=self.arch,
            scale=self.scale,
            data=self.checked_data(),
            loss=self.loss_combo.currentData(),
            init=Path(init) if init else None,
            steps=self.steps_spin.value() if by_steps else None,
            minutes=None if by_steps else self.minutes_spin.value(),
            device=self.device_combo.currentData(),
            batch_size=self.batch_spin.value(),
            patch=self.patch_spin.value(),
            blur=self.blur_check.isChecked(),
            hold_out=self.hold_out.isEnabled() and self.hold_out.isChecked(),
        )

    # --- checks, then the request --------------------------------------------------------------
    def start(self) -> None:
        """Check everything (the volumes on a worker); emit ``requestReady`` or say why not."""
        if self._worker is not None:
            return
        choice = self.choice()
        reason = check_choice(choice)
        if reason is not None:
            self._refuse(reason)
            return
        self._say(f"Checking {len(choice.data)} volume(s)…")
        self.start_button.setEnabled(False)
        worker = GeneratorWorker(data_check_job(choice.data, choice.patch), "training data check")
        sig = worker.signals
        sig.progress.connect(lambda p: self._say(f"{p.message}…"))
        sig.finished.connect(
            lambda result, w=worker, c=choice: self._check_done(w) or self._checked(c, result)
        )
        sig.failed.connect(lambda exc, w=worker: self._check_done(w) or self._refuse(str(exc)))
        sig.done.connect(lambda w=worker: self._check_done(w))
        self._worker = worker
        self.pool.start(worker)

    def _check_done(self, worker: GeneratorWorker) -> None:
        if worker is self._worker:
            self._worker = None
            self.start_button.setEnabled(True)

    def _checked(self, choice: TrainingChoice, result: DataCheck) -> None:
        if result.problems:
            self._refuse("Cannot train on: " + "; ".join(result.problems) + " (untick it or pick others)")
            return
        try:
            request = build_request(choice)
        except (OSError, MedSRError) as exc:
            self._refuse(str(exc))
            return
        total = sum(result.slices.values())
        self._say(f"Starting: {total} usable slices in {len(result.slices)} volume(s)")
        self.requestReady.emit(request)
        self.accept()

    def _refuse(self, reason: str) -> None:
        log.info("training refused: %s", reason)
        self.message.setStyleSheet("color: #ff6b6b;")
        self.message.setText(reason)
        self.refused.emit(reason)

    def _say(self, text: str) -> None:
        self.message.setStyleSheet("")
        self.message.setText(text)
