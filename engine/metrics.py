"""Image-quality metrics with an explicit data range, on the whole slice and on a foreground mask.

Background (air) is easy to reconstruct and inflates whole-slice scores, so every score is also
given on a foreground mask: Otsu threshold on the HR slice, dilated 3 pixels. SSIM is scikit-image's
(Gaussian window sigma 1.5, no sample covariance), the same protocol as ../shared/tools/sr_eval.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.metrics import structural_similarity


@dataclass(frozen=True)
class SliceScores:
    psnr: float
    ssim: float
    psnr_fg: float
    ssim_fg: float

    def as_dict(self) -> dict[str, float]:
        return {"psnr": self.psnr, "ssim": self.ssim, "psnr_fg": self.psnr_fg, "ssim_fg": self.ssim_fg}


def foreground_mask(hr: np.ndarray, dilate: int = 3) -> np.ndarray:
    """Body mask of an HR slice: Otsu threshold, dilated; all-True for a constant slice."""
    hr = np.asarray(hr, dtype=np.float64)
    if not hr.max() > hr.min():
        return np.ones(hr.shape, dtype=bool)
    mask = hr > threshold_otsu(hr)
    return ndimage.binary_dilation(mask, iterations=dilate) if dilate else mask


def psnr(sr: np.ndarray, hr: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB for ``data_range`` (peak-to-peak of the reference)."""
    err = (np.asarray(sr, np.float64) - np.asarray(hr, np.float64)) ** 2
    mse = err[mask].mean() if mask is not None else err.mean()
    return 10.0 * math.log10(data_range**2 / max(float(mse), 1e-12))


def ssim(sr: np.ndarray, hr: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
    """Mean SSIM (over ``mask`` if given) with a Gaussian window, sigma 1.5."""
    hr64, sr64 = np.asarray(hr, np.float64), np.asarray(sr, np.float64)
    if min(hr64.shape) < 7:
        return float("nan")
    value, smap = structural_similarity(
        hr64,
        sr64,
        data_range=data_range,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    return float(smap[mask].mean()) if mask is not None else float(value)


def crop_border(image: np.ndarray, border: int) -> np.ndarray:
    return image[..., border:-border, border:-border] if border > 0 else image


def score_slice(sr: np.ndarray, hr: np.ndarray, data_range: float, border: int = 0) -> SliceScores:
    """PSNR/SSIM whole and foreground, after cropping ``border`` pixels (ceil(scale) by convention)."""
    s, h = crop_border(sr, border), crop_border(hr, border)
    mask = foreground_mask(h)
    return SliceScores(
        psnr(s, h, data_range),
        ssim(s, h, data_range),
        psnr(s, h, data_range, mask),
        ssim(s, h, data_range, mask),
    )


def score_stack(sr: np.ndarray, hr: np.ndarray, data_range: float, border: int = 0) -> list[SliceScores]:
    """Per-slice scores of (N, H, W) stacks: the curves plotted against bicubic."""
    return [score_slice(a, b, data_range, border) for a, b in zip(sr, hr, strict=True)]


def mean_scores(scores: list[SliceScores]) -> SliceScores:
    arr = np.array([[s.psnr, s.ssim, s.psnr_fg, s.ssim_fg] for s in scores], dtype=np.float64)
    m = np.nanmean(arr, axis=0)
    return SliceScores(*(float(v) for v in m))


def absolute_error(sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """|SR - HR| in the image's own units."""
    return np.abs(np.asarray(sr, np.float32) - np.asarray(hr, np.float32))


def error_histograms(
    maps: dict[str, np.ndarray], bins: int = 64, mask: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Histograms of several error maps over one shared set of bin edges (so they compare)."""
    values = {k: (m[mask] if mask is not None else m.ravel()) for k, m in maps.items()}
    top = max((float(v.max()) for v in values.values() if v.size), default=1.0) or 1.0
    edges = np.linspace(0.0, top, bins + 1)
    return edges, {k: np.histogram(v, bins=edges)[0] for k, v in values.items()}
