"""The control bar: mode, model, scale, device, blur, plane and window preset, bound to the state.

Each control writes the state when the user changes it and follows the state's events otherwise;
the state ignores writes of its current value, so the two directions cannot loop.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QWidget,
)

from engine.devices import available_devices
from engine.models import get_card
from medsr_viewer.model_cards import (
    UserWeights,
    card_html,
    has_weights,
    list_user_weights,
    picker_names,
    scale_choices,
    user_weights_html,
)
from medsr_viewer.state import AUTO_PRESET, CT_PRESETS, ENHANCE, SIMULATE, ViewerState, preset_window

CUSTOM_WINDOW = "Custom"
WEIGHTS_ROLE = Qt.ItemDataRole.UserRole + 1  # the model picker's weights file (None: shipped weights)
USER_WEIGHTS_COLOR = QColor("#7bd88f")


def choose_model(
    state: ViewerState, name: str, weights: str | None = None, scale: float | None = None
) -> None:
    """Show ``name`` with ``weights`` (None: its shipped weights) at ``scale`` (None: unchanged).

    The state has no event of its own for weights: a change of weights for the same network is
    announced as a model event (requests carry the weights, so every listener recomputes).
    """
    weights = str(weights) if weights else None
    changed = state.weights.get(name) != weights
    if weights:
        state.weights[name] = weights
    else:
        state.weights.pop(name, None)
    if scale is not None:
        state.scale = scale
    if name != state.model:
        state.model = name
    elif changed:
        state.events.model.emit(name)


def _label(text: str) -> QLabel:
    lab = QLabel(text)
    lab.setObjectName("barLabel")
    return lab


def _segmented(
    names: list[tuple[str, str]], tip: dict[str, str] | None = None
) -> tuple[QWidget, QButtonGroup, dict[str, QToolButton]]:
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(0)
    group = QButtonGroup(box)
    group.setExclusive(True)
    buttons = {}
    for key, text in names:
        b = QToolButton()
        b.setText(text)
        b.setCheckable(True)
        b.setObjectName("segment")
        if tip and key in tip:
            b.setToolTip(tip[key])
        group.addButton(b)
        lay.addWidget(b)
        buttons[key] = b
    return box, group, buttons


class ControlsBar(QToolBar):
    """One toolbar row of controls above the panels (items that do not fit go to its » menu)."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None):
        super().__init__("Controls", parent)
        self.setObjectName("controlsToolbar")
        self.setMovable(False)
        self.state = state
        self.catalog: dict[str, dict[str, Any]] = {}
        self._updating = False
        self._trained: dict[tuple[str, float | None], bool] = {}  # weights on disk, until the next rescan
        self.user_weights: dict[str, UserWeights] = {}  # path -> the user's weights listed in the picker

        mode_box, self.mode_group, self.mode_buttons = _segmented(
            [(SIMULATE, "Simulate"), (ENHANCE, "Enhance")],
            {
                SIMULATE: "The loaded volume is ground truth: LR is made from it, SR scored against it (M)",
                ENHANCE: "The loaded volume is what was acquired: SR goes beyond its resolution (M)",
            },
        )
        for key, b in self.mode_buttons.items():
            b.clicked.connect(lambda _c=False, k=key: setattr(self.state, "mode", k))

        self.model_combo = QComboBox()
        self.model_combo.setObjectName("modelCombo")
        self.model_combo.setMinimumContentsLength(14)
        self.model_combo.currentIndexChanged.connect(self._model_picked)

        self.scale_combo = QComboBox()
        self.scale_combo.setObjectName("scaleCombo")
        self.scale_combo.currentIndexChanged.connect(self._scale_picked)
        self.scale_spin = QDoubleSpinBox()
        self.scale_spin.setObjectName("scaleSpin")
        self.scale_spin.setDecimals(2)
        self.scale_spin.setSingleStep(0.1)
        self.scale_spin.setPrefix("×")
        self.scale_spin.setKeyboardTracking(False)
        self.scale_spin.valueChanged.connect(self._spin_changed)
        self.scale_stack = QStackedWidget()
        self.scale_stack.addWidget(self.scale_combo)
        self.scale_stack.addWidget(self.scale_spin)
        self.scale_stack.setFixedWidth(112)

        self.device_combo = QComboBox()
        self.device_combo.setObjectName("deviceCombo")
        for name in ["auto", *available_devices()]:
            self.device_combo.addItem(name.upper() if name != "auto" else "auto", name)
        self.device_combo.setToolTip("Where the network runs: auto takes a GPU when there is one")
        self.device_combo.currentIndexChanged.connect(
            lambda i: setattr(self.state, "device", self.device_combo.itemData(i))
        )

        self.blur_check = QCheckBox("blur")
        self.blur_check.setToolTip(
            "Add the k3/σ1 Gaussian blur to the degradation (Simulate LR, Enhance consistency)"
        )
        self.blur_check.toggled.connect(lambda on: setattr(self.state, "blur", on))

        plane_box, self.plane_group, self.plane_buttons = _segmented(
            [("2", "Axial"), ("1", "Coronal"), ("0", "Sagittal")],
            {"2": "Axial slices (key 1)", "1": "Coronal slices (key 2)", "0": "Sagittal slices (key 3)"},
        )
        for key, b in self.plane_buttons.items():
            b.clicked.connect(lambda _c=False, k=int(key): setattr(self.state, "axis", k))

        self.window_combo = QComboBox()
        self.window_combo.setObjectName("windowCombo")
        self.window_combo.addItems([AUTO_PRESET, *(f"CT {n}" for n in CT_PRESETS), CUSTOM_WINDOW])
        self.window_combo.setToolTip("Window/level presets (right-drag on any image adjusts the window)")
        self.window_combo.currentTextChanged.connect(self._preset_picked)

        for group in (
            (_label("Mode"), mode_box),
            (_label("Model"), self.model_combo),
            (_label("Scale"), self.scale_stack),
            (_label("Device"), self.device_combo),
            (self.blur_check,),
            (_label("Plane"), plane_box),
            (_label("Window"), self.window_combo),
        ):
            self.addWidget(_group(*group))

        self.populate_models()
        ev = state.events
        ev.mode.connect(lambda _v: self.sync())
        ev.model.connect(lambda _v: self.sync())
        ev.scale.connect(lambda _v: self.sync())
        ev.device.connect(lambda _v: self.sync())
        ev.blur.connect(lambda _v: self.sync())
        ev.axis.connect(lambda _v: self.sync())
        ev.volume.connect(lambda _v: self.sync())
        ev.window.connect(lambda _v: self._sync_window())
        self.sync()

    # --- model list ----------------------------------------------------------------------------
    def populate_models(self) -> None:
        """Every registered network with its shipped weights (untrained ones greyed and marked), each
        followed by the user's own weights files for it; the card as tooltip."""
        self._trained.clear()
        mine: dict[str, list[UserWeights]] = {}
        for w in list_user_weights(tuple(self.state.weights.values())):
            mine.setdefault(w.arch, []).append(w)
        self.user_weights = {str(w.path): w for ws in mine.values() for w in ws}
        self._updating = True
        try:
            self.model_combo.clear()
            for name in picker_names():
                trained = has_weights(name)
                label = name if trained else f"{name}  (untrained)"
                self.model_combo.addItem(label, name)
                i = self.model_combo.count() - 1
                self.model_combo.setItemData(i, None, WEIGHTS_ROLE)
                self.model_combo.setItemData(
                    i, card_html(name, self.catalog.get(name)), Qt.ItemDataRole.ToolTipRole
                )
                if not trained:
                    self.model_combo.setItemData(i, QColor(150, 150, 150), Qt.ItemDataRole.ForegroundRole)
                for w in mine.get(name, []):
                    self.model_combo.addItem(f"  ★ {w.label}", name)
                    i = self.model_combo.count() - 1
                    self.model_combo.setItemData(i, str(w.path), WEIGHTS_ROLE)
                    tip = card_html(name, self.catalog.get(name)).split("<br>")[0]
                    self.model_combo.setItemData(
                        i, f"{tip}<br>{user_weights_html(w)}", Qt.ItemDataRole.ToolTipRole
                    )
                    self.model_combo.setItemData(i, USER_WEIGHTS_COLOR, Qt.ItemDataRole.ForegroundRole)
        finally:
            self._updating = False
        self.sync()

    def model_index(self, name: str, weights: str | None = None) -> int:
        """The picker entry of ``name`` with ``weights`` (None: shipped), or -1."""
        for i in range(self.model_combo.count()):
            if self.model_combo.itemData(i) == name and self.model_combo.itemData(i, WEIGHTS_ROLE) == weights:
                return i
        return -1

    def select(self, name: str, weights: str | None = None) -> None:
        """Show ``name`` with ``weights`` (None: the shipped weights), as if picked in the list."""
        w = self.user_weights.get(str(weights)) if weights else None
        if weights and w is None:  # a file not listed yet (just written): look again
            self.populate_models()
            w = self.user_weights.get(str(weights))
        scale = w.scale if w is not None and w.scale is not None else self._scale_for(name)
        choose_model(self.state, name, weights, scale)

    def set_catalog(self, rows: list[dict[str, Any]]) -> None:
        self.catalog = {r["name"]: r for r in rows}
        self.populate_models()

    def trained(self, name: str, scale: float | None) -> bool:
        key = (name, scale)
        if key not in self._trained:
            self._trained[key] = has_weights(name, scale, self.state.weights)
        return self._trained[key]

    # --- user input -> state -------------------------------------------------------------------
    def _model_picked(self, index: int) -> None:
        if self._updating or index < 0:
            return
        self.select(self.model_combo.itemData(index), self.model_combo.itemData(index, WEIGHTS_ROLE))

    def _scale_for(self, name: str) -> float:
        """The current scale, or the nearest one ``name`` serves."""
        fixed, continuous = scale_choices(name)
        scale = self.state.scale
        if fixed and all(abs(scale - s) > 1e-6 for s in fixed):
            scale = min(fixed, key=lambda s: abs(s - scale))
        elif continuous and not continuous[0] <= scale <= continuous[1]:
            scale = min(max(scale, continuous[0]), continuous[1])
        return scale

    def _set_scale(self, scale: float) -> None:
        """A new scale; the user's weights of another fixed scale give way to the shipped ones."""
        s = self.state
        w = self.user_weights.get(s.weights.get(s.model) or "")
        if w is not None and w.scale is not None and abs(w.scale - scale) > 1e-6:
            choose_model(s, s.model, None, scale)
        else:
            s.scale = scale

    def _scale_picked(self, index: int) -> None:
        if self._updating or index < 0:
            return
        self._set_scale(float(self.scale_combo.itemData(index)))

    def _spin_changed(self, value: float) -> None:
        if not self._updating:
            self._set_scale(float(value))

    def _preset_picked(self, text: str) -> None:
        if self._updating or self.state.loaded is None or text == CUSTOM_WINDOW:
            return
        name = text.removeprefix("CT ")
        self.state.window = preset_window(name if name in CT_PRESETS else AUTO_PRESET, self.state.loaded)

    # --- state -> widgets ----------------------------------------------------------------------
    def sync(self) -> None:
        s = self.state
        self._updating = True
        try:
            self.mode_buttons[s.mode].setChecked(True)
            self.plane_buttons[str(s.axis)].setChecked(True)
            i = self.model_index(s.model, s.weights.get(s.model))
            if i < 0:
                i = self.model_combo.findData(s.model)
            if i >= 0:
                self.model_combo.setCurrentIndex(i)
                self.model_combo.setToolTip(self.model_combo.itemData(i, Qt.ItemDataRole.ToolTipRole))
            fixed, continuous = scale_choices(s.model) if i >= 0 else ((2.0, 3.0, 4.0), None)
            if continuous:
                self.scale_spin.setRange(*continuous)
                self.scale_spin.setValue(s.scale)
                self.scale_stack.setCurrentWidget(self.scale_spin)
            else:
                self.scale_combo.clear()
                for sc in fixed:
                    trained = self.trained(s.model, sc)
                    self.scale_combo.addItem(f"×{sc:g}" if trained else f"×{sc:g} (untrained)", sc)
                j = self.scale_combo.findData(s.scale)
                if j < 0:
                    j = min(range(len(fixed)), key=lambda k: abs(fixed[k] - s.scale)) if fixed else -1
                self.scale_combo.setCurrentIndex(j)
                self.scale_stack.setCurrentWidget(self.scale_combo)
            d = self.device_combo.findData(s.device)
            self.device_combo.setCurrentIndex(max(d, 0))
            self.blur_check.setChecked(s.blur)
        finally:
            self._updating = False
        self._sync_window()

    def _sync_window(self) -> None:
        s = self.state
        text = CUSTOM_WINDOW
        if s.loaded is not None:
            if s.window == s.loaded.auto_window:
                text = AUTO_PRESET
            for name, wl in CT_PRESETS.items():
                if s.window == wl:
                    text = f"CT {name}"
        self._updating = True
        try:
            self.window_combo.setCurrentText(text)
        finally:
            self._updating = False

    def card_for_current(self) -> str:
        return card_html(
            self.state.model, self.catalog.get(self.state.model), self.state.weights.get(self.state.model)
        )

    def model_title(self) -> str:
        return get_card(self.state.model).title


def _group(*widgets: QWidget) -> QWidget:
    """A label and its control kept together (the toolbar moves whole groups to its overflow menu)."""
    box = QWidget()
    box.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
    lay = QHBoxLayout(box)
    lay.setContentsMargins(2, 0, 8, 0)
    lay.setSpacing(4)
    for w in widgets:
        lay.addWidget(w)
    return box
