"""Pieces shared by the network zoo, written once: convolutions (optionally weight-normalised),
residual blocks, sub-pixel upsamplers, the anchored-regression core of CARN, the fixed-scale base
class that adds the bicubic global skip, and box-restricted bicubic interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from engine.models.registry import bicubic_upsample, output_size

FIXED_SCALES = (2, 3, 4)
ActFactory = Callable[[], nn.Module]


def conv2d(
    in_ch: int, out_ch: int, kernel: int = 3, *, bias: bool = True, weight_norm: bool = False
) -> nn.Conv2d:
    """'Same'-padded convolution; ``weight_norm`` reparameterises it as g * v / |v| (Salimans & Kingma)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias)
    return _weight_norm(conv) if weight_norm else conv


def zero_init_(conv: nn.Conv2d | nn.Linear) -> None:
    """Make a layer output exactly zero, so a residual branch ending in it starts as the identity.

    A weight-normalised conv gets g = 0 (zeroing v would make v / |v| undefined).
    """
    with torch.no_grad():
        if parametrize.is_parametrized(conv, "weight"):
            conv.parametrizations.weight.original0.zero_()
        else:
            conv.weight.zero_()
        if conv.bias is not None:
            conv.bias.zero_()


def check_fixed_scale(scale: float) -> int:
    """A fixed-scale network's constructor scale: 2, 3 or 4 (a pixel shuffle needs an integer)."""
    if not float(scale).is_integer() or int(scale) not in FIXED_SCALES:
        raise ValueError(f"fixed-scale networks serve x2, x3 or x4, not x{scale:g}")
    return int(scale)


def shuffle_stages(scale: int) -> list[int]:
    """Pixel-shuffle factors of an EDSR/SRResNet upsampler: x2 -> [2], x3 -> [3], x4 -> [2, 2]."""
    return {2: [2], 3: [3], 4: [2, 2]}[check_fixed_scale(scale)]


class ResidualBlock(nn.Module):
    """x + res_scale * conv(act(conv(x))): the block of EDSR, SRResNet (with BN) and WDSR-A (wide, wn)."""

    def __init__(
        self,
        channels: int,
        hidden: int | None = None,
        *,
        act: ActFactory = nn.ReLU,
        batch_norm: bool = False,
        weight_norm: bool = False,
        res_scale: float = 1.0,
    ):
        super().__init__()
        hidden = hidden or channels
        layers: list[nn.Module] = [conv2d(channels, hidden, weight_norm=weight_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(hidden))
        layers += [act(), conv2d(hidden, channels, weight_norm=weight_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class PixelShuffleUpsampler(nn.Sequential):
    """EDSR/SRResNet upsampler: per stage a 3x3 conv to r*r*c channels, a pixel shuffle, an optional act."""

    def __init__(self, channels: int, scale: int, act: ActFactory | None = None):
        layers: list[nn.Module] = []
        for r in shuffle_stages(scale):
            layers += [conv2d(channels, channels * r * r), nn.PixelShuffle(r)]
            if act is not None:
                layers.append(act())
        super().__init__(*layers)

    @property
    def n_convs(self) -> int:
        return sum(isinstance(m, nn.Conv2d) for m in self)


class SubPixelConv(nn.Sequential):
    """One conv to out_ch * s^2 channels and a pixel shuffle by s: the reconstruction of ESPCN-style heads."""

    def __init__(self, in_ch: int, out_ch: int, scale: int, kernel: int = 3, *, weight_norm: bool = False):
        scale = check_fixed_scale(scale)
        super().__init__(conv2d(in_ch, out_ch * scale * scale, kernel, weight_norm=weight_norm),
                         nn.PixelShuffle(scale))

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]


class AnchoredRegression(nn.Module):
    """CARN's regression core (Li et al. 2018): m regressors of d' channels mixed by softmax anchor weights.

    The regressor branch maps c channels to m * d', the anchor branch (3x3) to m similarity logits;
    the output is sum_k softmax(anchors)_k * regressor_k, d' channels.
    """

    def __init__(self, in_ch: int, inner: int, anchors: int, regressor_kernel: int, *, weight_norm: bool):
        super().__init__()
        self.inner, self.anchors = inner, anchors
        self.regressors = conv2d(in_ch, anchors * inner, regressor_kernel, weight_norm=weight_norm)
        self.similarity = conv2d(in_ch, anchors, 3, weight_norm=weight_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        regressed = self.regressors(x).view(n, self.anchors, self.inner, h, w)
        weights = torch.softmax(self.similarity(x), dim=1).unsqueeze(2)
        return (regressed * weights).sum(dim=1)


class FixedScaleNet(nn.Module):
    """Base of fixed-scale networks: checks the call-time scale and adds the bicubic global skip.

    Post-upsampling subclasses implement ``residual(lr)`` at output size and report ``lr_radius``;
    pre-upsampling ones (``pre_upsampling = True``) implement ``residual(bicubic)`` and ``hr_radius``.
    """

    pre_upsampling = False

    def __init__(self, scale: int):
        super().__init__()
        self.scale = check_fixed_scale(scale)

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        if scale is not None and abs(float(scale) - self.scale) > 1e-6:
            raise ValueError(f"{type(self).__name__} was built for x{self.scale}, asked for x{scale:g}")
        up = bicubic_upsample(x, output_size(x.shape[-2], x.shape[-1], self.scale))
        return up + self.residual(up if self.pre_upsampling else x)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def receptive_radius(self) -> int:
        """Conservative input radius (LR pixels) of one output pixel: the halo tiled inference needs."""
        if self.pre_upsampling:
            return math.ceil(self.hr_radius / self.scale) + 2
        # +1: a sub-pixel output sits up to half an LR pixel from the LR pixel it is computed at.
        return max(self.lr_radius + 1, 2)

    @property
    def hr_radius(self) -> int:
        raise NotImplementedError

    @property
    def lr_radius(self) -> int:
        raise NotImplementedError


def source_coordinates(in_size: int, out_size: int, start: int, stop: int) -> tuple[torch.Tensor, int]:
    """Centred source positions of output pixels start..stop-1, exactly, as integer numerators over 2*out.

    Output pixel i maps to input position (i + 0.5) * in / out - 0.5 = ((2i + 1) * in - out) / (2 * out),
    the rule of torch's bicubic with align_corners=False and an explicit output size.
    """
    i = torch.arange(start, stop, dtype=torch.int64)
    return (2 * i + 1) * in_size - out_size, 2 * out_size


def _cubic_weights(t: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    """Keys' cubic convolution weights of the 4 taps at offsets -1, 0, 1, 2 for fractional position t."""
    d = torch.stack([t + 1, t, 1 - t, 2 - t], dim=-1).abs()
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d <= 1, near, far)


def bicubic_axis(in_size: int, out_size: int, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps (n, 4) int64, clamped to the input, and their float64 weights (n, 4) for output pixels
    start..stop-1 of one axis of ``bicubic_upsample``."""
    num, den = source_coordinates(in_size, out_size, start, stop)
    base = torch.div(num, den, rounding_mode="floor")
    t = (num - base * den).double() / den
    taps = (base.unsqueeze(1) + torch.arange(-1, 3)).clamp(0, in_size - 1)
    return taps, _cubic_weights(t)


def bicubic_upsample_box(
    x: torch.Tensor, size: tuple[int, int], box: tuple[int, int, int, int]
) -> torch.Tensor:
    """The region box = (y0, x0, y1, x1) of ``bicubic_upsample(x, size)``, computed for that region only."""
    y0, x0, y1, x1 = box
    rows, wy = bicubic_axis(x.shape[-2], size[0], y0, y1)
    cols, wx = bicubic_axis(x.shape[-1], size[1], x0, x1)
    wy, wx = wy.to(x), wx.to(x)
    along_y = torch.einsum("...rkw,rk->...rw", x[..., rows.to(x.device), :], wy)
    return torch.einsum("...rck,ck->...rc", along_y[..., cols.to(x.device)], wx)
