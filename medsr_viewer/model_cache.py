"""Loaded networks shared by every worker, with a visible bicubic fallback when one cannot run (no Qt).

An untrained network (no weights file yet) or a refused weights file never stops the viewer: the SR
panel then shows bicubic and says why, in words the user reads on screen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from engine.errors import MedSRError, ModelError, WeightsError
from engine.inference import Upscaler
from engine.models import get_card

BICUBIC = "bicubic"


@dataclass(frozen=True)
class ResolvedModel:
    """The network that will fill the SR panel for a request, and why it differs if it does."""

    upscaler: Upscaler
    requested: str
    notice: str = ""  # empty when ``upscaler`` is the requested network

    @property
    def fallback(self) -> bool:
        return bool(self.notice)


class ModelCache:
    """Upscalers by (name, scale, device, weights); thread-safe, each loaded once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple, Upscaler] = {}
        self._failures: dict[tuple, str] = {}

    def forget_failures(self) -> None:
        """Try refused networks again (weights may have appeared since: training writes them)."""
        with self._lock:
            self._failures.clear()

    def bicubic(self) -> Upscaler:
        """The baseline, on the CPU (it has no parameters: a GPU would only add copies)."""
        return self._get(BICUBIC, None, "cpu", None)

    def resolve(
        self, name: str, scale: float, device: str = "auto", weights: str | None = None
    ) -> ResolvedModel:
        """The upscaler for ``name`` at ``scale``, or bicubic with a notice saying why not."""
        key = (name, float(scale), device, weights)
        with self._lock:
            failure = self._failures.get(key)
        if failure is None:
            try:
                return ResolvedModel(self._get(name, scale, device, weights), name)
            except WeightsError as exc:
                failure = f"weights for {name} refused: {exc.reason}"
            except ModelError as exc:
                failure = _model_failure(name, scale, exc)
            except MedSRError as exc:
                failure = str(exc)
            with self._lock:
                self._failures[key] = failure
        return ResolvedModel(self.bicubic(), name, f"{failure} — the SR panel shows bicubic")

    def _get(self, name: str, scale: float | None, device: str, weights: str | None) -> Upscaler:
        arbitrary = get_card(name).arbitrary_scale
        key = (name, None if arbitrary or scale is None else float(scale), device, weights)
        with self._lock:
            up = self._loaded.get(key)
            if up is None:
                load_scale = scale if scale is not None else get_card(name).scales[0]
                up = Upscaler.load(
                    name, float(load_scale), weights=Path(weights) if weights else None, device=device
                )
                self._loaded[key] = up
            return up


def _model_failure(name: str, scale: float, exc: ModelError) -> str:
    if "no trained weights" in exc.reason:
        return f"no trained weights for {name} x{scale:g}"
    return exc.reason
