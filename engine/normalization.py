"""Intensity normalisation, internal to the networks and always inverted on the way out.

A volume's robust range (0.5th..99.5th percentile) maps to 0..1; values outside stay outside (no
clipping), so the inverse gives back CT in HU and MR as stored. Training uses the same function on
its HR volumes, so inference sees intensities of the same scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5


@dataclass(frozen=True)
class Normalizer:
    low: float
    high: float

    @classmethod
    def fit(cls, data: np.ndarray, max_samples: int = 2_000_000) -> Normalizer:
        """Robust range of ``data`` (finite values only; subsampled for large volumes)."""
        flat = np.asarray(data, dtype=np.float32).ravel()
        if flat.size > max_samples:
            flat = flat[:: flat.size // max_samples + 1]
        flat = flat[np.isfinite(flat)]
        if flat.size == 0:
            return cls(0.0, 1.0)
        lo, hi = np.percentile(flat, [LOW_PERCENTILE, HIGH_PERCENTILE])
        if not hi > lo:  # constant or near-constant image: fall back to its full range, then unit
            lo, hi = float(flat.min()), float(flat.max())
            if not hi > lo:
                hi = lo + 1.0
        return cls(float(lo), float(hi))

    @property
    def span(self) -> float:
        return self.high - self.low

    def forward(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.low) / self.span).astype(np.float32)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=np.float32) * self.span + self.low).astype(np.float32)
