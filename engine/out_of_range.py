"""Warn when a network is used beyond what it was trained for: scale, voxel size, modality.

A network that never saw 0.3 mm voxels, x4, or CT still produces a confident-looking image; these
checks say so in words a reader can act on. They read a weights card as training writes it
(``scales_trained``; ``training_spacing_mm`` = [min, max] in-plane mm of the training volumes;
``modalities``) or a registry ``ModelCard`` (``scales``/``scale_range``). A check whose key the card
lacks is skipped, never guessed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from engine.models.registry import ModelCard
from engine.volume import Volume

Card = Mapping[str, Any]
SPACING_TOLERANCE = 1.5  # "far": more than 1.5x below the smallest or above the largest trained voxel
_SCALE_EPS = 1e-6


def check_fit(
    card_or_weights_card: Card | ModelCard,
    volume: Volume,
    scale: float,
    *,
    plane_axis: int | None = None,
) -> list[str]:
    """Human-readable warnings for running the carded network on ``volume`` at ``scale``.

    ``volume`` is the network's input (the acquired volume, or a degraded one in a simulation):
    its SR output has in-plane voxels of ``spacing / scale``, compared with the voxel sizes the
    network learnt to produce. ``plane_axis`` is the axis normal to the upscaled plane (default: the
    acquisition axis, as ``engine.inference.upscale_volume`` uses). An empty list means no concern.
    """
    card = _as_mapping(card_or_weights_card)
    name = str(card.get("arch") or card.get("name") or "this network")
    warnings = []
    for check in (_scale_warning, _spacing_warning, _modality_warning):
        text = check(card, name, volume, float(scale), plane_axis)
        if text:
            warnings.append(text)
    return warnings


def _as_mapping(card: Card | ModelCard) -> Card:
    if isinstance(card, ModelCard):
        return dataclasses.asdict(card)
    if not isinstance(card, Mapping):
        raise TypeError(f"expected a card (dict or ModelCard), got {type(card).__name__}")
    return card


def _numbers(value: object, count: int | None = None) -> list[float] | None:
    """Finite numbers from a card entry, or None if absent or malformed (then the check is skipped)."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        items = [float(v) for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if not items or not all(math.isfinite(v) for v in items) or (count and len(items) != count):
        return None
    return items


def _scale_warning(card: Card, name: str, volume: Volume, scale: float, axis: int | None) -> str:
    trained = _numbers(card.get("scales_trained"))
    if trained is None:
        trained = _numbers(card.get("scale_range"), 2) or _numbers(card.get("scales"))
    if trained is None:
        return ""
    lo, hi = min(trained), max(trained)
    if lo - _SCALE_EPS <= scale <= hi + _SCALE_EPS:
        return ""
    served = f"x{lo:g}" if hi - lo < _SCALE_EPS else f"x{lo:g} to x{hi:g}"
    return f"{name} was trained for {served}, not x{scale:g}: its output at this scale is untested"


def _spacing_warning(card: Card, name: str, volume: Volume, scale: float, axis: int | None) -> str:
    trained = _numbers(card.get("training_spacing_mm"), 2)
    if trained is None or scale <= 0:
        return ""
    lo, hi = sorted(trained)
    axis = volume.acquisition_axis if axis is None else axis
    produced = [volume.spacing[a] / scale for a in range(3) if a != axis]
    if all(lo / SPACING_TOLERANCE <= s <= hi * SPACING_TOLERANCE for s in produced):
        return ""
    sizes = " x ".join(f"{s:.3g}" for s in produced)
    trained_text = f"{lo:.3g} mm" if hi - lo < 1e-9 else f"{lo:.3g}-{hi:.3g} mm"
    return (
        f"{name} would produce {sizes} mm pixels here, far from the {trained_text} of its training data: "
        "detail it adds at this voxel size is unvalidated"
    )


def _modality_warning(card: Card, name: str, volume: Volume, scale: float, axis: int | None) -> str:
    modalities = card.get("modalities")
    if not isinstance(modalities, Sequence) or isinstance(modalities, (str, bytes)) or not modalities:
        return ""
    known = sorted({str(m) for m in modalities})
    if volume.modality in known:
        return ""
    trained = " and ".join(known)
    if volume.modality == "unknown":
        return f"the volume's modality is unknown; {name} was trained on {trained} only"
    return f"{name} was trained on {trained} only, not {volume.modality}: its output is unvalidated here"
