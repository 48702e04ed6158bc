"""Guess CT or MR for files that do not say (NIfTI); DICOM states its Modality.

Rule, in order:
1. the header description names it: a word ``CT`` -> CT; ``MR``/``MRI`` or a typical MR sequence
   word (T1, T2, FLAIR, PD, DWI, EPI, MPRAGE, TE=) -> MR;
2. the values look like Hounsfield units: minimum below -500 (air is about -1000) and maximum
   above 300 (bone) -> CT;
3. a constant or empty-valued volume -> "unknown";
4. anything else -> MR (the common case for non-CT research volumes).
"""

from __future__ import annotations

import re

import numpy as np

_CT_WORDS = re.compile(r"(?<![A-Za-z])CT(?![A-Za-z])")
_MR_WORDS = re.compile(
    r"(?<![A-Za-z])(MRI?|T1W?|T2W?|T2\*|FLAIR|PDW?|DWI|EPI|MPRAGE|TSE|FSE|BOLD)(?![A-Za-z])|TE=",
    re.IGNORECASE,
)


def guess_modality(description: str, data: np.ndarray) -> str:
    """"CT", "MR" or "unknown" for a volume whose file does not state its modality."""
    if _CT_WORDS.search(description):
        return "CT"
    if _MR_WORDS.search(description):
        return "MR"
    if data.size == 0:
        return "unknown"
    lo, hi = float(np.min(data)), float(np.max(data))
    if lo == hi:
        return "unknown"
    if lo < -500.0 and hi > 300.0:
        return "CT"
    return "MR"


def dicom_modality(value: object) -> str:
    """Map a DICOM Modality tag to the ``Volume.modality`` vocabulary."""
    text = str(value or "").strip().upper()
    return text if text in ("CT", "MR") else "unknown"
