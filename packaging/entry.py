"""Entry point of the frozen app: one executable serves the viewer, the ``medsr`` CLI and training.

    medsr-viewer [PATH] [GUI options]      the viewer (medsr_viewer.app.run), argv passed through
    medsr-viewer --self-test [options]     headless check of the installed app (medsr_viewer.self_test)
    medsr-viewer medsr COMMAND ...         the ``medsr`` CLI (engine.cli.main): models, upscale, ...
    medsr-viewer train ... | --train ...   ``medsr train ...`` (the viewer starts training this way,
                                           see engine.launch.medsr_command)

It also runs from source (``python packaging/entry.py ...``), which is how its dispatch is tested.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable


def _ensure_std_streams() -> None:
    """A windowed app on Windows/macOS may have no stdout/stderr; give prints and logging a sink."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 (process lifetime)


def dispatch(argv: list[str]) -> tuple[str, Callable[[], int]]:
    """(what, how to run it) for ``argv`` (without the program name)."""
    head = argv[0] if argv else ""
    if head in ("train", "--train"):
        rest = ["train", *argv[1:]]

        def run() -> int:
            from engine.cli import main

            return main(rest)

        return "train", run
    if head == "medsr":

        def run() -> int:
            from engine.cli import main

            return main(argv[1:])

        return "medsr", run
    if head == "--self-test":

        def run() -> int:
            from medsr_viewer.self_test import main

            return main(argv[1:])

        return "self-test", run

    def run() -> int:
        from medsr_viewer.app import run as gui

        return gui(argv)

    return "gui", run


def main() -> int:
    multiprocessing.freeze_support()  # a frozen child process started by multiprocessing stops here
    _ensure_std_streams()
    _what, run = dispatch(sys.argv[1:])
    return int(run() or 0)


if __name__ == "__main__":
    sys.exit(main())
