"""Help › About: what the viewer is, that its SR output is not for primary diagnosis, and what it ships.

Lists every network with its paper, the weights files found (with their sha256, read from each
file's header only: no tensors are loaded) and the licence of the bundled sample volume.
"""

from __future__ import annotations

import html
import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from engine.errors import WeightsError
from engine.export import DISCLAIMER
from engine.models import get_card, model_names
from engine.models.registry import get_entry
from engine.resources import resources_dir, sample_volume_path
from engine.weights import read_metadata, shipped_weights_path
from medsr_viewer.logging_setup import current_log_file

NOT_FOR_DIAGNOSIS = (
    "MedSR Viewer is a research and teaching tool. Its super-resolved (SR) images are computed by "
    "neural networks: they can invent detail that was never acquired, or remove detail that was. "
    "They are not for primary diagnosis. Every SR panel, screenshot and export is labelled with the "
    "network, the scale and the sha256 of its weights."
)


@dataclass(frozen=True)
class WeightsRow:
    """One weights file of a network: where it is, and its sha256 (or why it cannot be read)."""

    scale: str
    file: str
    sha256: str = ""
    problem: str = ""


def weights_rows(name: str, user_weights: str | None = None) -> list[WeightsRow]:
    """The weights files of ``name`` (the user's choice first), present or missing."""
    if not getattr(get_entry(name).cls, "needs_weights", True):
        return []
    card = get_card(name)
    paths: list[tuple[str, Path]] = []
    if user_weights:
        paths.append(("chosen", Path(user_weights)))
    for s in [None] if card.arbitrary_scale else card.scales:
        paths.append(("any" if s is None else f"×{s:g}", shipped_weights_path(name, s)))
    rows = []
    for scale, path in paths:
        if not path.exists():
            rows.append(WeightsRow(scale, path.name, problem="not trained yet"))
            continue
        try:
            rows.append(WeightsRow(scale, path.name, read_metadata(path)["sha256"]))
        except WeightsError as exc:
            rows.append(WeightsRow(scale, path.name, problem=exc.reason))
    return rows


def sample_licence() -> str:
    """The licence sentence of the bundled sample's README (e.g. "Licence: MIT (...)")."""
    readme = resources_dir() / "sample" / "README.md"
    try:
        text = " ".join(readme.read_text(encoding="utf-8").split())
    except OSError:
        return "see resources/sample/README.md"
    found = re.search(r"Licen[cs]e:[^.]*\.", text)
    return found.group(0) if found else "see resources/sample/README.md"


def app_version() -> tuple[str, str]:
    """(version, licence) of the installed package, or placeholders in a bare checkout."""
    try:
        meta = importlib.metadata.metadata("medsr-viewer")
        return meta["Version"] or "?", meta["License"] or "?"
    except importlib.metadata.PackageNotFoundError:
        return "?", "?"


def about_html(user_weights: dict[str, str] | None = None) -> str:
    """The About text: the warning first, then networks, papers, weights hashes, the sample's licence."""
    e = html.escape
    version, licence = app_version()
    user_weights = user_weights or {}
    rows = []
    for name in model_names():
        card = get_card(name)
        weights = weights_rows(name, user_weights.get(name))
        if not weights:
            cell = "no learnt weights (the baseline)"
        else:
            cell = "<br>".join(
                f"{e(w.scale)} <code>{e(w.sha256[:16])}</code>"
                if w.sha256
                else f"{e(w.scale)} <span style='color:#9aa0a6'>{e(w.problem)}</span>"
                for w in weights
            )
        rows.append(
            f"<tr><td><b>{e(name)}</b><br><span style='color:#9aa0a6'>{e(card.title)}</span></td>"
            f"<td>{e(card.paper)}</td><td>{cell}</td></tr>"
        )
    sample = sample_volume_path()
    log_file = current_log_file()
    return (
        f"<h2>MedSR Viewer {e(version)}</h2>"
        "<p>Compare deep-learning super-resolution (SR) with bicubic interpolation on MRI and CT.</p>"
        f"<p style='color:#ff9f1c'><b>Not for primary diagnosis.</b> {e(NOT_FOR_DIAGNOSIS)}</p>"
        f"<p>Every exported PNG and volume carries: <i>{e(DISCLAIMER)}</i></p>"
        "<h3>Bundled sample</h3>"
        f"<p><code>{e(sample.name)}</code>: a real clinical T1-weighted head MRI. {e(sample_licence())} "
        "Source and details: <code>resources/sample/README.md</code>.</p>"
        "<h3>This software</h3>"
        f"<p>Licence: {e(licence)}. Log file: <code>{e(str(log_file) if log_file else 'none')}</code></p>"
        "<h3>Networks</h3>"
        "<p>Weights are safetensors files (no code runs on loading); each hash below is the sha256 "
        "over the file's tensors, checked every time it is loaded and written into every export.</p>"
        "<table cellspacing='0' cellpadding='4' border='1'>"
        "<tr><th>Network</th><th>Paper</th><th>Weights sha256 (first 16 hex digits)</th></tr>"
        + "".join(rows)
        + "</table>"
    )


class AboutDialog(QDialog):
    """Help › About, as scrollable rich text with one OK button."""

    def __init__(self, user_weights: dict[str, str] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle("About MedSR Viewer")
        self.text = QTextBrowser()
        self.text.setObjectName("aboutText")
        self.text.setOpenExternalLinks(False)
        self.text.setHtml(about_html(user_weights))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        lay.addWidget(buttons, 0, Qt.AlignmentFlag.AlignRight)
        self.resize(860, 640)
