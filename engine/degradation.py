"""The degradation model: antialiased bicubic downscaling by any real factor, optional k3/sigma1 blur.

One implementation serves training (LR made on the fly), the viewer's Simulate mode and evaluation.
The reference is ``torch.nn.functional.interpolate(mode="bicubic", antialias=True,
align_corners=False)``, which matches MATLAB ``imresize`` for downscaling. Functions are pure: arrays
in, arrays out (MONAI's array-transform style); ``make_pair`` is the thin wrapper for LR/HR pairs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

GAUSSIAN_KERNEL = 3
GAUSSIAN_SIGMA = 1.0


def lr_size(n: int, scale: float) -> int:
    """LR length for an HR length ``n``: the largest h <= n/scale with h*scale whole, if one is near.

    Like ../shared/tools/sr_eval.py, h steps down from floor(n/scale) until h*scale is whole (2.7 needs
    a multiple of 10); if none exists within half of the size (awkward factors such as 1.37) we take
    floor(n/scale) and the HR side becomes round(h*scale).
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    h = int(math.floor(n / scale + 1e-9))
    for cand in range(h, max(0, h // 2) - 1, -1):
        if cand > 0 and abs(cand * scale - round(cand * scale)) < 1e-6:
            return cand
    return h


def hr_size_for(h_lr: int, scale: float) -> int:
    """HR length that an LR length ``h_lr`` upscales to (the rule every network obeys)."""
    return int(round(h_lr * scale))


def crop_for_scale(hr: np.ndarray, scale: float) -> np.ndarray:
    """Crop the last two axes of ``hr`` so that they are an exact upscale of the LR size."""
    h, w = hr.shape[-2:]
    hh, ww = hr_size_for(lr_size(h, scale), scale), hr_size_for(lr_size(w, scale), scale)
    return hr[..., :hh, :ww]


def gaussian_kernel(size: int = GAUSSIAN_KERNEL, sigma: float = GAUSSIAN_SIGMA) -> torch.Tensor:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum()).to(torch.float32)


def gaussian_blur(
    x: torch.Tensor, size: int = GAUSSIAN_KERNEL, sigma: float = GAUSSIAN_SIGMA
) -> torch.Tensor:
    """Blur an (N, 1, H, W) tensor with a normalised Gaussian; reflect padding keeps the mean at edges."""
    k = gaussian_kernel(size, sigma).to(x.device, x.dtype)[None, None]
    pad = size // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode=mode), k)


def downscale_tensor(hr: torch.Tensor, scale: float, blur: bool = False) -> torch.Tensor:
    """Degrade an (N, 1, H, W) tensor whose H, W are exact multiples of the LR size (see crop_for_scale)."""
    h, w = hr.shape[-2:]
    size = (lr_size(h, scale), lr_size(w, scale))
    if min(size) < 1:
        raise ValueError(f"image of {h}x{w} is too small to downscale by {scale:g}")
    if size == (h, w):
        lr = hr.clone()
    else:
        lr = F.interpolate(hr, size=size, mode="bicubic", antialias=True, align_corners=False)
    return gaussian_blur(lr) if blur else lr


def downscale(image: np.ndarray, scale: float, blur: bool = False) -> np.ndarray:
    """Degrade a 2D slice or a stack (..., H, W) of slices; float32 out, same units as in."""
    arr = np.asarray(image, dtype=np.float32)
    lead = arr.shape[:-2]
    t = torch.from_numpy(np.ascontiguousarray(arr.reshape(-1, 1, *arr.shape[-2:])))
    with torch.no_grad():
        lr = downscale_tensor(t, scale, blur)
    return lr.numpy().reshape(*lead, *lr.shape[-2:])


def make_pair(hr: np.ndarray, scale: float, blur: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) from a ground-truth slice: HR cropped to an exact multiple, LR degraded from it."""
    hr_c = crop_for_scale(np.asarray(hr, dtype=np.float32), scale)
    return downscale(hr_c, scale, blur), hr_c
