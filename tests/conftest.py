"""Shared fixtures: where the real data lives, and Qt offscreen for every viewer test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDSR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SAMPLE_VOLUME = REPO_ROOT / "resources" / "sample"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MRI/CT volumes beside the checkout (../shared/data); tests need them."""
    if not (SHARED_DATA / "MANIFEST.md").exists():
        pytest.fail(f"real test data not found at {SHARED_DATA} (set MEDSR_SHARED_DATA)")
    return SHARED_DATA
