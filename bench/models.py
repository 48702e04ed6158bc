"""Time every registered network on this CPU, eager beside its optimised backends, bicubic beside them.

`python bench/models.py [--json] [--threads 2] [--repeat 7] [--models edsr,new_carn] [--volume]`

Cases: x2 256^2 -> 512^2 and x4 80^2 -> 320^2 for every network (meta_srgan at x2 and x4). Backends:
- eager: the prepared model (eval, FMEN fused, weight norm baked), as trained;
- eager_cl: the same in channels_last;
- fast: ``engine.fast.inference_form`` (the backend ``Upscaler`` runs), layout chosen by its rule;
- fast_alt: the same with the other memory layout, to check the rule;
- fast_torch: for networks with a native kernel (``engine.fast.native``: New CARN, CARN, the k x k
  convolutions to one channel), the fast form without them, in torch only; each row
  names the native kernels it ran.
Each row: ms (minimum over --repeat runs, backends interleaved), multiply-accumulates of the eager
network, GFLOP/s = 2 * MACs / time and % of a float32 matmul peak measured in the same run, and the
largest difference from eager. Shipped weights are used where they exist; otherwise random weights
of the shipped architecture ("untrained": same timing, meaningless pictures). bicubic rows time
torch's interpolate and the bicubic the fast backends use for their skip (native where built;
banded_torch: its banded-matrix torch form).

--volume adds a whole-volume run: New CARN x2 of a synthetic 256x256x176 volume through
``upscale_volume``: eager as before (batch 4, one batch at a time), fast one batch at a time, fast
with batches side by side on the CPU workers (``Upscaler.stack_workers``, the default), and that
default without the native kernel (fast_torch).

Timings on a machine with other work running are noisy: compare rows of one run, and re-measure on an
idle machine before quoting numbers. --malloc retain (default) keeps freed memory in the process
(``engine.fast.allocator``), as the viewer is advised to do.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.fast import native as native_kernels  # noqa: E402
from engine.fast.allocator import retain_freed_memory  # noqa: E402
from engine.fast.inference_form import inference_form, prefers_channels_last  # noqa: E402
from engine.fast.native import (  # noqa: E402
    NativeCARNBody,
    NativeNewCARNTrunk,
    NativeSingleOutputConv,
)
from engine.fast.resample import bicubic_resize  # noqa: E402
from engine.inference import Upscaler, prepare_for_inference, run_to_completion, upscale_volume  # noqa: E402
from engine.models import build_model, count_parameters, get_card, model_names  # noqa: E402
from engine.models.registry import bicubic_upsample, output_size  # noqa: E402
from engine.volume import Volume  # noqa: E402
from engine.weights import load_weights, save_weights, shipped_weights_path  # noqa: E402

CASES = ((2.0, 256), (4.0, 80))


def matmul_peak_gflops(n: int = 2048, repeat: int = 10) -> float:
    """Float32 GEMM rate, best of ``repeat`` (the machine's peak as torch reaches it)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    return 2 * n**3 / min(_timed(lambda: a @ b) for _ in range(repeat)) / 1e9


CLOCK = time.perf_counter  # --clock cpu: time.process_time


def _timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def count_macs(model: nn.Module, x: torch.Tensor, scale: float) -> int:
    """Multiply-accumulates of the eager network: Conv2d/Linear layers (hooks) plus Meta-Upscale's
    per-pixel kernels."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        total += out.numel() * m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.inference_mode():
        y = model(x, scale)
    for h in hooks:
        h.remove()
    if hasattr(model, "encode"):
        total += y.numel() * getattr(model, "width", 0) * 9
    return total


def random_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fan-in-scaled random weights (activations stay O(1)); batch-norm statistics near identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=gen) * (0.7 / fan_in**0.5 if p.dim() > 1 else 0.05))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.running_var.fill_(1.0)
            elif isinstance(m, nn.PReLU):
                m.weight.fill_(0.2)
    return model


def load_or_build(name: str, scale: float) -> tuple[nn.Module, bool]:
    """(model prepared for inference, trained?)."""
    path = shipped_weights_path(name, scale)
    if path.exists():
        try:
            return prepare_for_inference(load_weights(path).model), True
        except Exception as exc:  # a file being written by a training run: time random weights instead
            print(f"# {path.name}: {exc}; using random weights", file=sys.stderr)
    return prepare_for_inference(random_weights(build_model(name, scale))), False


def backends(model: nn.Module) -> dict[str, tuple[nn.Module, bool]]:
    """name -> (network, channels_last?). ``fast`` is what ``Upscaler`` runs: native kernels where
    they are built and fit (then ``fast_torch`` is the same form without them)."""
    fast = inference_form(model)
    rule = prefers_channels_last(fast)
    forms = {
        "eager": (model, False),
        "eager_cl": (copy.deepcopy(model).to(memory_format=torch.channels_last), True),
        "fast": (inference_form(model, channels_last=rule), rule),
        "fast_alt": (inference_form(model, channels_last=not rule), not rule),
    }
    if native_modules(fast):
        torch_rule = prefers_channels_last(inference_form(model, native=False))
        forms["fast_torch"] = (inference_form(model, channels_last=torch_rule, native=False), torch_rule)
    return forms


NATIVE_MODULES = (NativeNewCARNTrunk, NativeCARNBody, NativeSingleOutputConv)


def native_modules(net: nn.Module) -> list[str]:
    """The native kernels in a network's form (engine.fast.native), by class name."""
    return sorted({type(m).__name__ for m in net.modules() if isinstance(m, NATIVE_MODULES)})


def time_interleaved(runs: dict[str, callable], repeat: int) -> dict[str, float]:
    best = {k: float("inf") for k in runs}
    with torch.inference_mode():
        for fn in runs.values():
            fn()
        for _ in range(repeat):
            for key, fn in runs.items():
                best[key] = min(best[key], _timed(fn) * 1000)
    return best


def bench_models(names: list[str], repeat: int, peak: list[float]) -> list[dict]:
    """Rows per network and backend; ``peak`` (one float) is raised to the best matmul rate seen,
    measured again before every network so that a moment of load does not set it."""
    rows = []
    for name in names:
        peak[0] = max(peak[0], matmul_peak_gflops(repeat=3))
        for scale, side in CASES:
            x = torch.rand(1, 1, side, side, generator=torch.Generator().manual_seed(0))
            out_hw = output_size(side, side, scale)
            case = {"model": name, "scale": scale, "input": f"{side}x{side}",
                    "output": f"{out_hw[0]}x{out_hw[1]}"}
            if name == "bicubic":
                def banded_torch(x=x, hw=out_hw):
                    with native_kernels.switched_off():
                        return bicubic_resize(x, hw)

                ms = time_interleaved({"torch": lambda x=x, hw=out_hw: bicubic_upsample(x, hw),
                                       "banded": lambda x=x, hw=out_hw: bicubic_resize(x, hw),
                                       "banded_torch": banded_torch}, repeat)
                rows += [{**case, "backend": k, "ms": round(v, 3)} for k, v in ms.items()]
                continue
            model, trained = load_or_build(name, scale)
            layouts = backends(model)
            nets = {k: net for k, (net, _) in layouts.items()}
            macs = count_macs(model, x, scale)
            with torch.inference_mode():
                ref = model(x, scale)
                diff = {k: float((net(x, scale) - ref).abs().max()) for k, net in nets.items()}
            runs = {k: (lambda net=net, x=x, s=scale: net(x, s)) for k, net in nets.items()}
            ms = time_interleaved(runs, repeat)
            for key in nets:
                gflops = 2 * macs / (ms[key] / 1000) / 1e9  # % of peak is filled in by main()
                rows.append({
                    **case, "backend": key, "weights": "trained" if trained else "untrained",
                    "params": count_parameters(model), "macs_g": round(macs / 1e9, 3),
                    "ms": round(ms[key], 2),
                    "gflops": round(gflops, 1),
                    "max_abs_diff": float(f"{diff[key]:.2g}"), "speedup": round(ms["eager"] / ms[key], 2),
                    "channels_last": layouts[key][1], "native": native_modules(nets[key]),
                })
    return rows


def bench_volume(batches: list[int], threads: int) -> list[dict]:
    """New CARN x2 of a synthetic 256x256x176 volume (axial slices), eager and fast."""
    rng = np.random.default_rng(0)
    data = rng.random((256, 256, 176), dtype=np.float32) * 1000
    vol = Volume(data, np.diag([1.0, 1.0, 1.0, 1.0]), "MR", "synthetic")
    with tempfile.TemporaryDirectory() as tmp:
        path = shipped_weights_path("new_carn", 2.0)
        trained = path.exists()
        if not trained:
            path = Path(tmp) / "new_carn_x2.safetensors"
            save_weights(random_weights(build_model("new_carn", 2)), path, arch="new_carn",
                         args=get_card("new_carn").ship_args, scale=2.0)
        # (backend, batch, side by side?): eager as before (batch 4, one batch at a time), then the
        # fast backend one batch at a time and with the CPU workers side by side (the default).
        # fast_torch: the default once more without the native kernel (engine.fast.native).
        runs = [("eager", 4, False), ("fast", 1, False)] + [("fast", b, True) for b in batches]
        if native_kernels.available():
            runs.append(("fast_torch", batches[0], True))
        rows = []
        for backend, batch, parallel in runs:
            with native_kernels.switched_off() if backend == "fast_torch" else contextlib.nullcontext():
                up = Upscaler.load("new_carn", 2.0, weights=path, device="cpu", fast=backend != "eager")
            if not parallel:
                up.stack_workers = lambda _batches: 1
            t0 = CLOCK()
            out = run_to_completion(upscale_volume(vol, up, 2.0, plane=2, batch=batch))
            seconds = CLOCK() - t0
            rows.append({"model": "new_carn", "scale": 2.0, "volume": "256x256x176 (synthetic)",
                         "output": "x".join(map(str, out.shape)), "backend": backend, "batch": batch,
                         "workers": up.stack_workers(176), "threads": threads, "seconds": round(seconds, 2),
                         "slices_per_s": round(176 / seconds, 1),
                         "weights": "trained" if trained else "untrained"})
            print(f"# volume {backend} batch {batch} workers {rows[-1]['workers']}: {seconds:.2f} s",
                  file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--models", default="all")
    ap.add_argument("--volume", action="store_true", help="also time a whole-volume New CARN x2 run")
    ap.add_argument("--batches", default="1,4", help="batch sizes of the fast volume run, side by side")
    ap.add_argument("--malloc", choices=("retain", "default"), default="retain")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time, a steadier estimate of an idle core's time with --threads 1 "
                    "on a loaded machine (with more threads it adds up the threads' time)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    retained = retain_freed_memory() if args.malloc == "retain" else False
    peak = [matmul_peak_gflops()]
    names = model_names() if args.models == "all" else args.models.split(",")
    rows = bench_models(names, args.repeat, peak)
    peak = max(peak[0], matmul_peak_gflops())
    for r in rows:
        if "gflops" in r:
            r["pct_peak"] = round(100 * r["gflops"] / peak, 1)
    volume = bench_volume([int(b) for b in args.batches.split(",")], args.threads) if args.volume else []
    result = {
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "clock": args.clock,
        "malloc_retain": retained,
        "matmul_peak_gflops": round(peak, 1),
        "torch": torch.__version__,
        "rows": rows,
        "volume": volume,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"matmul peak {peak:.0f} GFLOP/s ({args.threads} threads, {args.clock} clock, torch "
          f"{torch.__version__}, malloc retain {retained})")
    print(f"{'model':10s} {'scale':>5s} {'backend':9s} {'in':>7s} {'weights':9s} {'GMAC':>6s} {'ms':>8s} "
          f"{'GFLOP/s':>7s} {'%peak':>6s} {'speedup':>7s} {'maxdiff':>8s}")
    for r in rows:
        if r["model"] == "bicubic":
            print(f"{'bicubic':10s} {r['scale']:5.2g} {r['backend']:9s} {r['input']:>7s} {'-':9s} {'':>6s} "
                  f"{r['ms']:8.2f}")
            continue
        print(f"{r['model']:10s} {r['scale']:5.2g} {r['backend']:9s} {r['input']:>7s} {r['weights']:9s} "
              f"{r['macs_g']:6.2f} {r['ms']:8.2f} {r['gflops']:7.1f} {r['pct_peak']:6.1f} "
              f"{r['speedup']:7.2f} {r['max_abs_diff']:8.1e}")
    for r in volume:
        print(f"volume new_carn x2 256x256x176 {r['backend']:5s} batch {r['batch']:2d} "
              f"workers {r['workers']}: {r['seconds']:.2f} s ({r['slices_per_s']} slices/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
