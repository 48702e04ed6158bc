"""The network zoo. Every architecture module is imported explicitly so that it registers itself."""

from engine.models import bicubic  # noqa: F401  (registers "bicubic")
from engine.models.registry import (
    ModelCard,
    build_model,
    count_parameters,
    get_card,
    model_names,
    register_model,
)

__all__ = ["ModelCard", "build_model", "count_parameters", "get_card", "model_names", "register_model"]
