"""Every inference-time optimisation equals its eager PyTorch reference within 1e-4, for every network."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from engine.errors import Cancelled
from engine.fast import native
from engine.fast.allocator import retain_freed_memory
from engine.fast.inference_form import (
    FastMetaSRGAN,
    fold_batch_norms,
    inference_form,
    prefers_channels_last,
    use_inplace_activations,
)
from engine.fast.meta_upscale import FastMetaUpscale
from engine.fast.resample import bicubic_resize, bicubic_resize_box
from engine.inference import Upscaler, prepare_for_inference
from engine.models import build_model, get_card, model_names
from engine.models.blocks import bicubic_upsample_box
from engine.models.registry import bicubic_upsample, output_size
from engine.weights import save_weights

TOL = 1e-4
META_SCALES = (1.1, 1.5, 2.0, 2.7, 4.0)
NAME_SCALES = [(n, s) for n in model_names()
               for s in (META_SCALES if n == "meta_srgan" else get_card(n).scales)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster and, on a loaded machine, far steadier than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere (the zero-initialised last layers too) scaled by fan-in so that
    activations stay O(1) through deep networks, and random batch-norm statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            std = 0.7 / fan_in**0.5 if p.dim() > 1 else 0.05
            p.copy_(torch.randn(p.shape, generator=gen) * std)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.num_features, generator=gen))
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            elif isinstance(m, nn.PReLU):
                m.weight.fill_(0.2)
    return model


def _pair(name: str, scale: float, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(eager reference, fast inference form) of the shipped variant with random weights."""
    model = prepare_for_inference(randomise(build_model(name, scale), seed))
    return model, inference_form(model)


@pytest.mark.parametrize("name,scale", NAME_SCALES)
def test_inference_form_equals_eager(name, scale):
    eager, fast = _pair(name, scale)
    x = torch.rand(2, 1, 19, 23, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = eager(x, scale)
        out = fast(x, scale)
    assert out.shape == ref.shape == (2, 1, *output_size(19, 23, scale))
    assert float(ref.abs().max()) < 50  # weights scaled so that 1e-4 is a meaningful tolerance
    torch.testing.assert_close(out, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", [n for n in model_names() if n != "bicubic"])
def test_inference_form_leaves_the_model_and_its_state_dict_alone(name):
    scale = 2.0
    model = prepare_for_inference(randomise(build_model(name, scale)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_form(model)
    assert fast is not model
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key


def test_batch_norm_folding_is_exact_and_counted():
    model = randomise(build_model("srgan", 2, blocks=2, width=8)).eval()
    ref_model = prepare_for_inference(model)
    folded = inference_form(ref_model, channels_last=False)
    # 2 blocks x 2 BN + the trunk's closing BN
    assert fold_batch_norms(randomise(build_model("srgan", 2, blocks=2, width=8)).eval()) == 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(1, 1, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x, 2), ref_model(x, 2), atol=TOL, rtol=0)


@pytest.mark.parametrize("after", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_overlapping_pool_fast_form_is_exact(after, channels_last):
    from engine.fast.inference_form import FastOverlappingMaxPool
    from engine.models.srcnn_ct import OverlappingMaxPool

    pool = OverlappingMaxPool(pad_after=after)
    x = torch.randn(2, 5, 17, 23, generator=torch.Generator().manual_seed(3))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(FastOverlappingMaxPool(pool)(x), pool(x))


def test_conv_activation_fusion_equals_the_two_layers(monkeypatch):
    from engine.fast import inference_form as forms

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Identity(), nn.LeakyReLU(0.2),
                             nn.Conv2d(8, 8, 5, padding=2, bias=False), nn.ReLU(),
                             nn.Conv2d(8, 1, 3, padding=1)).eval()

    x = torch.rand(2, 3, 19, 23)
    reference = net()
    fused = net()
    assert forms.fuse_conv_activations(fused) == 2
    assert isinstance(fused[0], forms.FusedConvActivation) and isinstance(fused[4], nn.Identity)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), reference(x), atol=1e-6, rtol=0)
        torch.testing.assert_close(fused(x.contiguous(memory_format=torch.channels_last)), reference(x),
                                   atol=1e-6, rtol=0)
    monkeypatch.setattr(forms, "_pointwise_conv_op", lambda: None)  # a torch build without the op
    assert forms.fuse_conv_activations(net()) == 0


def test_in_place_activations_only_after_fresh_outputs():
    seq = nn.Sequential(nn.Identity(), nn.ReLU(), nn.Conv2d(1, 1, 1), nn.Identity(), nn.ReLU(),
                        nn.PixelShuffle(1), nn.LeakyReLU())
    use_inplace_activations(seq)
    assert not seq[1].inplace  # its input is the Sequential's input, which the caller may still hold
    assert seq[4].inplace and seq[6].inplace


def test_channels_last_rule():
    """channels_last except for the CARN family (measured: bench/models.py)."""
    assert prefers_channels_last(prepare_for_inference(build_model("edsr", 2)))
    assert prefers_channels_last(prepare_for_inference(build_model("meta_srgan")))
    assert prefers_channels_last(prepare_for_inference(build_model("fmen", 4)))
    assert not prefers_channels_last(prepare_for_inference(build_model("new_carn", 4)))
    assert not prefers_channels_last(prepare_for_inference(build_model("carn", 2)))


@pytest.mark.parametrize("name,scale", [("edsr", 2.0), ("new_carn", 3.0), ("meta_srgan", 2.4)])
def test_upscaler_fast_equals_reference_through_tiles(tmp_path, name, scale):
    args = {"edsr": {"blocks": 2, "width": 8}, "new_carn": {"blocks": 3},
            "meta_srgan": {"blocks": 2, "width": 8}}
    model = randomise(build_model(name, scale, **args[name]))
    path = tmp_path / f"{name}.safetensors"
    fixed = None if get_card(name).arbitrary_scale else scale
    save_weights(model, path, arch=name, args=args[name], scale=fixed)
    fast = Upscaler.load(name, scale, weights=path, device="cpu")
    eager = Upscaler.load(name, scale, weights=path, device="cpu", fast=False)
    assert fast.runner is not fast.model and eager.runner is eager.model
    fast.tile = eager.tile = 24
    img = np.random.default_rng(0).random((50, 61), dtype=np.float32) * 1000 - 500
    expected = eager.upscale_slice(img, scale)
    np.testing.assert_allclose(fast.upscale_slice(img, scale), expected, atol=TOL * 1000)


def test_stack_batches_side_by_side_equal_one_by_one(tmp_path, monkeypatch):
    """Two CPU workers with one thread each: same result, Progress in order, cancel honoured, and
    torch's thread count (also the one new threads inherit) restored afterwards."""
    model = randomise(build_model("new_carn", 2, blocks=2))
    path = tmp_path / "new_carn.safetensors"
    save_weights(model, path, arch="new_carn", args={"blocks": 2}, scale=2.0)
    up = Upscaler.load("new_carn", 2, weights=path, device="cpu")
    stack = np.random.default_rng(1).random((7, 20, 24), dtype=np.float32) * 100
    torch.set_num_threads(2)
    try:
        assert up.stack_workers(4) == 2
        items = list(up.iter_stack(stack, 2, batch=2))
        assert [p.done for p in items[:-1]] == [2, 4, 6, 7]
        with monkeypatch.context() as m:
            m.setattr(up, "stack_workers", lambda _batches: 1)
            one_by_one = up.upscale_stack(stack, 2, batch=2)
        np.testing.assert_array_equal(items[-1], one_by_one)
        calls = iter(range(100))
        with pytest.raises(Cancelled):
            for _ in up.iter_stack(stack, 2, batch=2, cancel=lambda: next(calls) >= 2):
                pass
        assert torch.get_num_threads() == 2
        seen = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert seen == [2]
    finally:
        torch.set_num_threads(1)


# --- Meta-Upscale ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def meta():
    model = prepare_for_inference(randomise(build_model("meta_srgan", blocks=2, width=16), seed=3))
    x = torch.rand(2, 1, 17, 22, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        enc = model.encode(x)
    fast = FastMetaUpscale(model)
    return model, enc, fast, fast.maps(enc.features, x)


def _boxes(size):
    h, w = size
    return [None, (h - 7, w - 11, h, w), (3, 5, h - 2, w // 2 + 1), (0, w - 1, h, w)]


@pytest.mark.parametrize("scale", [1.1, 2.0, 2.5, 3.3, 4.0])
def test_meta_upscale_methods_equal_the_reference(meta, scale):
    model, enc, fast, maps = meta
    size = output_size(17, 22, scale)
    with torch.inference_mode():
        for box in _boxes(size):
            ref = model.decode(enc, scale, box)
            # "native" (engine.fast.native) where built; test_native.py requires it to be built here
            for method in ("auto", "gemm", "pixelwise", *(("native",) if native.available() else ())):
                torch.testing.assert_close(fast.decode(maps, scale, box, method), ref, atol=TOL, rtol=0)


def test_meta_upscale_picks_gemm_when_offsets_repeat(meta):
    _, _, fast, _ = meta
    assert fast.plan_for((256, 256), 2.0, (0, 0, 512, 512)).method == "gemm"
    assert fast.plan_for((256, 256), 4.0, (256, 256, 768, 768)).method == "gemm"
    generic = fast.plan_for((256, 256), 2.37, (47, 47, 559, 559))
    assert generic.method == "pixelwise" and generic.classes > 100_000


def test_fast_meta_srgan_encode_decode_equals_forward(meta):
    model, *_ = meta
    net = inference_form(model)
    assert isinstance(net, FastMetaSRGAN)
    x = torch.rand(1, 1, 17, 20)
    with torch.inference_mode():
        torch.testing.assert_close(net(x, 2.6), model(x, 2.6), atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="serves scales"):
        net(x, 4.5)


# --- bicubic and the allocator ---------------------------------------------------------------------

@pytest.mark.parametrize("h,w,size", [(12, 12, (24, 24)), (80, 80, (320, 320)), (37, 51, (90, 130)),
                                      (7, 9, (28, 36)), (150, 90, (170, 100))])
def test_banded_bicubic_equals_torch_and_box(h, w, size):
    x = torch.rand(2, 1, h, w)
    # torch computes source coordinates in float32 (~1e-5 off at non-integer ratios); the box version
    # and ours compute them exactly.
    torch.testing.assert_close(bicubic_resize(x, size), bicubic_upsample(x, size), atol=5e-5, rtol=0)
    for box in [(0, 0, *size), (1, 2, size[0] - 3, size[1]), (size[0] - 1, 0, size[0], 5)]:
        torch.testing.assert_close(bicubic_resize_box(x, size, box), bicubic_upsample_box(x, size, box),
                                   atol=1e-6, rtol=0)


def test_retain_freed_memory_reports_whether_it_applied():
    assert isinstance(retain_freed_memory(), bool)
