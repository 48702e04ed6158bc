"""Write an SR volume so it can never pass for acquired data: provenance in the file and beside it."""

from __future__ import annotations

import json
from pathlib import Path

from engine.inference import Upscaler
from engine.io import save_volume
from engine.io.atomic import atomic_output
from engine.volume import Volume

DISCLAIMER = (
    "Super-resolved (SR) image computed by a neural network: not acquired data, not for primary diagnosis."
)


def provenance(upscaler: Upscaler, scale: float) -> dict:
    return {
        "model": upscaler.name,
        "scale": float(scale),
        "weights_sha256": upscaler.weights_sha256,
        "weights_file": upscaler.weights_path.name if upscaler.weights_path else None,
        "paper": upscaler.card.paper,
        "disclaimer": DISCLAIMER,
    }


def derivation_text(upscaler: Upscaler, scale: float) -> str:
    sha = upscaler.weights_sha256[:16] if upscaler.weights_sha256 else "none"
    return f"MedSR super-resolution {upscaler.name} x{scale:g}, weights sha256 {sha}; not acquired data"


def is_nifti_path(path: Path) -> bool:
    return path.name.endswith(".nii") or path.name.endswith(".nii.gz")


def export_volume(
    volume: Volume, out: Path, upscaler: Upscaler, scale: float, *, overwrite: bool = False
) -> None:
    """NIfTI (+ JSON sidecar with the provenance) or a DICOM derived series, written atomically."""
    out = Path(out)
    desc = f"SR {upscaler.name} x{scale:g}"
    derivation = derivation_text(upscaler, scale)
    if not is_nifti_path(out):
        save_volume(volume, out, description=desc, derivation=derivation, overwrite=overwrite)
        return
    # The sidecar is staged first and committed only after the image: an image never sits beside
    # another export's provenance, and a failed image write leaves no new sidecar behind.
    sidecar = out.with_name(out.name.removesuffix(".gz").removesuffix(".nii") + ".json")
    with atomic_output(sidecar, folder=False, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(provenance(upscaler, scale), indent=1))
        save_volume(volume, out, description=desc, derivation=derivation, overwrite=overwrite)
