"""The command line that starts the ``medsr`` CLI (e.g. a training process) from source or frozen app.

From a source checkout the CLI is a module of this interpreter; in the PyInstaller app there is no
separate Python, so the app's own executable serves it (``medsr-viewer medsr ...``, dispatched by
``packaging/entry.py``). Callers append the subcommand: ``medsr_command() + ["train", "--arch", ...]``.
"""

from __future__ import annotations

import sys


def is_frozen() -> bool:
    """True inside the PyInstaller app (``sys.frozen`` is set by its bootloader)."""
    return bool(getattr(sys, "frozen", False))


def medsr_command() -> list[str]:
    """argv prefix that runs ``medsr`` in a new process, in both worlds."""
    if is_frozen():
        return [sys.executable, "medsr"]
    return [sys.executable, "-m", "engine.cli"]


def training_command(*args: str) -> list[str]:
    """argv of ``medsr train ARGS...`` in a new process."""
    return [*medsr_command(), "train", *args]
