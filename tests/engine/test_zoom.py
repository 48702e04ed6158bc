"""ZoomEngine: a rendered region equals the same crop of the whole Meta-SRGAN output, in original units;
outside the trained range it says what it did; the slice cache is a bounded LRU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.errors import ModelError
from engine.inference import Upscaler
from engine.models import build_model
from engine.models.registry import bicubic_upsample, output_size
from engine.normalization import Normalizer
from engine.weights import save_weights
from engine.zoom import ZoomEngine, ZoomResult, clip_box
from tests.engine.test_fast_paths import randomise

ARGS = {"blocks": 2, "width": 16}
H, W = 37, 45


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoom") / "meta_srgan.safetensors"
    save_weights(randomise(build_model("meta_srgan", **ARGS), seed=5), path, arch="meta_srgan", args=ARGS,
                 scale=None)
    return path


@pytest.fixture(scope="module")
def upscalers(weights):
    fast = Upscaler.load("meta_srgan", 2.0, weights=weights, device="cpu")
    eager = Upscaler.load("meta_srgan", 2.0, weights=weights, device="cpu", fast=False)
    return fast, eager


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    return (200 * np.sin(yy / 4.0) * np.cos(xx / 5.0) + 300 * rng.random((H, W)) - 1000).astype(np.float32)


@pytest.fixture(scope="module")
def engine(upscalers, image):
    engine = ZoomEngine(upscalers[0], capacity=3)
    engine.encode(("vol", 2, 7), image, Normalizer.fit(image))
    return engine


def _boxes(size):
    h, w = size
    return [(0, 0, h, w), (0, 0, 9, 13), (h - 7, w - 11, h, w), (5, 3, h - 4, w // 2 + 1), (0, w - 1, h, w)]


@pytest.mark.parametrize("scale", [1.1, 1.5, 2.0, 2.37, 3.0, 3.3, 4.0])
def test_render_equals_crop_of_full_decode(engine, upscalers, image, scale):
    norm = Normalizer.fit(image)
    full = upscalers[1].upscale_slice(image, scale, norm)  # eager MetaSRGAN.decode, original units
    assert full.shape == output_size(H, W, scale) == engine.output_shape(("vol", 2, 7), scale)
    for box in _boxes(full.shape):
        y0, x0, y1, x1 = box
        result = engine.render(("vol", 2, 7), scale, box)
        assert (result.source, result.note, result.box, result.scale) == ("sr", "", box, scale)
        assert result.image.dtype == np.float32 and result.image.shape == (y1 - y0, x1 - x0)
        np.testing.assert_allclose(result.image, full[y0:y1, x0:x1], atol=1e-4 * norm.span, rtol=0)


@pytest.mark.parametrize("scale", [2.0, 2.37])
def test_both_decode_methods_render_the_same(engine, scale):
    size = engine.output_shape(("vol", 2, 7), scale)
    box = (2, 3, size[0] - 1, size[1] - 5)
    gemm = engine.render(("vol", 2, 7), scale, box, method="gemm").image
    pixelwise = engine.render(("vol", 2, 7), scale, box, method="pixelwise").image
    np.testing.assert_allclose(gemm, pixelwise, atol=1e-4 * 1000, rtol=0)


@pytest.mark.parametrize("scale", [4.5, 6.0])
def test_beyond_trained_range_is_sr_then_bicubic_and_says_so(engine, upscalers, image, scale):
    norm = Normalizer.fit(image)
    sr4 = torch.from_numpy(upscalers[1].upscale_slice(image, 4.0, norm))[None, None]
    size = output_size(H, W, scale)
    expected = bicubic_upsample(sr4, size)[0, 0].numpy()
    for y0, x0, y1, x1 in [(0, 0, *size), (10, 20, size[0] - 3, size[1] - 30)]:
        result = engine.render(("vol", 2, 7), scale, (y0, x0, y1, x1))
        assert result.source == "sr+bicubic"
        assert result.note == f"beyond trained range: SR x4 + bicubic x{scale / 4:.3g}"
        # torch's bicubic computes coordinates in float32 (1e-5 relative), ours exactly
        np.testing.assert_allclose(result.image, expected[y0:y1, x0:x1], atol=1e-4 * norm.span, rtol=0)


def test_below_trained_range_is_bicubic_and_says_so(engine, image):
    result = engine.render(("vol", 2, 7), 1.05, (0, 0, 20, 30))
    assert result.source == "bicubic" and "below trained range" in result.note
    size = output_size(H, W, 1.05)
    expected = bicubic_upsample(torch.from_numpy(image)[None, None], size)[0, 0].numpy()[:20, :30]
    np.testing.assert_allclose(result.image, expected, atol=0.05, rtol=0)


def test_placeholder_equals_bicubic_crop(engine, image):
    for scale in (1.3, 2.0, 3.7, 6.0):
        size = output_size(H, W, scale)
        full = bicubic_upsample(torch.from_numpy(image)[None, None], size)[0, 0].numpy()
        box = (1, 2, size[0] - 3, size[1])
        result = engine.placeholder(image, scale, box)
        assert result.source == "bicubic" and result.box == box
        np.testing.assert_allclose(result.image, full[1:-3, 2:], atol=0.05, rtol=0)  # 5e-5 of the range


def test_lru_evicts_the_least_recently_used_slice(upscalers, image):
    engine = ZoomEngine(upscalers[0], capacity=2)
    for key in ("a", "b"):
        engine.encode(key, image)
    engine.render("a", 2.0, (0, 0, 8, 8))  # "a" is now the most recent
    engine.encode("c", image + 1)
    assert engine.keys() == ["a", "c"] and "b" not in engine
    with pytest.raises(LookupError, match="not encoded"):
        engine.render("b", 2.0, (0, 0, 8, 8))
    assert engine.nbytes > 0
    engine.forget("a")
    assert engine.keys() == ["c"]
    engine.clear()
    assert engine.keys() == []


def test_an_encode_on_more_threads_gives_the_same_maps_and_restores_the_count(upscalers, image):
    one, two = ZoomEngine(upscalers[0]), ZoomEngine(upscalers[0])
    a = one.encode("s", image)
    b = two.encode("s", image, threads=2)
    assert torch.get_num_threads() == 1  # the module's count, restored after the encode
    torch.testing.assert_close(b.maps.g, a.maps.g, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.maps.q, a.maps.q, atol=1e-5, rtol=0)


def test_bad_requests_are_refused(engine, upscalers):
    with pytest.raises(ValueError, match="not inside"):
        engine.render(("vol", 2, 7), 2.0, (0, 0, 75, 10))
    with pytest.raises(ValueError, match="positive"):
        engine.render(("vol", 2, 7), 0.0, (0, 0, 1, 1))
    assert clip_box((-5, -5, 100, 20), (74, 90)) == (0, 0, 74, 20)
    assert clip_box((80, 0, 90, 10), (74, 90)) is None
    with pytest.raises(ModelError, match="not an arbitrary-scale"):
        ZoomEngine(Upscaler.load("bicubic", 2.0, device="cpu"))
    result = engine.render(("vol", 2, 7), 2.0, (0, 0, 4, 4))
    assert isinstance(result, ZoomResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.scale = 3.0  # type: ignore[misc]
