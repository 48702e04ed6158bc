"""The Qt-free state: events fire on change only, slices clamp, presets and defaults."""

from __future__ import annotations

import numpy as np
import pytest

from engine.volume import Volume
from medsr_viewer.state import (
    CT_PRESETS,
    ENHANCE,
    SIMULATE,
    LoadedVolume,
    ViewerState,
    WindowLevel,
    preset_window,
)


def _loaded(shape=(20, 30, 10), spacing=(1.0, 1.0, 3.0), modality="MR") -> LoadedVolume:
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return LoadedVolume.prepare(Volume(data, np.diag([*spacing, 1.0]), modality))


def test_events_fire_once_per_change_and_slices_clamp():
    state = ViewerState()
    seen = []
    for name in ("volume", "axis", "slice", "mode", "scale", "model", "window"):
        getattr(state.events, name).connect(lambda v, n=name: seen.append((n, v)))
    state.set_volume(_loaded())
    assert state.axis == 2  # the thick-slice axis is the acquisition plane
    assert state.slice == 5
    seen.clear()
    state.slice = 5
    state.mode = SIMULATE
    assert seen == []  # same values: no events, so listeners that write back cannot loop
    state.slice = 99
    assert state.slice == 9 and seen == [("slice", 9)]
    state.step_slice(-20)
    assert state.slice == 0
    state.axis = 0
    assert state.slice == 10  # each axis keeps its own slice
    state.toggle_mode()
    assert state.mode == ENHANCE
    state.scale = 3
    assert ("scale", 3.0) in seen
    with pytest.raises(ValueError):
        state.mode = "dream"


def test_window_defaults_and_presets():
    ct = _loaded(modality="CT")
    state = ViewerState()
    state.set_volume(ct)
    assert state.window == CT_PRESETS["Soft tissue"]
    assert preset_window("Lung", ct) == WindowLevel(-600, 1500)
    mr = _loaded()
    state.set_volume(mr)
    assert state.window == mr.auto_window  # MR: percentile window
    assert mr.auto_window.low < mr.auto_window.high
    assert mr.data_range == pytest.approx(float(mr.volume.data.max() - mr.volume.data.min()))
    assert mr.volume_id != ct.volume_id
