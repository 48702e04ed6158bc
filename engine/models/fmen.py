"""FMEN: the fast and memory-efficient network (HFAB attention + re-parameterisable ERB blocks).

Paper: Z. Du, D. Liu, J. Liu, J. Tang, G. Wu, L. Fu, "Fast and Memory-Efficient Network Towards
Efficient Image Super-Resolution", CVPR Workshops (NTIRE) 2022; described by J. Xu, J. Mai, Y. Jian,
Y. Zheng, D. Shan, "Deep Learning Based Medical Image Super Resolution Reconstruction" (paper 002,
undated course report), whose Table 2 counts FMEN at 341,066 parameters: exactly the RGB x4
inference form of the layout below with 50 trunk channels, which ``FMEN(4, channels=3).fuse()`` gives.

Layout: head 3x3 conv; warm-up = 3x3 conv + HFAB (12 channels, 2 ERBs); 4 x [ERB, HFAB (16 channels,
1 ERB)]; 3x3 conv; long skip from the head; 3x3 conv to s^2 channels and a pixel shuffle.
- RRRB (re-parameterisable residual block): x + 1x1 reduce(3x3(1x1 expand(x)) + expand(x)), expansion
  2, the 3x3 input padded with the expand bias so that, in inference, it is exactly one 3x3 conv.
- ERB = RRRB, LeakyReLU(0.1), RRRB: two 3x3 convs once fused.
- HFAB: x * sigmoid(excite(ERBs(squeeze(x)))), squeeze/excite 3x3 convs between the trunk width and the
  attention width, LeakyReLU between; batch normalisation during training, folded into the convs.
``fuse()`` turns every RRRB and conv+BN pair into a single 3x3 conv in place (equal outputs in eval
mode); ``FMEN(..., fused=True)`` builds that inference form directly, to load fused weights.

Our reading: BN follows the squeeze and the excite convs (folded into them); Du et al. also normalise
the HFAB input, which folds the same way. Departures: single channel; the output is a residual over
bicubic upsampling (departure: makes short CPU training converge) with a zero-initialised tail conv,
so the untrained network is bicubic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.blocks import FixedScaleNet, SubPixelConv, conv2d, zero_init_
from engine.models.registry import ModelCard, register_model


def _conv_from(weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    conv = conv2d(weight.shape[1], weight.shape[0], weight.shape[-1]).to(weight)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv


class RRRB(nn.Module):
    """Residual-in-residual re-parameterisable block; one 3x3 conv after ``fuse()``."""

    def __init__(self, channels: int, ratio: int = 2, fused: bool = False):
        super().__init__()
        if fused:
            self.conv = conv2d(channels, channels)
            return
        self.expand = nn.Conv2d(channels, ratio * channels, 1)
        self.mix = nn.Conv2d(ratio * channels, ratio * channels, 3)  # padded by hand with the expand bias
        self.reduce = nn.Conv2d(ratio * channels, channels, 1)

    @property
    def is_fused(self) -> bool:
        return "conv" in self._modules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_fused:
            return self.conv(x)
        expanded = self.expand(x)
        b = self.expand.bias.view(1, -1, 1, 1)
        # Padding with the bias is what expand() gives on zero-padded input: this keeps fusion exact.
        padded = F.pad(expanded - b, (1, 1, 1, 1)) + b
        return self.reduce(self.mix(padded) + expanded) + x

    @torch.no_grad()
    def fuse(self) -> None:
        if self.is_fused:
            return
        w1, b1 = self.expand.weight[:, :, 0, 0], self.expand.bias
        w2, b2 = self.mix.weight, self.mix.bias
        w3, b3 = self.reduce.weight[:, :, 0, 0], self.reduce.bias
        kernel = torch.einsum("ojuv,ji->oiuv", w2, w1)
        kernel[:, :, 1, 1] += w1  # the expanded identity
        bias = b2 + w2.sum(dim=(2, 3)) @ b1 + b1
        kernel = torch.einsum("po,oiuv->piuv", w3, kernel)
        bias = w3 @ bias + b3
        kernel[:, :, 1, 1] += torch.eye(kernel.shape[0], dtype=kernel.dtype, device=kernel.device)
        del self.expand, self.mix, self.reduce
        self.conv = _conv_from(kernel, bias)


class ConvBN(nn.Module):
    """3x3 conv then batch norm during training; one 3x3 conv (BN folded in) after ``fuse()``."""

    def __init__(self, in_ch: int, out_ch: int, fused: bool = False):
        super().__init__()
        self.conv = conv2d(in_ch, out_ch)
        self.bn = None if fused else nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.bn is None else self.bn(x)

    @torch.no_grad()
    def fuse(self) -> None:
        if self.bn is None:
            return
        bn = self.bn
        gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = self.conv.weight * gain.view(-1, 1, 1, 1)
        bias = (self.conv.bias - bn.running_mean) * gain + bn.bias
        self.conv, self.bn = _conv_from(weight, bias), None


class ERB(nn.Sequential):
    """Enhanced residual block: RRRB, LeakyReLU, RRRB."""

    def __init__(self, channels: int, ratio: int, slope: float, fused: bool):
        super().__init__(RRRB(channels, ratio, fused), nn.LeakyReLU(slope), RRRB(channels, ratio, fused))


class HFAB(nn.Module):
    """High-frequency attention block: x * sigmoid(excite(ERBs(squeeze(x))))."""

    def __init__(self, width: int, mid: int, erbs: int, ratio: int, slope: float, fused: bool):
        super().__init__()
        layers: list[nn.Module] = [ConvBN(width, mid, fused), nn.LeakyReLU(slope)]
        for _ in range(erbs):
            layers += [ERB(mid, ratio, slope, fused), nn.LeakyReLU(slope)]
        layers.append(ConvBN(mid, width, fused))
        self.attention = nn.Sequential(*layers)
        self.erbs = erbs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.attention(x))

    @property
    def radius(self) -> int:
        return 2 + 2 * self.erbs


@register_model(
    ModelCard(
        name="fmen",
        title="FMEN (fast and memory-efficient network)",
        paper="Du, Liu, Liu, Tang, Wu, Fu, 'Fast and Memory-Efficient Network Towards Efficient Image "
        "Super-Resolution', CVPRW 2022",
        ship_args={"width": 32, "mid": 16},
        paper_params="341,066 (Xu et al., Table 2; RGB x4 inference form, 50 channels)",
        departures="Single channel; residual over bicubic (departure: makes short CPU training converge) "
        "with a zero-initialised tail; shipped with 32 trunk channels (paper 50); BN placement after "
        "squeeze/excite is our reading.",
    )
)
class FMEN(FixedScaleNet):
    """Head, warm-up (conv + HFAB), [ERB, HFAB] pairs, conv + long skip, sub-pixel tail."""

    def __init__(self, scale: int, width: int = 50, mid: int = 16, pairs: int = 4, warmup_erbs: int = 2,
                 pair_erbs: int = 1, ratio: int = 2, slope: float = 0.1, channels: int = 1,
                 fused: bool = False):
        super().__init__(scale)
        self.fused = fused
        self.head = conv2d(channels, width)
        self.warmup = nn.Sequential(
            conv2d(width, width), HFAB(width, mid - 4, warmup_erbs, ratio, slope, fused)
        )
        self.body = nn.Sequential(*[
            layer
            for _ in range(pairs)
            for layer in (ERB(width, ratio, slope, fused), HFAB(width, mid, pair_erbs, ratio, slope, fused))
        ])
        self.lr_conv = conv2d(width, width)
        self.tail = SubPixelConv(width, channels, self.scale)
        zero_init_(self.tail.conv)

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        head = self.head(lr)
        return self.tail(self.lr_conv(self.body(self.warmup(head))) + head)

    def fuse(self) -> FMEN:
        """Re-parameterise in place into the inference form (every RRRB / conv+BN -> one 3x3 conv)."""
        for module in list(self.modules()):
            if isinstance(module, RRRB | ConvBN):
                module.fuse()
        self.fused = True
        return self

    @property
    def lr_radius(self) -> int:
        hfabs = [m.radius for m in self.modules() if isinstance(m, HFAB)]
        erbs = sum(isinstance(m, ERB) for m in self.body)
        return 1 + 1 + sum(hfabs) + 2 * erbs + 1 + 1
