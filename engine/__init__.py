"""MedSR engine: volumes, degradations, SR networks, inference and metrics. No Qt here."""

from engine.errors import MedSRError

__all__ = ["MedSRError"]
