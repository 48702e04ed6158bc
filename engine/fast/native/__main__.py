"""`python -m engine.fast.native`: build the native kernels (``make setup`` runs this). A machine
without a C compiler keeps the torch path: this prints why and exits 0 unless --strict."""

from __future__ import annotations

import argparse
import subprocess
import sys

from engine.fast.native import available, build


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strict", action="store_true", help="exit 1 if the kernels cannot be built")
    args = ap.parse_args()
    try:
        path = build()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"native kernels not built ({exc}); the torch path is used", file=sys.stderr)
        return 1 if args.strict else 0
    print(f"built {path}; {'in use' if available() else 'not usable on this CPU: the torch path is used'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
