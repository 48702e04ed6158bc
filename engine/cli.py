"""``medsr``: list networks, upscale a volume, evaluate networks against bicubic, train.

Errors a user can cause print one line on stderr and exit with code 2; nothing partial is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from engine.errors import Cancelled, MedSRError
from engine.fast.allocator import retain_freed_memory

EXIT_USAGE = 2


def _progress_bar(total: int, desc: str):
    """A tqdm bar on a terminal, nothing otherwise (scripts and CI get clean output)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="slice", leave=False)


def cmd_models(args: argparse.Namespace) -> int:
    from engine.catalog import model_catalog

    rows = model_catalog()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':11s} {'scales':15s} {'params':>9s}  {'trained':8s} paper")
    for r in rows:
        trained = "n/a" if r["needs_weights"] is False else ("yes" if r["trained"] else "NO")
        print(f"{r['name']:11s} {r['scales_text']:15s} {r['parameters']:9d}  {trained:8s} {r['paper'][:70]}")
    return 0


def cmd_upscale(args: argparse.Namespace) -> int:
    from engine.export import export_volume
    from engine.inference import Progress, Upscaler, upscale_volume
    from engine.io import load_volume

    out = Path(args.output)
    if out.exists() and args.no_clobber:
        raise MedSRError("output exists (--no-clobber)", out)
    upscaler = Upscaler.load(args.model, args.scale, weights=args.weights, device=args.device)
    volume = load_volume(Path(args.input))
    for warning in volume.metadata.get("warnings", []):
        print(f"note: {warning}", file=sys.stderr)
    gen = upscale_volume(volume, upscaler, args.scale, plane=args.plane)
    bar = None
    while True:
        try:
            p: Progress = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if bar is None:
            bar = _progress_bar(p.total, f"{args.model} x{args.scale:g}")
        if bar is not None:
            bar.n = p.done
            bar.refresh()
    if bar is not None:
        bar.close()
    for note in upscaler.notes:
        print(f"note: {note}", file=sys.stderr)
    replacing = out.exists()
    export_volume(result, out, upscaler, args.scale, overwrite=not args.no_clobber)
    if replacing:
        print(f"note: replaced the previous {out}", file=sys.stderr)
    sp = ", ".join(f"{s:.4g}" for s in result.spacing)
    print(f"wrote {out} ({'x'.join(map(str, result.shape))}, spacing {sp} mm) — SR, not acquired data")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.evaluation import evaluate_many, results_markdown
    from engine.io import load_volume

    scales = [float(x) for x in str(args.scale).split(",") if x]
    volumes = [load_volume(Path(p)) for p in args.input]
    summary = evaluate_many(
        volumes, args.models, scales, slices=args.slices, blur=args.blur, plane=args.plane, device=args.device
    )
    if args.markdown:
        from engine.io.atomic import replace_file_atomically

        with replace_file_atomically(Path(args.markdown)) as tmp:
            tmp.write_text(results_markdown(summary, command=" ".join(["medsr", *sys.argv[1:]])))
    if args.json:
        print(json.dumps(summary.as_dict(), indent=1))
        return 0
    for note in summary.notes:
        print(f"note: {note}")
    print(
        "data range = HR max - min over the evaluated slices of each volume; ceil(scale) border pixels "
        f"cropped{'; LR blurred k3/sigma1' if args.blur else ''}"
    )
    print(
        f"{'scale':>5s} {'model':11s} {'PSNR':>7s} {'SSIM':>7s} {'PSNRfg':>7s} {'SSIMfg':>7s} {'gain_fg':>7s}"
        f" {'params':>9s} {'ms/slice':>9s}"
    )
    for row in summary.rows:
        print(
            f"{row.scale:5.2g} {row.model:11s} {row.psnr:7.2f} {row.ssim:7.4f} {row.psnr_fg:7.2f} "
            f"{row.ssim_fg:7.4f}"
            f" {row.gain_fg:+7.2f} {row.parameters:9d} {row.ms_per_slice:9.1f}"
        )
    return 0


def cmd_train(argv: Sequence[str]) -> int:
    from training.cli import main as train_main

    return train_main(list(argv))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medsr", description="MedSR: super-resolution for MRI and CT volumes")
    p.add_argument("--verbose", action="store_true", help="log details (and tracebacks) to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list every registered network")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)

    u = sub.add_parser("upscale", help="super-resolve a NIfTI file or DICOM series in-plane")
    u.add_argument("input")
    u.add_argument("-o", "--output", required=True, help=".nii/.nii.gz file, or a folder for a DICOM series")
    u.add_argument("--model", required=True)
    u.add_argument("--scale", type=float, required=True)
    u.add_argument("--weights", type=Path, default=None, help="weights file (default: the shipped ones)")
    u.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    u.add_argument(
        "--plane", default=None, help="axial, coronal, sagittal or 0/1/2 (default: acquisition plane)"
    )
    u.add_argument("--no-clobber", action="store_true", help="refuse to replace an existing output")
    u.add_argument("--overwrite", action="store_true", help="accepted for compatibility: outputs are "
                   "replaced atomically by default (a DICOM folder only if it holds nothing but .dcm files)")
    u.set_defaults(func=cmd_upscale)

    e = sub.add_parser("evaluate", help="simulate LR from volumes; PSNR/SSIM of networks vs bicubic")
    e.add_argument(
        "input", nargs="+", help="NIfTI files and/or DICOM folders (scores are averaged over them)"
    )
    e.add_argument(
        "--models",
        default="",
        help="comma-separated names, or 'all' for every trained network (bicubic is always included)",
    )
    e.add_argument("--scale", required=True, help="a scale or a comma list, e.g. 2 or 2,3,4,1.5")
    e.add_argument("--slices", type=int, default=8)
    e.add_argument(
        "--blur", action="store_true", help="add the Gaussian blur (k3, sigma 1) after downscaling"
    )
    e.add_argument("--plane", default=None)
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true")
    e.add_argument("--markdown", type=Path, default=None, help="also write a Table-1 style results file")
    e.set_defaults(func=cmd_evaluate)

    sub.add_parser("train", help="train a network (see `medsr train --help`)", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return _guarded(lambda: cmd_train(argv[1:]), verbose="--verbose" in argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:  # third-party logs and warnings: the engine reports what matters in one line
        warnings.simplefilter("ignore")
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda r: r.name.partition(".")[0] in ("engine", "training"))
    retain_freed_memory()  # large activations stay mapped between slices (see engine.fast.allocator)
    return _guarded(lambda: args.func(args), verbose=args.verbose)


def _guarded(fn, verbose: bool) -> int:
    try:
        return int(fn() or 0)
    except MedSRError as exc:
        print(f"medsr: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Cancelled:
        print("medsr: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("medsr: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("medsr: error: out of memory", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug, not a user error: one line unless --verbose
        if verbose:
            raise
        print(
            f"medsr: internal error: {type(exc).__name__}: {exc} (run with --verbose for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
