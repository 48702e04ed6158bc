"""What the registry offers and which weights exist: the data behind `medsr models` and the picker."""

from __future__ import annotations

from typing import Any

from engine.models import build_model, count_parameters, get_card, model_names
from engine.models.registry import get_entry
from engine.weights import shipped_weights_path


def scales_text(name: str) -> str:
    card = get_card(name)
    if card.scale_range:
        return f"{card.scale_range[0]:g}-{card.scale_range[1]:g}"
    return ",".join(f"x{s:g}" for s in card.scales)


def model_catalog() -> list[dict[str, Any]]:
    rows = []
    for name in model_names():
        card = get_card(name)
        needs = getattr(get_entry(name).cls, "needs_weights", True)
        scale_keys: list[float | None] = [None] if card.arbitrary_scale else list(card.scales)
        weights = {}
        for s in scale_keys:
            path = shipped_weights_path(name, s) if needs else None
            key = "any" if s is None else f"x{s:g}"
            weights[key] = str(path) if path is not None and path.exists() else None
        first_scale = None if card.arbitrary_scale else card.scales[0]
        rows.append(
            {
                "name": name,
                "title": card.title,
                "paper": card.paper,
                "scales": list(card.scales),
                "scale_range": list(card.scale_range) if card.scale_range else None,
                "scales_text": scales_text(name),
                "parameters": count_parameters(build_model(name, first_scale)),
                "paper_params": card.paper_params,
                "ship_args": card.ship_args,
                "departures": card.departures,
                "needs_weights": needs,
                "weights": weights if needs else {},
                "trained": (not needs) or all(v is not None for v in weights.values()),
            }
        )
    return rows
