"""What the user must be told about a volume or an SR result, in words (no Qt).

Loader warnings (NaN replaced, frames dropped...), a constant volume, a network used beyond what it
was trained for (``engine.out_of_range.check_fit``) and device fallbacks recorded by the upscaler
(``Upscaler.notes``, e.g. a GPU out of memory) are collected here; the window shows them on screen.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.inference import Upscaler
from engine.out_of_range import check_fit
from engine.volume import Volume
from medsr_viewer.model_cache import BICUBIC, ModelCache
from medsr_viewer.pipeline import SliceRequest, SliceResult
from medsr_viewer.state import SIMULATE, LoadedVolume

DEVICE_NOTES_SHOWN = 2  # the latest distinct device notes of an upscaler (retries repeat them)


def volume_notices(loaded: LoadedVolume) -> list[str]:
    """Every loader warning of ``loaded``, then the viewer's own (a constant volume)."""
    v = loaded.volume
    notes = [str(w) for w in (v.metadata.get("warnings") or [])]
    low, high = float(np.min(v.data)), float(np.max(v.data))
    if not high > low:
        notes.append(f"every voxel is {low:g}: the volume is constant, so there is nothing to compare")
    return notes


def network_input(volume: Volume, request: SliceRequest) -> Volume:
    """The volume the network sees: in Simulate its in-plane voxels are ``scale`` times coarser."""
    if request.mode != SIMULATE:
        return volume
    factors = np.array([1.0 if a == request.axis else request.scale for a in range(3)] + [1.0])
    return dataclasses.replace(volume, affine=volume.affine @ np.diag(factors))


def fit_notices(upscaler: Upscaler, loaded: LoadedVolume, request: SliceRequest) -> list[str]:
    """``check_fit`` warnings for running ``upscaler`` as ``request`` asks (none for bicubic)."""
    if upscaler.name == BICUBIC:
        return []
    card = {"arch": upscaler.name, **upscaler.weights_card} if upscaler.weights_card else upscaler.card
    return check_fit(card, network_input(loaded.volume, request), request.scale, plane_axis=request.axis)


def device_notices(upscaler: Upscaler) -> list[str]:
    """The latest distinct notes the upscaler recorded (out-of-memory retries, CPU fallback)."""
    distinct = list(dict.fromkeys(reversed(upscaler.notes)))[:DEVICE_NOTES_SHOWN]
    return list(reversed(distinct))


def sr_notices(models: ModelCache, loaded: LoadedVolume, result: SliceResult) -> list[str]:
    """What the SR panel of ``result`` must warn about: use beyond training, device fallbacks.

    Only for a network that ran (a bicubic fallback already says why in its own notice); the
    network is then loaded, so resolving it again is a dictionary look-up, never a load.
    """
    info = result.sr
    if info is None or info.fallback:
        return []
    req = result.request
    upscaler = models.resolve(req.model, req.scale, req.device, req.weights).upscaler
    return fit_notices(upscaler, loaded, req) + device_notices(upscaler)
