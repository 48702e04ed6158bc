"""Entry point: ``medsr-viewer [PATH]`` and ``python -m medsr_viewer``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from medsr_viewer.app import run

    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
