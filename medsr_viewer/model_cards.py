"""What the model picker says about each network: card text, weights present or not (no Qt)."""

from __future__ import annotations

import html
from typing import Any

from engine.models import get_card, model_names
from engine.models.registry import get_entry
from engine.weights import shipped_weights_path

FIXED_SCALES = (2.0, 3.0, 4.0)
CONTINUOUS_RANGE = (1.1, 4.0)


def needs_weights(name: str) -> bool:
    return bool(getattr(get_entry(name).cls, "needs_weights", True))


def has_weights(name: str, scale: float | None = None, user_weights: dict[str, str] | None = None) -> bool:
    """Whether ``name`` can run at ``scale`` (any served scale if None) with weights on disk."""
    if not needs_weights(name) or (user_weights and name in user_weights):
        return True
    card = get_card(name)
    if card.arbitrary_scale:
        return shipped_weights_path(name, None).exists()
    scales = [scale] if scale is not None else list(card.scales)
    return any(shipped_weights_path(name, s).exists() for s in scales)


def picker_names() -> list[str]:
    """Every registered network, bicubic last (it is the baseline, not an SR network)."""
    names = model_names()
    return [n for n in names if n != "bicubic"] + [n for n in names if n == "bicubic"]


def scale_choices(name: str) -> tuple[tuple[float, ...], tuple[float, float] | None]:
    """(fixed scales offered, continuous range or None) for the scale picker."""
    card = get_card(name)
    if card.arbitrary_scale:
        lo, hi = card.scale_range
        return (), (max(lo, CONTINUOUS_RANGE[0]), min(hi, CONTINUOUS_RANGE[1]))
    return tuple(s for s in card.scales if s in FIXED_SCALES) or tuple(card.scales), None


def card_html(name: str, catalog_row: dict[str, Any] | None = None, user_weights: str | None = None) -> str:
    """The model card as rich text for a tooltip or the inspector."""
    card = get_card(name)
    e = html.escape
    rows = [f"<b>{e(card.title)}</b> ({e(name)})", f"<i>{e(card.paper)}</i>"]
    if card.scale_range:
        rows.append(f"Scales: continuous {card.scale_range[0]:g}–{card.scale_range[1]:g}")
    else:
        rows.append("Scales: " + ", ".join(f"×{s:g}" for s in card.scales))
    if catalog_row is not None:
        params = catalog_row.get("parameters")
        if params is not None:
            paper = catalog_row.get("paper_params") or ""
            rows.append(f"Parameters: {params:,}" + (f" (paper: {e(paper)})" if paper else ""))
    if not needs_weights(name):
        rows.append("No learnt weights (the baseline).")
    elif user_weights:
        rows.append(f"Weights: {e(user_weights)} (chosen by you)")
    else:
        present = []
        missing = []
        keys = [None] if card.arbitrary_scale else list(card.scales)
        for s in keys:
            path = shipped_weights_path(name, s)
            (present if path.exists() else missing).append(path.name)
        if present:
            rows.append("Trained weights: " + e(", ".join(present)))
        if missing:
            rows.append("<span style='color:#ff9f1c'>Untrained: " + e(", ".join(missing)) + " missing</span>")
    if card.departures:
        rows.append("Our version: " + e(card.departures))
    return "<br>".join(rows)
