"""Inference forms: a prepared network rewritten for speed, with the same outputs (within 1e-4).

``inference_form(model)`` returns a new module; the model, its parameter names and its state dict are
left alone (weights are trained against them). The rewrites, each exact up to float rounding:

- batch normalisation after a convolution folded into the convolution (SRResNet trunks);
- a convolution and the ReLU / LeakyReLU after it as one oneDNN call (``FusedConvActivation``; VDSR
  1.07x), other ReLU / LeakyReLU in place where their input is a fresh convolution output;
  single-slope PReLU as LeakyReLU; residual blocks adding their skip in place (no multiply by a
  residual scale of 1); SRCNN-CT's overlapping pooling as two maxima of shifted views;
- CARN's anchored regression mixed with one multiply-add per anchor into the output, instead of a
  (m x d' x h x w) product tensor and a sum over it (1.2x at 256^2; 2-4x when glibc returns freed
  memory to the kernel, see ``engine.fast.allocator``), New CARN's 1x1 regressors as one GEMM;
- the bicubic skip of fixed-scale networks as banded matrix products (``engine.fast.resample``), and
  pixel shuffles as one permuting copy in the tensor's own layout;
- Meta-SRGAN's upscale through ``engine.fast.meta_upscale`` (per-slice maps, no per-pixel kernels);
- the native kernels of ``engine.fast.native`` where it is built: New CARN's head and body as one
  call (no anchored regression module is left then, so the rule below picks channels_last, which
  the AVX2 kernel's NHWC output already is), CARN's regression body, and k x k
  convolutions to one channel (k >= 5);
- channels_last memory layout by the rule below.

Layout rule (measured with bench/models.py on the development CPU, both layouts of every network):
oneDNN's channels_last kernels win for every network here (1.1-2x: EDSR, SRResNet/SRGAN, WDSR, VDSR,
SRCNN, SRCNN-CT, FMEN with 32 channels) except the CARN family: its eager form runs 0.55-0.85x as fast
in channels_last, and its fast form is a tie within the noise of a loaded machine (8-channel
convolutions, 1x1 regressors, softmax and mixing over channel slices). So channels_last unless the
network has anchored regressions.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from engine.fast import native as native_kernels
from engine.fast.meta_upscale import FastMetaUpscale, MetaMaps
from engine.fast.native import NativeCARNBody, NativeNewCARNTrunk, NativeSingleOutputConv
from engine.fast.resample import bicubic_resize
from engine.models.blocks import AnchoredRegression, FixedScaleNet, ResidualBlock
from engine.models.carn import CARN
from engine.models.meta_srgan import MetaSRGAN
from engine.models.new_carn import NewCARN
from engine.models.registry import output_size
from engine.models.srcnn_ct import OverlappingMaxPool


def inference_form(model: nn.Module, *, channels_last: bool | None = None,
                   native: bool | None = None) -> nn.Module:
    """The fast form of a model already passed through ``prepare_for_inference`` (eval, fused).

    ``native``: use the C kernels of ``engine.fast.native`` where one fits (None: when built)."""
    if not getattr(model, "needs_weights", True):  # parameter-free (bicubic): nothing to gain
        return model
    fast = copy.deepcopy(model).eval()
    if native is None:
        native = native_kernels.available()
    if native:
        use_native_kernels(fast)
    fold_batch_norms(fast)
    _replace_modules(fast)
    fuse_conv_activations(fast)
    use_inplace_activations(fast)
    if channels_last is None:
        channels_last = prefers_channels_last(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    fast.requires_grad_(False)
    if isinstance(fast, MetaSRGAN):
        return FastMetaSRGAN(fast)
    if isinstance(fast, FixedScaleNet):
        return FastFixedScale(fast)
    return fast


def use_native_kernels(model: nn.Module) -> int:
    """Swap in the native kernels that fit (New CARN's 13-8-8 head and body; CARN's 8-8 regression body;
    k x k convolutions to one channel, k >= 5); returns how many."""
    if not native_kernels.available():
        raise RuntimeError("the native kernels are not built or not usable here (make setup)")
    if isinstance(model, NewCARN) and NativeNewCARNTrunk.supports(model.head, model.body):
        model.body = NativeNewCARNTrunk(model.head, model.body)
        model.head = nn.Identity()
        return 1
    swapped = 0
    if isinstance(model, CARN) and NativeCARNBody.supports(model.body):
        model.body = NativeCARNBody(model.body)
        swapped += 1
    for module in list(model.modules()):
        if isinstance(module, (NativeNewCARNTrunk, NativeCARNBody)):
            continue
        for name, child in list(module.named_children()):
            if NativeSingleOutputConv.supports(child):
                setattr(module, name, NativeSingleOutputConv(child))
                swapped += 1
    return swapped


@torch.no_grad()
def fold_batch_norms(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that follows a Conv2d in a Sequential into it; returns how many."""
    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if bn.training or bn.running_var is None:
                continue
            gain = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(
                bn.running_var + bn.eps)
            shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                              conv.padding, conv.dilation, conv.groups, True, conv.padding_mode)
            fused = fused.to(conv.weight)
            fused.weight.copy_(conv.weight * gain.view(-1, 1, 1, 1))
            fused.bias.copy_((bias - bn.running_mean) * gain + shift)
            module[i], module[i + 1] = fused, nn.Identity()
            folded += 1
    return folded


_FRESH = (nn.Conv2d, nn.Linear, nn.PReLU)  # modules whose output is a new tensor
# Modules whose output is their input, a view of it, or new: fresh if their input was.
_PASS = (nn.Identity, nn.PixelShuffle, nn.ReLU, nn.LeakyReLU)


def _pointwise_conv_op():
    """oneDNN's convolution with a fused activation (the op torch's CPU compiler emits), if this torch
    build has it."""
    try:
        return torch.ops.mkldnn._convolution_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


class FusedConvActivation(nn.Module):
    """A convolution and the ReLU / LeakyReLU after it as one oneDNN call: the activation is applied
    while the output is still in cache instead of in another pass over it (5-10 % of a conv layer at
    512^2 x 32 channels)."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module):
        super().__init__()
        self.conv, self.act = conv, act
        if isinstance(act, nn.LeakyReLU):
            self.attr, self.scalars = "leaky_relu", [float(act.negative_slope)]
        else:
            self.attr, self.scalars = "relu", []

    @staticmethod
    def fits(conv: nn.Module, act: nn.Module) -> bool:
        return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
                and type(act) in (nn.ReLU, nn.LeakyReLU) and _pointwise_conv_op() is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            return self.act(self.conv(x))
        c = self.conv
        return _pointwise_conv_op()(x, c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation),
                                    c.groups, self.attr, self.scalars, "")


def fuse_conv_activations(model: nn.Module) -> int:
    """In every Sequential, a convolution followed (through Identity) by a ReLU or LeakyReLU becomes a
    ``FusedConvActivation`` and the activation an Identity; returns how many."""
    fused = 0
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            j = i + 1
            while j < len(module) - 1 and isinstance(module[j], nn.Identity):
                j += 1
            if FusedConvActivation.fits(module[i], module[j]):
                module[i] = FusedConvActivation(module[i], module[j])
                module[j] = nn.Identity()
                fused += 1
    return fused


def use_inplace_activations(model: nn.Module) -> None:
    """ReLU / LeakyReLU act in place when, inside a Sequential, their input comes from a fresh output
    (a convolution, possibly through Identity / pixel shuffles) that nothing else holds."""
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for i in range(1, len(module)):
                if not isinstance(module[i], nn.ReLU | nn.LeakyReLU):
                    continue
                j = i - 1
                while j > 0 and isinstance(module[j], _PASS + (FastPixelShuffle,)):
                    j -= 1
                if isinstance(module[j], _FRESH):
                    module[i].inplace = True


def prefers_channels_last(model: nn.Module) -> bool:
    """The layout rule of this module's docstring: channels_last unless the network is of the CARN
    family (anchored regression)."""
    return not any(isinstance(m, AnchoredRegression | FastAnchoredRegression) for m in model.modules())


class FastAnchoredRegression(nn.Module):
    """``AnchoredRegression`` with the softmax-weighted sum as one multiply-add per anchor into the output."""

    def __init__(self, regression: AnchoredRegression):
        super().__init__()
        self.inner, self.anchors = regression.inner, regression.anchors
        self.regressors, self.similarity = regression.regressors, regression.similarity
        if _pointwise(self.regressors):  # New CARN's 1x1 regressors (the family runs NCHW: see the rule)
            self.regressors = PointwiseConv(self.regressors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.inner
        regressed = self.regressors(x)
        weights = torch.softmax(self.similarity(x), dim=1)
        out = regressed[:, :d] * weights[:, :1]
        for k in range(1, self.anchors):
            out.addcmul_(regressed[:, k * d: (k + 1) * d], weights[:, k: k + 1])
        return out


class PointwiseConv(nn.Module):
    """A 1x1 convolution of an NCHW tensor as one matrix product (N, out, in) @ (N, in, h*w): torch's
    1x1 path (im2col-free slow_conv2d) adds a copy per call."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach()[:, :, 0, 0].clone(), requires_grad=False)
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.bias = nn.Parameter(bias[:, None], requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if n == 1:
            out = torch.addmm(self.bias, self.weight, x.reshape(c, h * w))
        else:
            out = torch.matmul(self.weight, x.reshape(n, c, h * w)).add_(self.bias)
        return out.view(n, -1, h, w)


def _pointwise(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding == (0, 0) and conv.groups == 1 and conv.dilation == (1, 1))


class FastOverlappingMaxPool(nn.Module):
    """SRCNN-CT's 2x2 stride-1 max pooling (replicated edge) as two element-wise maxima of shifted
    views, rows then columns: torch's pad + max_pool2d_with_indices made three passes and the indices
    (15 % of an x2 upscale). Exact: a maximum does not round."""

    def __init__(self, pool: OverlappingMaxPool):
        super().__init__()
        self.after = pool.pad == (0, 1, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._along(x, -2)
        return self._along(rows, -1)

    def _along(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        out = torch.empty_like(x)
        n = x.shape[dim]
        head, tail = x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1)
        if self.after:  # out[i] = max(x[i], x[i + 1]), the last one kept
            torch.maximum(head, tail, out=out.narrow(dim, 0, n - 1))
            out.narrow(dim, n - 1, 1).copy_(x.narrow(dim, n - 1, 1))
        else:  # out[i] = max(x[i - 1], x[i]), the first one kept
            torch.maximum(head, tail, out=out.narrow(dim, 1, n - 1))
            out.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
        return out


class FastPixelShuffle(nn.Module):
    """``nn.PixelShuffle`` as one permuting copy in the input's own layout (NCHW or channels_last):
    2.5x faster than torch's kernel for the 1-channel outputs of our heads (80^2x16 -> 320^2: 48 vs
    120 us), 1.3x for EDSR's 192 -> 48 channel x2 stage."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = int(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        r = self.factor
        oc = c // (r * r)
        if x.is_contiguous():
            return x.view(n, oc, r, r, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, oc, h * r, w * r)
        if x.is_contiguous(memory_format=torch.channels_last):
            nhwc = x.permute(0, 2, 3, 1).view(n, h, w, oc, r, r).permute(0, 1, 4, 2, 5, 3)
            return nhwc.reshape(n, h * r, w * r, oc).permute(0, 3, 1, 2)
        return nn.functional.pixel_shuffle(x, r)


class FastResidualBlock(nn.Module):
    """``ResidualBlock`` adding the skip in place into the body's fresh output (no scaling when 1)."""

    def __init__(self, block: ResidualBlock):
        super().__init__()
        self.body, self.res_scale = block.body, float(block.res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.res_scale != 1.0:
            out = out * self.res_scale
        return out.add_(x)


def _replace_modules(model: nn.Module) -> None:
    """Swap in the fast equivalents: anchored regressions, residual blocks, SRCNN-CT's pooling,
    single-slope PReLUs (PReLU with one parameter a is LeakyReLU(a): a vectorised in-place kernel)."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, AnchoredRegression):
                setattr(module, name, FastAnchoredRegression(child))
            elif isinstance(child, ResidualBlock):
                setattr(module, name, FastResidualBlock(child))
            elif isinstance(child, OverlappingMaxPool):
                setattr(module, name, FastOverlappingMaxPool(child))
            elif isinstance(child, nn.PixelShuffle):
                setattr(module, name, FastPixelShuffle(child.upscale_factor))
            elif isinstance(child, nn.PReLU) and child.num_parameters == 1:
                setattr(module, name, nn.LeakyReLU(float(child.weight.detach().reshape(()))))


class FastFixedScale(nn.Module):
    """A fixed-scale network's forward with the bicubic skip as banded matrix products."""

    def __init__(self, net: FixedScaleNet):
        super().__init__()
        self.net = net
        self.scale = net.scale

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        if scale is not None and abs(float(scale) - self.scale) > 1e-6:
            raise ValueError(f"{type(self.net).__name__} was built for x{self.scale}, asked for x{scale:g}")
        up = bicubic_resize(x, output_size(x.shape[-2], x.shape[-1], self.scale))
        return up + self.net.residual(up if self.net.pre_upsampling else x)


class FastMetaSRGAN(nn.Module):
    """Meta-SRGAN for inference: ``encode`` runs the (folded) trunk and computes the per-slice maps,
    ``decode(maps, scale, box)`` equals ``MetaSRGAN.decode`` on the same LR image."""

    def __init__(self, model: MetaSRGAN):
        super().__init__()
        self.trunk = model.trunk
        self.upscale = FastMetaUpscale(model)
        self.card = model.card  # type: ignore[attr-defined]

    def encode(self, lr: torch.Tensor) -> MetaMaps:
        return self.upscale.maps(self.trunk(lr), lr)

    def decode(self, enc: MetaMaps, scale: float, box: tuple[int, int, int, int] | None = None,
               method: str = "auto") -> torch.Tensor:
        return self.upscale.decode(enc, scale, box, method)

    def forward(self, lr: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        scale = self.upscale.check_scale(scale)
        return self.decode(self.encode(lr), scale)
