"""What the model picker says about each network: card text, weights present or not (no Qt).

Besides the shipped weights, the picker lists the user's own: weights files trained in the viewer
(Tools › Train network) and kept in ``engine.resources.user_weights_dir()``, each with its card.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import WeightsError
from engine.models import get_card, model_names
from engine.models.registry import get_entry
from engine.resources import user_weights_dir
from engine.weights import read_metadata, shipped_weights_path

log = logging.getLogger(__name__)

FIXED_SCALES = (2.0, 3.0, 4.0)
CONTINUOUS_RANGE = (1.1, 4.0)


def needs_weights(name: str) -> bool:
    return bool(getattr(get_entry(name).cls, "needs_weights", True))


def has_weights(name: str, scale: float | None = None, user_weights: dict[str, str] | None = None) -> bool:
    """Whether ``name`` can run at ``scale`` (any served scale if None) with weights on disk."""
    if not needs_weights(name) or (user_weights and name in user_weights):
        return True
    card = get_card(name)
    if card.arbitrary_scale:
        return shipped_weights_path(name, None).exists()
    scales = [scale] if scale is not None else list(card.scales)
    return any(shipped_weights_path(name, s).exists() for s in scales)


def picker_names() -> list[str]:
    """Every registered network, bicubic last (it is the baseline, not an SR network)."""
    names = model_names()
    return [n for n in names if n != "bicubic"] + [n for n in names if n == "bicubic"]


def scale_choices(name: str) -> tuple[tuple[float, ...], tuple[float, float] | None]:
    """(fixed scales offered, continuous range or None) for the scale picker."""
    card = get_card(name)
    if card.arbitrary_scale:
        lo, hi = card.scale_range
        return (), (max(lo, CONTINUOUS_RANGE[0]), min(hi, CONTINUOUS_RANGE[1]))
    return tuple(s for s in card.scales if s in FIXED_SCALES) or tuple(card.scales), None


def card_html(name: str, catalog_row: dict[str, Any] | None = None, user_weights: str | None = None) -> str:
    """The model card as rich text for a tooltip or the inspector."""
    card = get_card(name)
    e = html.escape
    rows = [f"<b>{e(card.title)}</b> ({e(name)})", f"<i>{e(card.paper)}</i>"]
    if card.scale_range:
        rows.append(f"Scales: continuous {card.scale_range[0]:g}–{card.scale_range[1]:g}")
    else:
        rows.append("Scales: " + ", ".join(f"×{s:g}" for s in card.scales))
    if catalog_row is not None:
        params = catalog_row.get("parameters")
        if params is not None:
            paper = catalog_row.get("paper_params") or ""
            rows.append(f"Parameters: {params:,}" + (f" (paper: {e(paper)})" if paper else ""))
    if not needs_weights(name):
        rows.append("No learnt weights (the baseline).")
    elif user_weights:
        mine = read_user_weights(Path(user_weights))
        rows.append(user_weights_html(mine) if mine else f"Weights: {e(user_weights)} (chosen by you)")
    else:
        present = []
        missing = []
        keys = [None] if card.arbitrary_scale else list(card.scales)
        for s in keys:
            path = shipped_weights_path(name, s)
            (present if path.exists() else missing).append(path.name)
        if present:
            rows.append("Trained weights: " + e(", ".join(present)))
        if missing:
            rows.append("<span style='color:#ff9f1c'>Untrained: " + e(", ".join(missing)) + " missing</span>")
    if card.departures:
        rows.append("Our version: " + e(card.departures))
    return "<br>".join(rows)


@dataclass(frozen=True)
class UserWeights:
    """A weights file of the user's own (trained in the viewer, or chosen with Use weights file)."""

    path: Path
    arch: str
    scale: float | None
    sha256: str
    card: dict[str, Any] = field(default_factory=dict)
    modified: float = 0.0  # file time, seconds since the epoch

    @property
    def trained_here(self) -> bool:
        """True for files in the user's weights folder (what the viewer's training writes)."""
        return self.path.resolve().parent == user_weights_dir().resolve()

    @property
    def label(self) -> str:
        """The picker entry: network, scale, and whose weights."""
        scale = f" ×{self.scale:g}" if self.scale is not None else ""
        if self.trained_here:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.modified))
            return f"{self.arch}{scale} · yours, {when}"
        return f"{self.arch}{scale} · {self.path.name}"

    def validation_text(self) -> str:
        """``×2: 31.20 dB (+0.85 vs bicubic), SSIM 0.912`` from the card, or empty."""
        parts = []
        for s, v in (self.card.get("validation") or {}).items():
            try:
                parts.append(
                    f"×{s}: {v['psnr_fg']:.2f} dB ({v['gain_db']:+.2f} vs bicubic), SSIM {v['ssim_fg']:.3f}"
                )
            except (KeyError, TypeError, ValueError):
                continue
        return "; ".join(parts)


_scanned: dict[Path, tuple[tuple[int, int], UserWeights | None]] = {}


def read_user_weights(path: Path) -> UserWeights | None:
    """The weights file's metadata (cached until the file changes); None, with a log line, if refused."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    cached = _scanned.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        meta = read_metadata(path)
        item = UserWeights(path, meta["arch"], meta["scale"], meta["sha256"], meta["card"], st.st_mtime)
        if meta["arch"] not in model_names():
            log.warning("%s: weights of an unknown network %r; not listed", path, meta["arch"])
            item = None
    except WeightsError as exc:
        log.warning("not listed in the model picker: %s", exc)
        item = None
    _scanned[path] = (key, item)
    return item


def list_user_weights(extra: list[str] | tuple[str, ...] = ()) -> list[UserWeights]:
    """The user's weights files (newest first), plus ``extra`` files chosen elsewhere."""
    folder = user_weights_dir()
    paths = []
    if folder.is_dir():
        paths = [p for p in folder.glob("*.safetensors") if not p.name.endswith(".ckpt.safetensors")]
    items = [w for w in map(read_user_weights, paths) if w is not None]
    items.sort(key=lambda w: w.modified, reverse=True)
    known = {w.path.resolve() for w in items}
    for p in extra:
        if Path(p).resolve() not in known:
            w = read_user_weights(Path(p))
            if w is not None:
                items.append(w)
                known.add(w.path.resolve())
    return items


def user_weights_html(w: UserWeights) -> str:
    """The card of a user's weights file, for the picker's tooltip and the inspector."""
    e = html.escape
    c = w.card
    whose = "Your weights" if w.trained_here else "Weights chosen by you"
    rows = [f"<b>{whose}</b>: {e(w.path.name)}"]
    if c.get("steps") is not None:
        minutes = float(c.get("train_seconds") or 0) / 60
        rows.append(f"Trained {c['steps']} steps in {minutes:.1f} min on {e(str(c.get('device', '?')))}")
    init = (c.get("recipe") or {}).get("init")
    rows.append(f"Started from: {e(Path(init).name)}" if init else "Started from scratch")
    if c.get("data"):
        names = [Path(p).name for p in c["data"]]
        rows.append(
            "Data: " + e(", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else ""))
        )
    val = w.validation_text()
    if val:
        held = c.get("validation_data") or []
        where = ", ".join(Path(p).name for p in held[:2]) if held else "?"
        rows.append(f"Validation ({e(where)}): {e(val)}")
    rows.append(f"sha256 {e(w.sha256[:16])}…")
    return "<br>".join(rows)
