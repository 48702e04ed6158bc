"""Time scroll-to-zoom: slice encode, SR render of a 512x512 viewport along a zoom sequence, placeholder.

`python bench/zoom_engine.py [--json] [--threads 2] [--weights W] [--data NIFTI] [--step 1.03]`

The slice is real: the middle acquisition-plane slice of the bundled sample volume (or --data),
padded with its background value (centred) to --size^2 (256). Weights: --weights, else the shipped
resources/weights/meta_srgan.safetensors, else random weights of the shipped architecture written with
engine.weights.save_weights (marked "untrained": the timing is the same, the pictures are not).

The zoom sequence goes 1.1 -> 4.0 -> 1.1 by factors of --step; each step renders the centred
512x512 viewport (clipped to the image at low zoom). On the way back every scale has been seen, so
its per-scale tables are warm; both passes are reported. The eager reference (MetaSRGAN.decode, the
per-pixel-offset MLP + gather/einsum) is timed on a few of the same steps for comparison. Timings are
wall clock, minimum of --repeat runs per step; on a loaded machine they are noisy: compare runs
taken together, and re-measure on an idle machine before quoting numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.fast.allocator import retain_freed_memory  # noqa: E402
from engine.inference import Upscaler  # noqa: E402
from engine.io.load import load_volume  # noqa: E402
from engine.models import build_model, get_card  # noqa: E402
from engine.models.registry import output_size  # noqa: E402
from engine.normalization import Normalizer  # noqa: E402
from engine.resources import shipped_weights_dir  # noqa: E402
from engine.weights import save_weights  # noqa: E402
from engine.zoom import ZoomEngine, clip_box  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "sample" / "utah_seg3d_MR.nii.gz"
VIEWPORT = 512


def real_slice(path: Path, size: int) -> tuple[np.ndarray, Normalizer, str]:
    """The middle acquisition-plane slice, padded (background value, centred) or cropped to size^2."""
    vol = load_volume(path)
    axis = vol.acquisition_axis
    image = np.take(vol.data, vol.shape[axis] // 2, axis=axis)
    out = np.full((size, size), float(np.percentile(image, 1)), dtype=np.float32)
    h, w = min(size, image.shape[0]), min(size, image.shape[1])
    iy, ix = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    oy, ox = (size - h) // 2, (size - w) // 2
    out[oy: oy + h, ox: ox + w] = image[iy: iy + h, ix: ix + w]
    where = f"{path.name} axis {axis} slice {vol.shape[axis] // 2} {image.shape}"
    return out, Normalizer.fit(vol.data), where


def meta_weights(path: Path | None, workdir: Path) -> tuple[Path, bool]:
    """(weights file, trained?)."""
    if path is not None:
        return path, True
    shipped = shipped_weights_dir() / "meta_srgan.safetensors"
    if shipped.exists():
        return shipped, True
    args = dict(get_card("meta_srgan").ship_args)
    model = build_model("meta_srgan", **args)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / fan_in**0.5 if p.dim() > 1 else 0.05))
            if name.startswith("weight_mlp.0"):  # first MLP layer: like a trained one, pre-activations
                p.copy_(torch.rand(p.shape, generator=gen) * 2 - 1)  # of both signs over the offsets
    out = workdir / "meta_srgan_untrained.safetensors"
    save_weights(model, out, arch="meta_srgan", args=args, scale=None, card={"untrained": True})
    return out, False


def zoom_sequence(lo: float, hi: float, step: float) -> list[float]:
    up = [lo]
    while up[-1] * step < hi:
        up.append(round(up[-1] * step, 4))
    up.append(hi)
    return up + up[-2::-1]


def centred_box(size: tuple[int, int]) -> tuple[int, int, int, int]:
    y0, x0 = max(0, (size[0] - VIEWPORT) // 2), max(0, (size[1] - VIEWPORT) // 2)
    return clip_box((y0, x0, y0 + VIEWPORT, x0 + VIEWPORT), size)  # type: ignore[return-value]


CLOCK = time.perf_counter  # --clock cpu: time.process_time


def best_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        times.append((CLOCK() - t0) * 1000.0)
    return min(times)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs per zoom step (minimum kept)")
    ap.add_argument("--step", type=float, default=1.03, help="zoom factor per wheel step")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--data", type=Path, default=SAMPLE)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--reference-steps", type=int, default=3, help="steps also timed with eager decode")
    ap.add_argument("--malloc", choices=("retain", "default"), default="retain")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time, a steadier estimate of an idle core's time with --threads 1 "
                    "on a loaded machine (with more threads it adds up the threads' time)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    retained = retain_freed_memory() if args.malloc == "retain" else False
    image, norm, where = real_slice(args.data, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        path, trained = meta_weights(args.weights, Path(tmp))
        up = Upscaler.load("meta_srgan", 2.0, weights=path, device="cpu")
        eager = Upscaler.load("meta_srgan", 2.0, weights=path, device="cpu", fast=False)
    engine = ZoomEngine(up)
    lo, hi = engine.sr_range

    engine.encode("slice", image, norm)  # warm-up (allocations, oneDNN primitives)
    encode_ms = best_ms(lambda: engine.encode("slice", image, norm), args.repeat)
    lr = torch.from_numpy(norm.forward(image))[None, None]
    with torch.inference_mode():
        eager_encode_ms = best_ms(lambda: eager.model.encode(lr), max(1, args.repeat - 1))
        trunk_ms = best_ms(lambda: engine.net.trunk(lr), args.repeat)

    steps = zoom_sequence(lo, hi, args.step)
    first_pass, second_pass, placeholder_ms, rows = [], [], [], []
    for i, s in enumerate(steps):
        size = output_size(args.size, args.size, s)
        box = centred_box(size)
        ms = best_ms(lambda s=s, box=box: engine.render("slice", s, box), args.repeat)
        ph = best_ms(lambda s=s, box=box: engine.placeholder(image, s, box), args.repeat)
        plan = engine.net.upscale.plan_for((args.size, args.size), s, box)
        (first_pass if i < len(steps) // 2 + 1 else second_pass).append(ms)
        placeholder_ms.append(ph)
        rows.append({"scale": s, "box": box, "render_ms": round(ms, 2), "placeholder_ms": round(ph, 2),
                     "method": plan.method, "classes": plan.classes, "group": plan.group})
    reference = []
    picks = np.linspace(0, len(steps) // 2, args.reference_steps).round().astype(int)
    for i in picks:
        s = steps[int(i)]
        box = centred_box(output_size(args.size, args.size, s))
        with torch.inference_mode():
            enc = eager.model.encode(lr)
            ms = best_ms(lambda s=s, box=box, enc=enc: eager.model.decode(enc, s, box), 1)
        reference.append({"scale": s, "box": box, "eager_decode_ms": round(ms, 1),
                          "fast_render_ms": rows[int(i)]["render_ms"]})
    renders = first_pass + second_pass
    result = {
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "clock": args.clock,
        "malloc_retain": retained,
        "torch": torch.__version__,
        "slice": where + f" padded to {args.size}x{args.size}",
        "weights": "trained" if trained else "untrained (random, shipped architecture)",
        "mixed_units": engine.net.upscale.n_mixed,
        "encode_ms": round(encode_ms, 1),
        "encode_trunk_ms": round(trunk_ms, 1),
        "encode_eager_trunk_ms": round(eager_encode_ms, 1),
        "viewport": VIEWPORT,
        "steps": len(steps),
        "render_p50_ms": round(percentile(renders, 50), 1),
        "render_p95_ms": round(percentile(renders, 95), 1),
        "render_first_pass_p95_ms": round(percentile(first_pass, 95), 1),
        "render_return_pass_p95_ms": round(percentile(second_pass, 95), 1),
        "placeholder_p95_ms": round(percentile(placeholder_ms, 95), 2),
        "slice_cache_mb": round(engine.nbytes / 2**20, 1),
        "reference": reference,
        "per_step": rows,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{result['slice']}; {result['weights']}; {args.threads} threads, {args.clock} clock, "
          f"torch {torch.__version__}, malloc retain {retained}")
    print(f"encode {result['encode_ms']} ms (trunk {result['encode_trunk_ms']} ms; eager trunk "
          f"{result['encode_eager_trunk_ms']} ms); cache {result['slice_cache_mb']} MB per slice; "
          f"{result['mixed_units']} mixed MLP units")
    print(f"render {VIEWPORT}^2 over {len(steps)} steps x{lo:g}->x{hi:g}->x{lo:g} (factor {args.step}): "
          f"p50 {result['render_p50_ms']} ms, p95 {result['render_p95_ms']} ms "
          f"(first pass p95 {result['render_first_pass_p95_ms']}, return p95 "
          f"{result['render_return_pass_p95_ms']}); placeholder p95 {result['placeholder_p95_ms']} ms")
    methods = statistics.multimode([r["method"] for r in rows])
    print(f"methods: {sum(r['method'] == 'gemm' for r in rows)} gemm, "
          f"{sum(r['method'] == 'pixelwise' for r in rows)} pixelwise (most: {methods})")
    for r in reference:
        print(f"  x{r['scale']:<7g} eager decode {r['eager_decode_ms']:9.1f} ms   "
              f"fast render {r['fast_render_ms']:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
