"""Where bundled resources and the user's own files live (source checkout or frozen app)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    """``resources/`` beside the packages, or inside the PyInstaller bundle when frozen."""
    override = os.environ.get("MEDSR_RESOURCES")
    if override:
        return Path(override)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def shipped_weights_dir() -> Path:
    return resources_dir() / "weights"


def sample_volume_path() -> Path:
    """The bundled real scan the viewer opens when started without a path."""
    folder = resources_dir() / "sample"
    for candidate in sorted(folder.glob("*.nii*")):
        return candidate
    return folder


def user_data_dir() -> Path:
    """Per-user writable folder (XDG on Linux): trained weights, logs, settings."""
    override = os.environ.get("MEDSR_USER_DIR")
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "medsr-viewer"


def user_weights_dir() -> Path:
    return user_data_dir() / "weights"
