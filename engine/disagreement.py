"""Where networks disagree: run several on one slice and map the per-pixel spread of their outputs.

Networks that agree may still all be wrong, but where they differ at least one of them is inventing
detail the input does not determine; the spread map shows a reader where to distrust SR.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from engine.errors import Cancelled, ModelError
from engine.inference import Upscaler
from engine.normalization import Normalizer

log = logging.getLogger(__name__)


def disagreement_map(
    upscalers: Sequence[Upscaler],
    image2d: np.ndarray,
    scale: float,
    normalizer: Normalizer | None = None,
    *,
    cancel: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-pixel standard deviation across the networks' SR of ``image2d``, in the image's units.

    Returns ``(spread_map, per_model_outputs)``: the (H, W) population standard deviation and each
    serving network's SR keyed by its label (model and weights hash). Networks that cannot serve
    ``scale`` are skipped with a logged warning; fewer than two serving ones raise ``ModelError``.
    ``normalizer`` should be the volume's (default: fitted on this slice), so every network sees the
    same intensities it would in the volume.
    """
    image = np.asarray(image2d, dtype=np.float32)
    if image.ndim != 2:
        raise ModelError(f"disagreement needs one 2D slice, got an array of shape {image.shape}")
    norm = normalizer or Normalizer.fit(image)
    outputs: dict[str, np.ndarray] = {}
    for upscaler in upscalers:
        try:
            upscaler.check_scale(scale)
        except ModelError as exc:
            log.warning("disagreement map: %s skipped (%s)", upscaler.label, exc)
            continue
        if cancel is not None and cancel():
            raise Cancelled()
        outputs[_unique_label(upscaler.label, outputs)] = upscaler.upscale_slice(image, scale, norm)
    if len(outputs) < 2:
        raise ModelError(
            f"a disagreement map needs at least two networks that serve x{scale:g}; "
            f"{len(outputs)} of {len(upscalers)} do"
        )
    stack = np.stack([o.astype(np.float64) for o in outputs.values()])
    spread = stack.std(axis=0).astype(np.float32)
    return spread, outputs


def _unique_label(label: str, taken: dict[str, np.ndarray]) -> str:
    """The label, numbered when two networks share it (same model and weights loaded twice)."""
    if label not in taken:
        return label
    n = 2
    while f"{label} #{n}" in taken:
        n += 1
    return f"{label} #{n}"
