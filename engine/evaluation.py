"""Simulate LR from a real volume and score networks against bicubic: the papers' Table-1 numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.degradation import crop_for_scale, downscale
from engine.inference import Upscaler, plane_axis
from engine.metrics import SliceScores, mean_scores, score_stack
from engine.models import count_parameters
from engine.normalization import Normalizer
from engine.volume import Volume


@dataclass
class ModelResult:
    model: str
    scale: float
    scores: SliceScores
    per_slice: list[SliceScores]
    parameters: int
    ms_per_slice: float
    weights_sha256: str = ""


@dataclass
class Evaluation:
    source: str
    scale: float
    slice_indices: list[int]
    data_range: float
    blur: bool
    results: list[ModelResult] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "scale": self.scale,
            "slices": self.slice_indices,
            "data_range": self.data_range,
            "data_range_rule": "HR max - min over the evaluated slices",
            "blur": self.blur,
            "results": [
                {"model": r.model, "scale": r.scale, **r.scores.as_dict(), "parameters": r.parameters,
                 "ms_per_slice": r.ms_per_slice, "weights_sha256": r.weights_sha256,
                 "per_slice": [s.as_dict() for s in r.per_slice]}
                for r in self.results
            ],
        }


def central_slices(n: int, k: int) -> list[int]:
    """``k`` slice indices evenly spread over the central 60% of ``n`` (sr_eval's rule)."""
    if n <= 2:
        return list(range(n))
    idx = np.linspace(int(n * 0.2), max(int(n * 0.2), int(n * 0.8) - 1), k).round().astype(int)
    return sorted(set(int(i) for i in idx))


def evaluate_volume(
    volume: Volume,
    upscalers: list[Upscaler],
    scale: float,
    *,
    slices: int = 8,
    blur: bool = False,
    plane: str | int | None = None,
) -> Evaluation:
    axis = plane_axis(volume, plane)
    stack = np.moveaxis(volume.data, axis, 0)
    idx = central_slices(stack.shape[0], slices)
    hr = crop_for_scale(stack[idx], scale)
    lr = downscale(hr, scale, blur=blur)
    data_range = float(hr.max() - hr.min()) or 1.0
    border = math.ceil(scale)
    norm = Normalizer.fit(lr)
    ev = Evaluation(str(volume.source), float(scale), idx, data_range, blur)
    for up in upscalers:
        up.upscale_stack(lr[:1], scale, norm)  # warm-up: first-call allocations are not per-slice cost
        times, srs = [], []
        for sl in lr:
            sr, ms = up.timed_slice(sl, scale, norm)
            srs.append(sr)
            times.append(ms)
        per = score_stack(np.stack(srs), hr, data_range, border)
        ev.results.append(ModelResult(up.name, float(scale), mean_scores(per), per, count_parameters(up.model),
                                      float(np.median(times)), up.weights_sha256))
    return ev
