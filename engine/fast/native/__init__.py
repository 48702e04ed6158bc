"""Optional native kernels (C, loaded with ctypes), each with the torch path as its fallback.

Kernels: New CARN's head conv and residual body, every block fused into two passes over an NHWC
image, and CARN's regression body (``new_carn.c``, AVX2); on CPUs with AVX-512 both over planar
images, 16 pixels a vector, where an 8-channel AVX2 vector uses half the FMA width
(``new_carn_avx512.c``); a network's last k x k convolution to one channel
(``single_output_conv.c``); Meta-SRGAN's decode of a zoom box (``meta_decode.c``), the mixed hidden
units of the weight-prediction MLP summed per output pixel in one pass; and the bicubic upscale of a
box (``bicubic_box.c``), the zoom placeholder and every network's bicubic skip. They are built by
``make setup`` (``python -m engine.fast.native``) with the machine's C compiler; without one, on a
CPU without AVX2/FMA, or with ``MEDSR_NATIVE=0``, ``available()`` is False and the fast forms stay
in torch. Results equal torch's within 1e-4 (tests/engine/test_native.py, test_fast_paths.py).
ctypes releases the GIL for the network calls, so the viewer's GUI thread runs while a worker is inside
one; the sub-millisecond bicubic keeps it (see ``_library_holding_gil``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCES = tuple(HERE / name for name in ("new_carn.c", "new_carn_avx512.c", "meta_decode.c", "bicubic_box.c",
                                         "single_output_conv.c"))
LIBRARY = HERE / ("medsr_native.dll" if sys.platform == "win32" else "libmedsr_native.so")
INNER = ANCHORS = 8  # the sizes the New CARN kernel is compiled for (shipped 13-8-8)
MAX_UNITS = 256  # the most mixed hidden units the Meta-Upscale decode takes (meta_decode.c)
CFLAGS = ("-O3", "-fPIC", "-shared", "-fopenmp", "-Wall")


def build(compiler: str | None = None) -> Path:
    """Compile the kernels into ``LIBRARY`` (atomically: a failed build leaves the old file)."""
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler found (set CC); the torch path stays in use")
    tmp = LIBRARY.with_name(LIBRARY.name + ".tmp")
    subprocess.run([cc, *CFLAGS, "-o", str(tmp), *map(str, SOURCES), "-lm"], check=True)
    os.replace(tmp, LIBRARY)
    library.cache_clear()
    _py_dll.cache_clear()
    return LIBRARY


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (not built, stale, disabled, or this CPU lacks AVX2/FMA)."""
    if os.environ.get("MEDSR_NATIVE", "1") == "0" or not LIBRARY.exists():
        return None
    stale = [s.name for s in SOURCES if s.exists() and s.stat().st_mtime > LIBRARY.stat().st_mtime]
    if stale:
        log.warning("%s is older than %s: run `make setup` to rebuild it; using torch", LIBRARY, stale)
        return None
    try:
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError as exc:
        log.warning("cannot load %s (%s); using torch", LIBRARY, exc)
        return None
    if not lib.medsr_native_supported() or lib.medsr_new_carn_channels() != INNER * 100 + ANCHORS:
        return None
    f = ctypes.c_void_p
    i = ctypes.c_int
    lib.medsr_new_carn_trunk.argtypes = [f, f, f, i, i, i, f, f, i, f, f, f, f, f, f, i]
    lib.medsr_new_carn_trunk.restype = ctypes.c_int
    lib.medsr_new_carn_trunk_planar.argtypes = [f, f, f, i, i, i, f, f, i, f, f, f, f, f, f, i]
    lib.medsr_new_carn_trunk_planar.restype = ctypes.c_int
    lib.medsr_carn_body_planar.argtypes = [f, f, i, i, i, i, f, f, f, f, i]
    lib.medsr_carn_body.argtypes = [f, f, i, i, i, i, f, f, f, f, i]
    lib.medsr_carn_body.restype = ctypes.c_int
    lib.medsr_carn_body_planar.restype = ctypes.c_int
    lib.medsr_single_output_conv.argtypes = [f, i, i, i, i, i, f, ctypes.c_float, f, i]
    lib.medsr_single_output_conv.restype = ctypes.c_int
    lib.medsr_meta_decode.argtypes = [f, ctypes.c_float, f, i, i, i, f, f, i, f, f, i, f, f, f, i]
    lib.medsr_meta_decode.restype = ctypes.c_int
    return lib


_switched_off = False
_avx512_off = False


def use_avx512() -> bool:
    """New CARN's kernel in its AVX-512 layout: on CPUs that have it, unless ``MEDSR_NATIVE_AVX512=0``
    or ``avx512_switched_off()`` (which the tests use to run the AVX2 kernel on the same machine)."""
    lib = library()
    return (lib is not None and not _avx512_off and os.environ.get("MEDSR_NATIVE_AVX512", "1") != "0"
            and bool(lib.medsr_native_avx512_supported()))


@contextmanager
def avx512_switched_off():
    global _avx512_off
    before, _avx512_off = _avx512_off, True
    try:
        yield
    finally:
        _avx512_off = before


def available() -> bool:
    return not _switched_off and library() is not None


@contextmanager
def switched_off():
    """Within this block ``available()`` is False (benchmarks and tests of the torch path)."""
    global _switched_off
    before, _switched_off = _switched_off, True
    try:
        yield
    finally:
        _switched_off = before


def _taps_in_out(conv: nn.Conv2d) -> torch.Tensor:
    """(out, in, 3, 3) -> (3, 3, in, out): the output channel innermost."""
    return conv.weight.detach().permute(2, 3, 1, 0).contiguous()


class NativeNewCARNTrunk(nn.Module):
    """New CARN's ``head`` conv and ``body`` (a Sequential of ``NewCARNBlock``) as one native call:
    (N, 1, h, w) in, (N, 8, h, w) out in channels_last (the kernel's NHWC memory), which the
    reconstruction conv takes as it is."""

    def __init__(self, head: nn.Conv2d, body: nn.Sequential):
        super().__init__()
        reg_w, reg_b, sim_w, sim_b, feat_w, feat_b = [], [], [], [], [], []
        for block in body:
            reg, sim, feat = block.regression.regressors, block.regression.similarity, block.features
            # regressor output channel k*D + c, input i -> [k][i][c]
            reg_w.append(reg.weight.detach()[:, :, 0, 0].view(ANCHORS, INNER, INNER).transpose(1, 2))
            reg_b.append(reg.bias.detach())
            sim_w.append(_taps_in_out(sim))
            sim_b.append(sim.bias.detach())
            feat_w.append(_taps_in_out(feat))
            feat_b.append(feat.bias.detach())
        self.blocks = len(body)
        # flat buffers: a module's .to(memory_format=...) would try to re-lay out 4-D ones
        self.register_buffer("head_w", _taps_in_out(head).float().reshape(-1).contiguous())
        self.register_buffer("head_b", head.bias.detach().float().contiguous())
        for name, parts in (("reg_w", reg_w), ("reg_b", reg_b), ("sim_w", sim_w), ("sim_b", sim_b),
                            ("feat_w", feat_w), ("feat_b", feat_b)):
            self.register_buffer(name, torch.stack(parts).float().reshape(self.blocks, -1).contiguous())
        # the AVX-512 kernel (new_carn_avx512.c) takes torch's own layouts
        self.register_buffer("head_w_planar", head.weight.detach().float().reshape(-1).contiguous())
        for name, convs in (("reg_w_planar", [b.regression.regressors for b in body]),
                            ("sim_w_planar", [b.regression.similarity for b in body]),
                            ("feat_w_planar", [b.features for b in body])):
            self.register_buffer(name, torch.stack([c.weight.detach() for c in convs]).float()
                                 .reshape(self.blocks, -1).contiguous())

    @staticmethod
    def supports(head: nn.Module, body: nn.Module) -> bool:
        from engine.models.new_carn import NewCARNBlock

        return (isinstance(head, nn.Conv2d) and head.in_channels == 1 and head.out_channels == INNER
                and head.kernel_size == (3, 3) and head.padding == (1, 1) and head.bias is not None
                and isinstance(body, nn.Sequential) and len(body) > 0
                and all(isinstance(b, NewCARNBlock) and b.regression.inner == INNER
                        and b.regression.anchors == ANCHORS and b.regression.regressors.kernel_size == (1, 1)
                        for b in body))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        lib = library()  # built forms keep working inside switched_off(): it only stops new ones
        if lib is None or lr.dtype != torch.float32 or lr.device.type != "cpu" or lr.shape[1] != 1:
            raise RuntimeError("the native New CARN kernel is not available for this input")
        if use_avx512():
            return self._forward_planar(lib, lr)
        n, _, h, w = lr.shape
        img = lr.contiguous()
        # zero-padded NHWC buffers: the kernel's 3x3 convolutions then need no border cases
        padded = lr.new_zeros(n, h + 2, w + 2, INNER)
        scratch = torch.zeros_like(padded)
        status = lib.medsr_new_carn_trunk(
            img.data_ptr(), padded.data_ptr(), scratch.data_ptr(), n, h, w, self.head_w.data_ptr(),
            self.head_b.data_ptr(), self.blocks, self.reg_w.data_ptr(), self.reg_b.data_ptr(),
            self.sim_w.data_ptr(), self.sim_b.data_ptr(), self.feat_w.data_ptr(), self.feat_b.data_ptr(),
            torch.get_num_threads())
        if status != 0:
            raise RuntimeError(f"native New CARN kernel failed (status {status})")
        return padded[:, 1:-1, 1:-1].permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

    def _forward_planar(self, lib: ctypes.CDLL, lr: torch.Tensor) -> torch.Tensor:
        n, _, h, w = lr.shape
        img = torch.nn.functional.pad(lr[:, 0], (1, 1, 1, 1)).contiguous()
        x = lr.new_zeros(n, INNER, h + 2, w + 2)
        scratch = torch.zeros_like(x)
        status = lib.medsr_new_carn_trunk_planar(
            img.data_ptr(), x.data_ptr(), scratch.data_ptr(), n, h, w, self.head_w_planar.data_ptr(),
            self.head_b.data_ptr(), self.blocks, self.reg_w_planar.data_ptr(), self.reg_b.data_ptr(),
            self.sim_w_planar.data_ptr(), self.sim_b.data_ptr(), self.feat_w_planar.data_ptr(),
            self.feat_b.data_ptr(), torch.get_num_threads())
        if status != 0:
            raise RuntimeError(f"native New CARN kernel (AVX-512) failed (status {status})")
        return x[:, :, 1:-1, 1:-1].contiguous(memory_format=torch.channels_last)


class NativeCARNBody(nn.Module):
    """CARN's regression blocks (``CARNBlock``: 8 channels, 8 anchors, 3x3 regressors) as one native
    call: planar on CPUs with AVX-512 (new_carn_avx512.c), NHWC with AVX2 (new_carn.c); without the
    library the blocks it replaced run as they were. (N, 8, h, w) in and out."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.fallback = body
        self.blocks = len(body)
        regs = [b.regression for b in body]
        for name, parts in (("reg_w", [r.regressors.weight for r in regs]),
                            ("reg_b", [r.regressors.bias for r in regs]),
                            ("sim_w", [r.similarity.weight for r in regs]),
                            ("sim_b", [r.similarity.bias for r in regs])):
            self.register_buffer(name, torch.stack([p.detach() for p in parts]).float()
                                 .reshape(self.blocks, -1).contiguous())
        # the AVX2 kernel's layouts: regressors [k][ty][tx][i][c], anchors [ty][tx][i][a]
        reg = torch.stack([r.regressors.weight.detach() for r in regs]).float()  # (B, M*D, D, 3, 3)
        reg = reg.view(self.blocks, ANCHORS, INNER, INNER, 3, 3).permute(0, 1, 4, 5, 3, 2)
        self.register_buffer("reg_w_nhwc", reg.reshape(self.blocks, -1).contiguous())
        sim = torch.stack([r.similarity.weight.detach() for r in regs]).float()  # (B, M, D, 3, 3)
        self.register_buffer("sim_w_nhwc", sim.permute(0, 3, 4, 2, 1).reshape(self.blocks, -1).contiguous())

    @staticmethod
    def supports(body: nn.Module) -> bool:
        from engine.models.carn import CARNBlock

        def fits(block: nn.Module) -> bool:
            if not isinstance(block, CARNBlock):
                return False
            reg = block.regression
            return (reg.inner == INNER and reg.anchors == ANCHORS and reg.regressors.kernel_size == (3, 3)
                    and reg.regressors.padding == (1, 1) and reg.regressors.bias is not None
                    and reg.similarity.bias is not None)

        return isinstance(body, nn.Sequential) and len(body) > 0 and all(fits(b) for b in body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lib = library()
        if lib is None or x.dtype != torch.float32 or x.device.type != "cpu" or x.shape[1] != INNER:
            return self.fallback(x)
        if not use_avx512():
            return self._forward_nhwc(lib, x)
        n, _, h, w = x.shape
        a = torch.nn.functional.pad(x, (1, 1, 1, 1)).contiguous()
        b = torch.zeros_like(a)
        status = lib.medsr_carn_body_planar(a.data_ptr(), b.data_ptr(), n, h, w, self.blocks,
                                            self.reg_w.data_ptr(), self.reg_b.data_ptr(),
                                            self.sim_w.data_ptr(), self.sim_b.data_ptr(),
                                            torch.get_num_threads())
        if status != 0:
            raise RuntimeError(f"native CARN kernel failed (status {status})")
        out = b if self.blocks % 2 else a
        return out[:, :, 1:-1, 1:-1].contiguous()

    def _forward_nhwc(self, lib: ctypes.CDLL, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        a = torch.nn.functional.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1)).contiguous()
        b = torch.zeros_like(a)
        status = lib.medsr_carn_body(a.data_ptr(), b.data_ptr(), n, h, w, self.blocks,
                                     self.reg_w_nhwc.data_ptr(), self.reg_b.data_ptr(),
                                     self.sim_w_nhwc.data_ptr(), self.sim_b.data_ptr(),
                                     torch.get_num_threads())
        if status != 0:
            raise RuntimeError(f"native CARN kernel (AVX2) failed (status {status})")
        out = b if self.blocks % 2 else a
        return out[:, 1:-1, 1:-1].permute(0, 3, 1, 2).contiguous()


class NativeSingleOutputConv(nn.Module):
    """A k x k convolution to one output channel (k >= 5, stride 1, zero 'same' padding) as one
    native call on the NHWC input (single_output_conv.c): oneDNN runs these last layers at a tenth
    of its usual speed. The wrapped conv runs where the kernel does not apply."""

    MIN_KERNEL = 5  # at 3x3 oneDNN is as fast

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv
        self.k = conv.kernel_size[0]
        self.bias = float(conv.bias.detach()) if conv.bias is not None else 0.0
        # [ty][tx][c], flat: a module's .to(memory_format=channels_last) would re-lay out a 4-D buffer
        taps_last = conv.weight.detach()[0].permute(1, 2, 0).float()
        self.register_buffer("weight", taps_last.reshape(-1).contiguous())

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        if type(conv) is not nn.Conv2d:
            return False
        k = conv.kernel_size[0]
        return (conv.out_channels == 1 and conv.kernel_size == (k, k) and k % 2 == 1
                and k >= NativeSingleOutputConv.MIN_KERNEL and conv.stride == (1, 1)
                and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding == (k // 2, k // 2)
                and conv.padding_mode == "zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lib = library()
        if lib is None or x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 4:
            return self.conv(x)
        n, cin, h, w = x.shape
        p = self.k // 2
        # NHWC, padded: a channels_last input is read as it is (the pad is the only copy)
        padded = torch.nn.functional.pad(x.permute(0, 2, 3, 1), (0, 0, p, p, p, p)).contiguous()
        out = x.new_empty(n, 1, h, w)
        status = lib.medsr_single_output_conv(padded.data_ptr(), n, cin, h, w, self.k,
                                              self.weight.data_ptr(), self.bias, out.data_ptr(),
                                              torch.get_num_threads())
        if status != 0:
            raise RuntimeError(f"native single-output convolution failed (status {status})")
        return out


def meta_decode(q: torch.Tensor, g: torch.Tensor, scale: float, row_pixel: torch.Tensor,
                row_offset: torch.Tensor, col_pixel: torch.Tensor, col_offset: torch.Tensor,
                u: torch.Tensor, minus_v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Add one image's Meta-Upscale residual for a box into ``out`` (bh, bw), which holds the bicubic
    skip: q (h, w, 4) and g (h, w, M) are the slice's maps, row_* / col_* the box's LR pixels and
    offsets, u (bh, M) and minus_v (bw, M) the mixed units' row and column terms."""
    lib = library()
    if lib is None:
        raise RuntimeError("the native kernels are not available here")
    h, w, units = g.shape
    bh, bw = out.shape
    tensors = [q, g, row_pixel, row_offset, col_pixel, col_offset, u, minus_v, out]
    if not all(t.is_contiguous() and t.device.type == "cpu" for t in tensors):
        raise ValueError("meta_decode needs contiguous CPU tensors")
    if row_pixel.dtype != torch.int64 or col_pixel.dtype != torch.int64 or any(
            t.dtype != torch.float32 for t in (q, g, row_offset, col_offset, u, minus_v, out)):
        raise ValueError("meta_decode needs int64 pixel indices and float32 values")
    if q.shape != (h, w, 4) or u.shape != (bh, units) or minus_v.shape != (bw, units):
        raise ValueError("meta_decode: inconsistent shapes")
    status = lib.medsr_meta_decode(
        q.data_ptr(), 1.0 / scale, g.data_ptr(), h, w, units, row_pixel.data_ptr(), row_offset.data_ptr(),
        bh, col_pixel.data_ptr(), col_offset.data_ptr(), bw, u.data_ptr(), minus_v.data_ptr(),
        out.data_ptr(), torch.get_num_threads())
    if status != 0:
        raise RuntimeError(f"native Meta-Upscale decode failed (status {status})")
    return out


def _library_holding_gil() -> ctypes.PyDLL | None:
    """The same library through PyDLL: its calls keep the interpreter lock. For sub-millisecond calls
    on the GUI thread: giving the lock up and taking it back costs up to the interpreter's switch
    interval (5 ms) whenever a worker thread is running Python."""
    return _py_dll() if library() is not None else None


@lru_cache(maxsize=1)
def _py_dll() -> ctypes.PyDLL:
    lib = ctypes.PyDLL(str(LIBRARY))
    f, i = ctypes.c_void_p, ctypes.c_int
    lib.medsr_bicubic_box.argtypes = [f, i, i, i, i, i, i, i, i, i, f, ctypes.c_float, ctypes.c_float, f]
    lib.medsr_bicubic_box.restype = ctypes.c_int
    return lib


def bicubic_box(x: torch.Tensor | np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int]
                 ) -> torch.Tensor | np.ndarray | None:
    """The region box = (y0, x0, y1, x1) of the bicubic upscale of ``x`` to ``size``, in one native
    call that keeps the interpreter lock: ``x`` is a tensor (N, C, h, w) or an array (..., h, w), and
    the result is of the same kind. None where the kernel does not apply (not built, switched off, not
    float32, not on the CPU)."""
    if isinstance(x, torch.Tensor):
        if x.dtype != torch.float32 or x.device.type != "cpu" or x.requires_grad:
            return None
        out = _bicubic_box(x.detach().contiguous().numpy(), size, box, None)
        return None if out is None else torch.from_numpy(out[0])
    out = _bicubic_box(x, size, box, None)
    return None if out is None else out[0]


def bicubic_box_shown(image: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int],
                      levels: tuple[float, float]) -> tuple[np.ndarray, np.ndarray] | None:
    """``bicubic_box`` of a float32 array, and the same values windowed to uint8 by ``levels`` as
    pyqtgraph would show them (``engine.zoom.windowed``), from the same pass; None where the kernel
    does not apply."""
    return _bicubic_box(image, size, box, levels)


def _bicubic_box(x: np.ndarray, size, box, levels) -> tuple[np.ndarray, np.ndarray | None] | None:
    lib = _library_holding_gil() if not _switched_off else None
    if lib is None or x.ndim < 2 or x.dtype != np.float32:
        return None
    img = np.ascontiguousarray(x)
    *lead, h, w = img.shape
    y0, x0, y1, x1 = box
    out = np.empty((*lead, y1 - y0, x1 - x0), dtype=np.float32)
    shown = None if levels is None else np.empty(out.shape, dtype=np.uint8)
    lo, hi = levels if levels is not None else (0.0, 1.0)
    planes = int(np.prod(lead)) if lead else 1
    status = lib.medsr_bicubic_box(img.ctypes.data, planes, h, w, size[0], size[1], y0, x0, y1, x1,
                                   out.ctypes.data, lo, hi, None if shown is None else shown.ctypes.data)
    if status != 0:
        raise ValueError(f"bicubic box {box} of a {h}x{w} -> {size[0]}x{size[1]} upscale: bad sizes")
    return out, shown
