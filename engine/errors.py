"""User-facing errors: each names the file (or object) concerned and the reason in one line.

The CLI prints ``str(error)`` and exits with code 2; the viewer shows it in a dialog.
"""

from __future__ import annotations

from pathlib import Path


class MedSRError(Exception):
    """Base of every error a user can cause (bad file, bad option, untrained model)."""

    def __init__(self, reason: str, path: str | Path | None = None):
        self.reason = reason
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class VolumeReadError(MedSRError):
    """A file or folder could not be read as an image volume."""


class VolumeWriteError(MedSRError):
    """An output could not be written (exists, unwritable, unsupported format)."""


class WeightsError(MedSRError):
    """A weights file is missing, tampered with, or does not fit the requested network."""


class ModelError(MedSRError):
    """A network cannot serve the request (unknown name, scale out of range, untrained)."""


class Cancelled(Exception):
    """Raised inside long work when the caller asked to stop; not an error to report."""
