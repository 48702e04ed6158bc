"""One registry of every SR network, filled by a decorator on each architecture class.

Architectures are imported explicitly in ``engine/models/__init__.py`` (PyInstaller must see every
import; file names are never scanned). Each entry carries a ``ModelCard`` (timm's ``PretrainedCfg``
idea): paper, scales served, the constructor arguments of the variant we ship, and how our version
departs from the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from engine.errors import ModelError


@dataclass(frozen=True)
class ModelCard:
    """What a network is and what it serves. Training facts live in the weights' own card."""

    name: str
    title: str
    paper: str
    scales: tuple[float, ...] = (2.0, 3.0, 4.0)  # fixed scales we ship weights for
    scale_range: tuple[float, float] | None = None  # continuous range (arbitrary-scale networks)
    ship_args: dict[str, Any] = field(default_factory=dict)  # constructor args of the shipped variant
    paper_params: str = ""  # the paper's published parameter count, where one exists
    departures: str = ""  # where our version departs from the paper, and why

    @property
    def arbitrary_scale(self) -> bool:
        return self.scale_range is not None

    def serves(self, scale: float) -> bool:
        if self.scale_range is not None:
            lo, hi = self.scale_range
            return lo - 1e-6 <= scale <= hi + 1e-6
        return any(abs(scale - s) < 1e-6 for s in self.scales)


@dataclass(frozen=True)
class RegisteredModel:
    card: ModelCard
    cls: Callable[..., nn.Module]


_REGISTRY: dict[str, RegisteredModel] = {}


def register_model(card: ModelCard) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: add an architecture under ``card.name``."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} registered twice")
        _REGISTRY[card.name] = RegisteredModel(card=card, cls=cls)
        cls.card = card  # type: ignore[attr-defined]
        return cls

    return wrap


def model_names() -> list[str]:
    return list(_REGISTRY)


def get_entry(name: str) -> RegisteredModel:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(_REGISTRY)}") from None


def get_card(name: str) -> ModelCard:
    return get_entry(name).card


def build_model(name: str, scale: float | None = None, **overrides: Any) -> nn.Module:
    """Build ``name`` with the shipped variant's arguments (``overrides`` win).

    Fixed-scale networks take ``scale`` as a constructor argument (it fixes the upsampler);
    arbitrary-scale networks take the scale at call time instead and ignore it here.
    """
    entry = get_entry(name)
    args = dict(entry.card.ship_args)
    args.update(overrides)
    if not entry.card.arbitrary_scale:
        if scale is None:
            raise ModelError(f"{name} is a fixed-scale network: give a scale ({_fmt(entry.card)})")
        if not entry.card.serves(scale):
            raise ModelError(f"{name} does not serve x{scale:g} ({_fmt(entry.card)})")
        args["scale"] = int(round(scale)) if float(scale).is_integer() else scale
    return entry.cls(**args)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def output_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """SR output size for an LR input of h x w: round(h*s) x round(w*s), the rule every network obeys."""
    return int(round(h * scale)), int(round(w * scale))


def bicubic_upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Plain bicubic interpolation (align_corners=False), the baseline and the global skip path."""
    return torch.nn.functional.interpolate(x, size=size, mode="bicubic", align_corners=False)


def _fmt(card: ModelCard) -> str:
    if card.scale_range:
        return f"serves {card.scale_range[0]:g}-{card.scale_range[1]:g}"
    return "serves " + ", ".join(f"x{s:g}" for s in card.scales)
