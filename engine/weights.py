"""Self-describing weights: safetensors tensors + JSON metadata (architecture, arguments, card, sha256).

Any weights file rebuilds its network alone (LIIF's checkpoint idea) and loading never unpickles:
safetensors holds raw tensors only. The sha256 is taken over the tensors (names, dtypes, shapes,
bytes) and stored in the metadata, so a tampered or truncated file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from engine.errors import WeightsError
from engine.io.atomic import replace_file_atomically
from engine.models import build_model, get_card
from engine.resources import shipped_weights_dir

FORMAT = "medsr-weights/1"


@dataclass
class LoadedWeights:
    """A network rebuilt from a weights file, with what the file says about itself."""

    model: nn.Module
    arch: str
    args: dict[str, Any]
    scale: float | None  # None for arbitrary-scale networks
    card: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: Path | None = None


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_weights(
    model: nn.Module,
    path: Path,
    *,
    arch: str,
    args: dict[str, Any],
    scale: float | None,
    card: dict[str, Any] | None = None,
) -> str:
    """Write ``model``'s tensors and metadata atomically; returns the sha256 stored in the card."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    digest = tensors_sha256(tensors)
    full_card = dict(card or {})
    full_card["sha256"] = digest
    meta = {
        "format": FORMAT,
        "arch": arch,
        "args": json.dumps(args, sort_keys=True),
        "scale": "" if scale is None else repr(float(scale)),
        "card": json.dumps(full_card, sort_keys=True),
        "sha256": digest,
    }
    path = Path(path)
    with replace_file_atomically(path) as tmp:
        mode = tmp.stat().st_mode  # the user's umask; safetensors would leave the file owner-only (0600)
        save_file(tensors, str(tmp), metadata=meta)
        os.chmod(tmp, mode)
    return digest


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a weights file (no tensors loaded); raises WeightsError if it is not ours."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError("weights file not found", path)
    if path.suffix != ".safetensors":
        raise WeightsError("only .safetensors weights are accepted (no pickle files)", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise WeightsError(f"not a readable safetensors file ({_short(exc)})", path) from None
    if meta.get("format") != FORMAT:
        raise WeightsError("not a MedSR weights file (no medsr metadata)", path)
    try:
        out = {
            "arch": meta["arch"],
            "args": json.loads(meta["args"]),
            "scale": float(meta["scale"]) if meta.get("scale") else None,
            "card": json.loads(meta.get("card", "{}")),
            "sha256": meta["sha256"],
        }
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"damaged metadata ({_short(exc)})", path) from None
    if not isinstance(out["card"], dict) or not isinstance(out["args"], dict):
        raise WeightsError("damaged metadata (card and arguments must be JSON objects)", path)
    card_sha = out["card"].get("sha256")
    if card_sha is not None and card_sha != out["sha256"]:
        # The card is what readers see (and what exports cite): it must name these tensors.
        raise WeightsError("sha256 mismatch: the model card names other weights than the file holds", path)
    return out


def load_weights(
    path: Path, *, expected_arch: str | None = None, expected_scale: float | None = None
) -> LoadedWeights:
    """Rebuild the network a weights file describes, after checking its sha256 and fit."""
    path = Path(path)
    meta = read_metadata(path)
    arch, scale = meta["arch"], meta["scale"]
    if expected_arch is not None and arch != expected_arch:
        raise WeightsError(f"holds {arch} weights, not {expected_arch}", path)
    if expected_scale is not None and scale is not None and abs(scale - expected_scale) > 1e-6:
        raise WeightsError(f"trained for x{scale:g}, not x{expected_scale:g}", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise WeightsError(f"tensors unreadable ({_short(exc)})", path) from None
    if tensors_sha256(tensors) != meta["sha256"]:
        raise WeightsError("sha256 mismatch: the file was modified or damaged", path)
    try:
        model = build_model(arch, scale, **meta["args"])
        model.load_state_dict(tensors, strict=True)
    except Exception as exc:
        raise WeightsError(f"does not fit the {arch} network ({_short(exc)})", path) from None
    model.eval()
    return LoadedWeights(model, arch, meta["args"], scale, meta["card"], meta["sha256"], path)


def shipped_weights_path(name: str, scale: float | None) -> Path:
    """Where the shipped weights of ``name`` at ``scale`` live (whether or not they exist)."""
    if get_card(name).arbitrary_scale:
        return shipped_weights_dir() / f"{name}.safetensors"
    return shipped_weights_dir() / f"{name}_x{float(scale):g}.safetensors"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
