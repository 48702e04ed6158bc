"""Slice jobs (no Qt): preview then final, aligned extents, visible bicubic fallback, cancel."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import Cancelled
from engine.io import load_volume
from medsr_viewer.model_cache import ModelCache
from medsr_viewer.pipeline import CurveRequest, SliceRequest, centre_out_order, curve_job, slice_job
from medsr_viewer.state import ENHANCE, SIMULATE, LoadedVolume


@pytest.fixture(scope="module")
def loaded(cspine):
    return LoadedVolume.prepare(load_volume(cspine))


def test_simulate_job_yields_preview_then_scored_final(loaded, carn_weights):
    req = SliceRequest(loaded.volume_id, 2, 38, "new_carn", 2.0, SIMULATE, weights=str(carn_weights))
    preview, final = list(slice_job(req, loaded, ModelCache()))
    assert not preview.final and "sr" not in preview.images
    assert final.final and set(final.images) == {"lr", "bicubic", "sr", "hr"}
    hr = final.images["hr"]
    assert final.images["sr"].image.shape == hr.image.shape
    assert final.images["lr"].image.shape == (hr.image.shape[0] // 2, hr.image.shape[1] // 2)
    assert all(layer.extent_mm == hr.extent_mm for layer in final.images.values())  # panels overlay
    assert set(final.errors) == {"bicubic", "sr"}
    assert final.scores["sr"] is not None and np.isfinite(final.scores["sr"].psnr)
    assert final.sr.weights_sha256 and not final.sr.fallback
    assert final.sr.headline.startswith("SR — not acquired")
    edges, counts = final.histogram
    assert len(edges) == 65 and set(counts) == {"bicubic", "sr"}


def test_enhance_job_goes_beyond_native_and_checks_consistency(loaded):
    req = SliceRequest(loaded.volume_id, 0, 20, "bicubic", 3.0, ENHANCE)
    *_, final = slice_job(req, loaded, ModelCache())
    inp = final.images["input"].image
    assert final.images["sr"].image.shape == (inp.shape[0] * 3, inp.shape[1] * 3)
    assert set(final.errors) == {"difference", "consistency"}
    assert final.errors["consistency"].image.shape[0] <= inp.shape[0]


def test_untrained_network_falls_back_to_bicubic_with_a_notice(loaded, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSR_RESOURCES", str(tmp_path))  # no shipped weights at all
    req = SliceRequest(loaded.volume_id, 2, 38, "edsr", 4.0, SIMULATE)
    *_, final = slice_job(req, loaded, ModelCache())
    assert final.sr.fallback
    assert "no trained weights for edsr x4" in final.sr.notice
    assert np.array_equal(final.images["sr"].image, final.images["bicubic"].image)
    assert final.sr.headline.startswith("SR unavailable")


def test_cancel_stops_between_steps(loaded):
    req = SliceRequest(loaded.volume_id, 2, 38, "bicubic", 2.0, SIMULATE)
    gen = slice_job(req, loaded, ModelCache(), cancel=lambda: True)
    with pytest.raises(Cancelled):
        next(gen)


def test_curve_job_scores_every_slice_from_the_centre(loaded):
    req = CurveRequest(loaded.volume_id, 0, "bicubic", 2.0, SIMULATE)
    points = list(curve_job(req, loaded, ModelCache(), order=centre_out_order(42, 21)))
    assert sorted(p.index for p in points) == list(range(42))
    assert points[0].index == 21
    scored = [p for p in points if p.sr is not None]
    assert scored and all(np.isfinite(p.sr.psnr) for p in scored)
