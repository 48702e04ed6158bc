"""Opt-in: keep freed memory in the process, so that large tensors are not page-faulted in every call.

glibc returns freed blocks above its (adaptive) trim threshold to the kernel, so each forward pass
re-faults its multi-megabyte activations page by page: measured on the development CPU (1 thread),
the Meta-SRGAN trunk on a 256^2 slice takes 243 ms with the defaults and 222 ms with memory
retained; the eager trunk 440 -> 294 ms; a non-inplace LeakyReLU on 48x256^2 8 ms -> 0.5 ms.

This is process-wide, so the engine never calls it by itself: an application (the viewer, the CLI,
a benchmark) calls ``retain_freed_memory()`` once at start-up. The cost is that the process keeps
its peak heap instead of shrinking after a large run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit


def retain_freed_memory(trim_threshold: int = 1 << 30, top_pad: int = 64 << 20) -> bool:
    """Tune glibc malloc to keep freed memory (Linux only). Returns whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        log.info("malloc tuning unavailable (%s has no mallopt)", name)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    ok &= mallopt(_M_TOP_PAD, top_pad) == 1
    if not ok:
        log.warning("malloc tuning partly refused by the C library")
    return ok
