"""Time every shipped network on this CPU: ms, MACs, achieved GFLOP/s and % of a matmul peak.

`python bench/models.py [--json] [--threads 2] [--repeat 5]`. Cases: x2 256^2 -> 512^2 and
x4 80^2 -> 320^2 (meta_srgan also at 2.5 and 3.5). Each network runs in every backend we have
(eager, channels_last); bicubic is timed beside them. The peak is a float32 matmul measured in the
same run, so the percentages compare like with like. Never a unit test: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.catalog import model_catalog  # noqa: E402
from engine.inference import Upscaler  # noqa: E402
from engine.models import count_parameters  # noqa: E402

CASES = {2.0: 256, 3.0: 128, 4.0: 80, 2.5: 128, 3.5: 96}


def matmul_peak_gflops(n: int = 2048, repeat: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def count_macs(model: nn.Module, x: torch.Tensor, scale: float) -> int:
    """Multiply-accumulates of Conv2d/Linear layers (hooks) plus Meta-Upscale's per-pixel kernels."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() * k

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        y = model(x, scale)
    for h in hooks:
        h.remove()
    if hasattr(model, "encode"):
        total += y.numel() * getattr(model, "width", 0) * 9
    return total


def time_backend(model: nn.Module, x: torch.Tensor, scale: float, repeat: int) -> float:
    with torch.no_grad():
        model(x, scale)
        return statistics.median(_timed(lambda: model(x, scale)) for _ in range(repeat)) * 1000


def backends(model: nn.Module, x: torch.Tensor):
    yield "eager", model, x
    cl = model.to(memory_format=torch.channels_last)
    yield "channels_last", cl, x.contiguous(memory_format=torch.channels_last)
    model.to(memory_format=torch.contiguous_format)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", default="all")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops()
    rows = []
    for entry in model_catalog():
        name = entry["name"]
        if args.models != "all" and name not in args.models.split(","):
            continue
        scales = [2.0, 2.5, 3.5, 4.0] if entry["scale_range"] and name != "bicubic" else [2.0, 4.0]
        for s in scales:
            try:
                up = Upscaler.load(name, s, device="cpu")
            except Exception as exc:  # untrained: reported, not timed
                rows.append({"model": name, "scale": s, "error": str(exc)[:120]})
                continue
            side = CASES[s]
            x = torch.rand(1, 1, side, side)
            macs = count_macs(up.model, x, s)
            for backend, model, inp in backends(up.model, x):
                ms = time_backend(model, inp, s, args.repeat)
                gflops = 2 * macs / (ms / 1000) / 1e9 if macs else 0.0
                rows.append(
                    {
                        "model": name,
                        "scale": s,
                        "backend": backend,
                        "input": f"{side}x{side}",
                        "output": f"{round(side * s)}x{round(side * s)}",
                        "params": count_parameters(up.model),
                        "macs_g": round(macs / 1e9, 3),
                        "ms": round(ms, 2),
                        "gflops": round(gflops, 1),
                        "pct_peak": round(100 * gflops / peak, 1),
                    }
                )
    result = {
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "matmul_peak_gflops": round(peak, 1),
        "torch": torch.__version__,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"matmul peak {peak:.0f} GFLOP/s ({args.threads} threads, torch {torch.__version__})")
    print(
        f"{'model':11s} {'scale':>5s} {'backend':14s} {'in':>8s} {'params':>9s} {'GMAC':>7s} {'ms':>8s} "
        f"{'GFLOP/s':>8s} {'%peak':>6s}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['model']:11s} {r['scale']:5.2g} {'—':14s} {r['error']}")
            continue
        print(
            f"{r['model']:11s} {r['scale']:5.2g} {r['backend']:14s} {r['input']:>8s} {r['params']:9d} "
            f"{r['macs_g']:7.3f} {r['ms']:8.2f} {r['gflops']:8.1f} {r['pct_peak']:6.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
