"""Device choice: ``auto`` takes CUDA, then Apple MPS, then the CPU; explicit names are checked."""

from __future__ import annotations

import torch

from engine.errors import ModelError


def available_devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names.insert(0, "cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.insert(0, "mps")
    return names


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} asked for, but no CUDA GPU is available (use cpu or auto)")
    if name == "mps" and "mps" not in available_devices():
        raise ModelError("device 'mps' asked for, but Apple MPS is not available (use cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ModelError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None


def is_out_of_memory(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or "out of memory" in str(exc).lower()
