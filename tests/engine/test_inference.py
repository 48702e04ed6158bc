import numpy as np
import pytest
import torch

from engine.errors import ModelError
from engine.inference import Upscaler, run_to_completion, upscale_volume
from engine.models import build_model
from engine.normalization import Normalizer
from engine.volume import Volume
from engine.weights import save_weights


@pytest.fixture
def edsr_weights(tmp_path):
    torch.manual_seed(0)
    model = build_model("edsr", 2, blocks=2, width=8)
    for p in model.parameters():  # make the residual branch matter, so tiling errors would show
        p.data.normal_(0, 0.05)
    path = tmp_path / "edsr_x2.safetensors"
    save_weights(model, path, arch="edsr", args={"blocks": 2, "width": 8}, scale=2.0)
    return path


def test_tiled_equals_untiled(edsr_weights):
    up = Upscaler.load("edsr", 2, weights=edsr_weights, device="cpu")
    img = np.random.default_rng(0).random((70, 90), dtype=np.float32) * 1000 - 500
    whole = up.upscale_slice(img, 2)
    up.tile = 24
    tiled = up.upscale_slice(img, 2)
    assert whole.shape == (140, 180)
    np.testing.assert_allclose(tiled, whole, atol=1e-4 * 1000)


def test_units_are_kept():
    up = Upscaler.load("bicubic", 2, device="cpu")
    yy, xx = np.mgrid[0:20, 0:20]
    img = (-1000.0 + 50.0 * (yy + xx)).astype(np.float32)  # a smooth ramp in HU: no overshoot
    out = up.upscale_slice(img, 2, Normalizer.fit(img))
    inner = out[4:-4, 4:-4]
    assert inner.min() > -1000 and inner.max() < img.max()
    assert float(out.mean()) == pytest.approx(float(img.mean()), abs=1.0)


def test_untrained_model_refuses_with_training_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSR_RESOURCES", str(tmp_path))
    with pytest.raises(ModelError, match="medsr train --arch edsr"):
        Upscaler.load("edsr", 2)


def test_scale_not_served():
    with pytest.raises(ModelError, match="does not serve x5"):
        Upscaler.load("edsr", 5)


def test_volume_upscale_keeps_extent_and_halves_spacing():
    data = np.random.default_rng(1).random((20, 30, 5), dtype=np.float32)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    affine[:3, 3] = [10, 20, 30]
    vol = Volume(data, affine, "MR", "t", None)
    out = run_to_completion(upscale_volume(vol, Upscaler.load("bicubic", 2, device="cpu"), 2))
    assert out.shape == (40, 60, 5)
    np.testing.assert_allclose(out.spacing, (0.5, 0.5, 3.0))
    # physical extent: first voxel's outer edge stays where it was
    edge_in = affine[:3, 3] - 0.5 * np.array(vol.spacing)
    edge_out = out.affine[:3, 3] - 0.5 * np.array(out.spacing)
    np.testing.assert_allclose(edge_in, edge_out, atol=1e-6)
    assert out.metadata["sr"]["model"] == "bicubic"


def test_cancel_stops_a_volume_run():
    from engine.errors import Cancelled

    vol = Volume(np.zeros((8, 8, 12), np.float32), np.eye(4))
    gen = upscale_volume(vol, Upscaler.load("bicubic", 2, device="cpu"), 2, batch=1, cancel=lambda: True)
    with pytest.raises(Cancelled):
        next(gen)
