"""Training checkpoints without pickle: tensors in safetensors, everything else as JSON metadata.

A checkpoint holds the model(s), optimizer(s), scheduler(s), step, elapsed time and every RNG state,
so ``--resume`` continues exactly. Nested state (optimizer dicts with integer keys, tuples) is encoded
as tagged JSON with tensor placeholders; loading never runs code from the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.errors import MedSRError
from engine.io.atomic import replace_file_atomically

FORMAT = "medsr-checkpoint/1"


def _encode(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode_key(k), _encode(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint value of type {type(obj).__name__} at {prefix}")


def _encode_key(k: Any) -> Any:
    if isinstance(k, (int, str)):
        return k
    raise TypeError(f"unsupported dict key {k!r}")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        raise ValueError("unknown tagged object in checkpoint")
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts of tensors and plain values) atomically."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, "s", tensors)
    meta = {"format": FORMAT, "tree": json.dumps(tree)}
    with replace_file_atomically(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MedSRError("checkpoint not found", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise MedSRError("not a MedSR training checkpoint", path)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return _decode(json.loads(meta["tree"]), tensors)
    except MedSRError:
        raise
    except Exception as exc:
        raise MedSRError(f"checkpoint unreadable ({str(exc).splitlines()[0][:120]})", path) from None
