"""Measure start-up of the frozen app (or of the source checkout) offscreen; prints a table.

    .venv/bin/python packaging/measure_startup.py dist/medsr-viewer/medsr-viewer --runs 5
    .venv/bin/python packaging/measure_startup.py --source --runs 5          # the same from source

Two measurements per run:
  window   ``--self-test --only gui``: seconds from process launch (the kernel's start time of the
           process, so the bootloader is included) until the main window is shown, and the CPU seconds
           the process had used by then (a figure that depends less on other load on the machine);
  sample   ``--screenshot OUT --timings``: the viewer's own start-up path on the bundled sample; the
           viewer reports window shown and first SR result in ms since its module was imported, and
           the wall time of the whole process (launch to exit, screenshot written) is added.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(exe: str | None) -> tuple[list[str], list[str]]:
    if exe is None:  # from source
        py = sys.executable
        return [py, "-m", "medsr_viewer.self_test"], [py, "-m", "medsr_viewer"]
    return [exe, "--self-test"], [exe]


def run_window(prefix: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [*prefix, "--only", "gui", "--show-ms", "0"], capture_output=True, text=True, timeout=300, cwd=ROOT
    ).stdout
    m = re.search(r"window visible ([\d.]+) s after launch \(CPU ([\d.]+) s\)", out)
    if not m:
        raise SystemExit(f"unexpected self-test output:\n{out}")
    return {"window_s": float(m.group(1)), "window_cpu_s": float(m.group(2))}


def run_sample(prefix: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = subprocess.run(
            [*prefix, "--screenshot", str(Path(tmp) / "shot.png"), "--timings"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        )
        wall = time.perf_counter() - t0
    found = dict(re.findall(r"(\w+_ms)=(\d+)", res.stderr))
    if res.returncode != 0 or "window_shown_ms" not in found:
        raise SystemExit(f"unexpected viewer output (exit {res.returncode}):\n{res.stderr[-2000:]}")
    row = {k.replace("_ms", "_s"): int(v) / 1000 for k, v in found.items()}
    row["process_wall_s"] = wall
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("exe", nargs="?", help="the frozen executable (dist/medsr-viewer/medsr-viewer)")
    p.add_argument("--source", action="store_true", help="measure the source checkout instead")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    if not args.source and not args.exe:
        p.error("give the frozen executable, or --source")
    self_test, viewer = commands(None if args.source else str(Path(args.exe).resolve()))
    rows = []
    for i in range(args.runs):
        rows.append({**run_window(self_test), **run_sample(viewer)})
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1].items()), flush=True)
    load = os.getloadavg()[0]
    print(f"\n{'measure':16s} {'median':>7s} {'min':>7s} {'max':>7s}   ({args.runs} runs, load {load:.1f})")
    for key in rows[0]:
        values = [r[key] for r in rows]
        print(f"{key:16s} {statistics.median(values):7.2f} {min(values):7.2f} {max(values):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
