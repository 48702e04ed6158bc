import numpy as np
import pytest

from engine.metrics import absolute_error, error_histograms, foreground_mask, psnr, score_slice, ssim


def test_psnr_uses_the_given_data_range():
    hr = np.zeros((32, 32))
    sr = hr + 1.0
    assert psnr(sr, hr, data_range=10.0) == pytest.approx(20.0)
    assert psnr(sr, hr, data_range=100.0) == pytest.approx(40.0)


def test_ssim_identical_is_one():
    rng = np.random.default_rng(1)
    img = rng.random((48, 48))
    assert ssim(img, img, 1.0) == pytest.approx(1.0)


def test_foreground_mask_excludes_background_and_background_inflates_scores():
    hr = np.zeros((64, 64))
    hr[16:48, 16:48] = 100 + np.random.default_rng(2).random((32, 32)) * 50
    sr = hr.copy()
    sr[16:48, 16:48] += 5.0
    mask = foreground_mask(hr)
    assert mask[32, 32] and not mask[0, 0]
    s = score_slice(sr, hr, data_range=150.0)
    assert s.psnr > s.psnr_fg  # perfect background inflates the whole-slice score


def test_constant_slice_mask_is_all_true():
    assert foreground_mask(np.ones((8, 8))).all()


def test_error_histograms_share_bins():
    a, b = np.abs(np.random.default_rng(3).normal(size=(20, 20))), np.zeros((20, 20))
    maps = {"sr": absolute_error(a, b), "bicubic": absolute_error(2 * a, b)}
    edges, hists = error_histograms(maps, bins=10)
    assert len(edges) == 11 and hists["sr"].sum() == hists["bicubic"].sum() == 400
