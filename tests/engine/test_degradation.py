import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.degradation import crop_for_scale, downscale, gaussian_kernel, lr_size, make_pair


@pytest.mark.parametrize("scale", [2, 3, 4, 2.5, 1.5])
def test_downscale_matches_torch_antialiased_bicubic(scale):
    rng = np.random.default_rng(0)
    hr = crop_for_scale(rng.random((120, 96), dtype=np.float32), scale)
    lr = downscale(hr, scale)
    h, w = lr_size(hr.shape[0], scale), lr_size(hr.shape[1], scale)
    ref = F.interpolate(torch.from_numpy(hr)[None, None], size=(h, w), mode="bicubic", antialias=True,
                        align_corners=False)[0, 0].numpy()
    assert lr.shape == (h, w)
    np.testing.assert_allclose(lr, ref, atol=1e-6)


def test_exact_lr_size_for_fractional_scales():
    assert lr_size(255, 2.5) == 102  # 102 * 2.5 == 255
    assert lr_size(96, 1.1) == 80  # 80 * 1.1 == 88: an exact multiple near 96/1.1
    assert lr_size(100, 3) == 33


def test_blur_is_normalised_gaussian_k3_sigma1():
    k = gaussian_kernel()
    assert k.shape == (3, 3)
    assert float(k.sum()) == pytest.approx(1.0)
    g = np.exp(-0.5)
    assert float(k[0, 1] / k[1, 1]) == pytest.approx(g, rel=1e-5)


def test_blur_keeps_constant_image_and_units():
    hr = np.full((64, 64), -1000.0, np.float32)  # CT air in HU
    lr = downscale(hr, 2, blur=True)
    np.testing.assert_allclose(lr, -1000.0, atol=1e-3)


def test_stack_and_pair_shapes():
    stack = np.zeros((3, 97, 64), np.float32)
    assert downscale(stack, 4).shape == (3, 24, 16)
    lr, hr = make_pair(stack[0], 4)
    assert hr.shape == (96, 64) and lr.shape == (24, 16)
