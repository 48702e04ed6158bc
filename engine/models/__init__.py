"""The network zoo. Every architecture module is imported explicitly so that it registers itself."""

from engine.models import (  # noqa: F401  (each import registers its network)
    bicubic,
    carn,
    edsr,
    fmen,
    meta_srgan,
    new_carn,
    srcnn,
    srcnn_ct,
    srgan,
    vdsr,
    wdsr,
)
from engine.models.registry import (
    ModelCard,
    build_model,
    count_parameters,
    get_card,
    model_names,
    register_model,
)

__all__ = ["ModelCard", "build_model", "count_parameters", "get_card", "model_names", "register_model"]
