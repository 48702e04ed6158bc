"""The viewer's state, free of Qt: what is shown (volume, plane, slice, window, model, scale, mode, zoom).

Widgets subscribe to the events of a ``ViewerState`` and set its properties; the state never knows
them (napari's ``Dims`` model and ``QtDims`` view). Setting a property to its current value emits
nothing, so a widget that both listens and writes cannot start a feedback loop.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.normalization import Normalizer
from engine.volume import Volume

log = logging.getLogger(__name__)

SIMULATE = "simulate"  # the loaded volume is ground truth; LR is degraded from it
ENHANCE = "enhance"  # the loaded volume is what was acquired; SR goes beyond it
MODES = (SIMULATE, ENHANCE)

AXIS_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}
AXIS_BY_NAME = {v: k for k, v in AXIS_NAMES.items()}

_volume_ids = itertools.count(1)


class Event:
    """A list of plain-Python callbacks called with one value; exceptions are logged, not raised."""

    def __init__(self, name: str):
        self.name = name
        self._callbacks: list[Callable[[Any], None]] = []

    def connect(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[[Any], None]) -> None:
        self._callbacks = [c for c in self._callbacks if c != callback]

    def emit(self, value: Any = None) -> None:
        for callback in list(self._callbacks):
            try:
                callback(value)
            except Exception:  # one broken subscriber must not stop the others
                log.exception("subscriber of %s failed", self.name)


@dataclass
class StateEvents:
    volume: Event = field(default_factory=lambda: Event("volume"))
    axis: Event = field(default_factory=lambda: Event("axis"))
    slice: Event = field(default_factory=lambda: Event("slice"))
    window: Event = field(default_factory=lambda: Event("window"))
    model: Event = field(default_factory=lambda: Event("model"))
    scale: Event = field(default_factory=lambda: Event("scale"))
    device: Event = field(default_factory=lambda: Event("device"))
    mode: Event = field(default_factory=lambda: Event("mode"))
    blur: Event = field(default_factory=lambda: Event("blur"))
    cursor: Event = field(default_factory=lambda: Event("cursor"))
    zoom: Event = field(default_factory=lambda: Event("zoom"))
    view_reset: Event = field(default_factory=lambda: Event("view_reset"))

    def all(self) -> list[Event]:
        return [getattr(self, name) for name in self.__dataclass_fields__]


@dataclass(frozen=True)
class WindowLevel:
    """Display window in the volume's own units: ``level`` is the centre, ``width`` the span."""

    level: float
    width: float

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2

    @classmethod
    def from_range(cls, low: float, high: float) -> WindowLevel:
        return cls((low + high) / 2, max(high - low, 1e-6))


@dataclass(frozen=True)
class LoadedVolume:
    """A volume with what every slice computation shares: one id, one normaliser, one data range."""

    volume: Volume
    volume_id: int
    normalizer: Normalizer
    data_range: float  # max - min of the whole volume: the PSNR/SSIM peak, fixed for all slices
    auto_window: WindowLevel  # 0.5-99.5 percentile window

    @classmethod
    def prepare(cls, volume: Volume) -> LoadedVolume:
        """Fit the normaliser once for the volume (every slice call reuses it) and the auto window."""
        norm = Normalizer.fit(volume.data)
        data = volume.data
        finite_min, finite_max = float(np.nanmin(data)), float(np.nanmax(data))
        return cls(
            volume,
            next(_volume_ids),
            norm,
            max(finite_max - finite_min, 1e-6),
            WindowLevel.from_range(norm.low, norm.high),
        )


class ViewerState:
    """Everything the view shows, as plain properties with events (no Qt)."""

    def __init__(self) -> None:
        self.events = StateEvents()
        self._loaded: LoadedVolume | None = None
        self._axis = 2
        self._slices: dict[int, int] = {0: 0, 1: 0, 2: 0}
        self._window = WindowLevel(0.5, 1.0)
        self._model = "new_carn"
        self._scale = 2.0
        self._device = "auto"
        self._mode = SIMULATE
        self._blur = False
        self._cursor: tuple[float, float] | None = None  # crosshair in display mm (x right, y down)
        self._zoom = 1.0
        self.weights: dict[str, str] = {}  # model name -> a weights file chosen by the user

    # --- volume ------------------------------------------------------------------------------
    @property
    def loaded(self) -> LoadedVolume | None:
        return self._loaded

    @property
    def volume(self) -> Volume | None:
        return self._loaded.volume if self._loaded else None

    def set_volume(self, loaded: LoadedVolume, axis: int | None = None) -> None:
        """Show a newly loaded volume: middle slices, its acquisition plane, the auto window."""
        self._loaded = loaded
        shape = loaded.volume.shape
        self._slices = {a: shape[a] // 2 for a in range(3)}
        self._axis = loaded.volume.acquisition_axis if axis is None else axis
        self._window = default_window(loaded)
        self._cursor = None
        self._zoom = 1.0
        self.events.volume.emit(loaded)
        self.events.window.emit(self._window)
        self.events.view_reset.emit(None)

    # --- plane and slice ---------------------------------------------------------------------
    @property
    def axis(self) -> int:
        return self._axis

    @axis.setter
    def axis(self, value: int) -> None:
        value = int(value)
        if value not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {value}")
        if value != self._axis:
            self._axis = value
            self._cursor = None
            self.events.axis.emit(value)
            self.events.slice.emit(self.slice)
            self.events.view_reset.emit(None)

    @property
    def n_slices(self) -> int:
        return self.volume.shape[self._axis] if self.volume is not None else 0

    @property
    def slice(self) -> int:
        return self._slices[self._axis]

    @slice.setter
    def slice(self, value: int) -> None:
        n = self.n_slices
        value = int(min(max(int(value), 0), max(n - 1, 0)))
        if value != self._slices[self._axis]:
            self._slices[self._axis] = value
            self.events.slice.emit(value)

    def step_slice(self, delta: int) -> None:
        self.slice = self.slice + int(delta)

    # --- display -----------------------------------------------------------------------------
    @property
    def window(self) -> WindowLevel:
        return self._window

    @window.setter
    def window(self, value: WindowLevel) -> None:
        value = WindowLevel(float(value.level), max(float(value.width), 1e-6))
        if value != self._window:
            self._window = value
            self.events.window.emit(value)

    @property
    def cursor(self) -> tuple[float, float] | None:
        return self._cursor

    @cursor.setter
    def cursor(self, value: tuple[float, float] | None) -> None:
        value = None if value is None else (float(value[0]), float(value[1]))
        if value != self._cursor:
            self._cursor = value
            self.events.cursor.emit(value)

    @property
    def zoom(self) -> float:
        """Magnification relative to the whole slice fitting its panel (1 = fit)."""
        return self._zoom

    @zoom.setter
    def zoom(self, value: float) -> None:
        value = float(value)
        if abs(value - self._zoom) > 1e-6:
            self._zoom = value
            self.events.zoom.emit(value)

    def reset_view(self) -> None:
        self._zoom = 1.0
        self.events.view_reset.emit(None)

    # --- computation -------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self._model

    @model.setter
    def model(self, value: str) -> None:
        if value != self._model:
            self._model = value
            self.events.model.emit(value)

    @property
    def scale(self) -> float:
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        value = round(float(value), 3)
        if abs(value - self._scale) > 1e-9:
            self._scale = value
            self.events.scale.emit(value)

    @property
    def device(self) -> str:
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        if value != self._device:
            self._device = value
            self.events.device.emit(value)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {value!r}")
        if value != self._mode:
            self._mode = value
            self.events.mode.emit(value)

    def toggle_mode(self) -> None:
        self.mode = ENHANCE if self._mode == SIMULATE else SIMULATE

    @property
    def blur(self) -> bool:
        return self._blur

    @blur.setter
    def blur(self, value: bool) -> None:
        if bool(value) != self._blur:
            self._blur = bool(value)
            self.events.blur.emit(self._blur)


def default_window(loaded: LoadedVolume) -> WindowLevel:
    """CT opens in the soft-tissue window, everything else in the percentile auto window."""
    if loaded.volume.modality == "CT":
        return CT_PRESETS["Soft tissue"]
    return loaded.auto_window


# Standard CT windows in HU (level, width).
CT_PRESETS: dict[str, WindowLevel] = {
    "Brain": WindowLevel(40, 80),
    "Soft tissue": WindowLevel(40, 400),
    "Abdomen": WindowLevel(60, 350),
    "Lung": WindowLevel(-600, 1500),
    "Bone": WindowLevel(400, 1800),
}
AUTO_PRESET = "Auto (0.5–99.5 percentile)"


def preset_window(name: str, loaded: LoadedVolume) -> WindowLevel:
    """A named window: a CT preset, or the volume's percentile window (MR and anything else)."""
    if name in CT_PRESETS:
        return CT_PRESETS[name]
    if name == AUTO_PRESET:
        return loaded.auto_window
    raise KeyError(name)
