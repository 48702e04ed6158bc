"""Optional native kernels (C, loaded with ctypes), each with the torch path as its fallback.

One kernel so far: New CARN's head conv and residual body (``new_carn.c``), every block fused into
two passes over an NHWC image. It is built by ``make setup`` (``python -m engine.fast.native``) with the C
compiler of the machine; without one, or on a CPU without AVX2/FMA, or with ``MEDSR_NATIVE=0``,
``available()`` is False and the fast forms stay in torch. Results equal torch's within 1e-4
(tests/engine/test_native.py). ctypes releases the GIL for the call, so the viewer's GUI thread
runs while a worker is inside it.
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

import torch
from torch import nn

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "new_carn.c"
LIBRARY = HERE / ("medsr_native.dll" if sys.platform == "win32" else "libmedsr_native.so")
INNER = ANCHORS = 8  # the sizes the kernel is compiled for (shipped New CARN 13-8-8)
CFLAGS = ("-O3", "-fPIC", "-shared", "-fopenmp", "-Wall")


def build(compiler: str | None = None) -> Path:
    """Compile the kernels into ``LIBRARY`` (atomically: a failed build leaves the old file)."""
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler found (set CC); the torch path stays in use")
    tmp = LIBRARY.with_name(LIBRARY.name + ".tmp")
    subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(SOURCE), "-lm"], check=True)
    os.replace(tmp, LIBRARY)
    library.cache_clear()
    return LIBRARY


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (not built, stale, disabled, or this CPU lacks AVX2/FMA)."""
    if os.environ.get("MEDSR_NATIVE", "1") == "0" or not LIBRARY.exists():
        return None
    if SOURCE.exists() and SOURCE.stat().st_mtime > LIBRARY.stat().st_mtime:
        log.warning("%s is older than %s: run `make setup` to rebuild it; using torch", LIBRARY, SOURCE)
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
    return lib


_switched_off = False


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
