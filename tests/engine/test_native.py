"""The native New CARN kernel (engine/fast/native): built here, equal to torch, and never used when
it should not be (switched off, stale, wrong sizes)."""

from __future__ import annotations

import os
import platform
import shutil
import sys

import numpy as np
import pytest
import torch

from engine.fast import native
from engine.fast.inference_form import inference_form
from engine.fast.native import NativeNewCARNTrunk
from engine.inference import prepare_for_inference
from engine.io.load import load_volume
from engine.models import build_model
from engine.resources import sample_volume_path
from engine.weights import load_weights, shipped_weights_path

TOL = 1e-4
X86 = platform.machine().lower() in {"x86_64", "amd64"}


@pytest.fixture(scope="module")
def lib():
    """The built kernel; built now if `make setup` has not (the C compiler is part of the machine)."""
    if native.library() is None and not native.LIBRARY.exists() and shutil.which("cc"):
        native.build()
    if native.library() is None:
        pytest.fail(f"{native.LIBRARY} not usable: run `make setup` (needs a C compiler, AVX2 and FMA)")
    return native.library()


@pytest.fixture(scope="module")
def real_slice() -> torch.Tensor:
    """An axial slice of the bundled sample volume, normalised as inference does (0..1)."""
    vol = load_volume(sample_volume_path())
    data = np.asarray(vol.data, dtype=np.float32)
    sl = data[:, :, data.shape[2] // 2]
    sl = (sl - sl.min()) / max(float(sl.max() - sl.min()), 1e-6)
    return torch.from_numpy(np.ascontiguousarray(sl))[None, None]


@pytest.mark.skipif(not X86, reason="the kernel is written with AVX2 intrinsics (x86-64 only)")
def test_kernel_is_built_and_usable_on_this_machine(lib):
    assert native.available()
    assert lib.medsr_new_carn_channels() == native.INNER * 100 + native.ANCHORS


@pytest.fixture(params=["avx512", "avx2"])
def layout(request, lib):
    """Each New CARN kernel this CPU can run: the AVX-512 planar one where it has AVX-512, and the AVX2
    NHWC one (switched to on the same machine)."""
    if request.param == "avx512":
        if not lib.medsr_native_avx512_supported():
            pytest.skip("this CPU has no AVX-512: only the AVX2 kernel runs here")
        assert native.use_avx512()
        yield request.param
    else:
        with native.avx512_switched_off():
            assert not native.use_avx512()
            yield request.param


@pytest.mark.parametrize("scale", [2.0, 3.0, 4.0])
@pytest.mark.parametrize("threads", [1, 2])
def test_native_trunk_equals_torch_on_a_real_slice(lib, layout, real_slice, scale, threads):
    model = prepare_for_inference(load_weights(shipped_weights_path("new_carn", scale)).model)
    trunk = NativeNewCARNTrunk(model.head, model.body)
    # a 37 x 53 crop (width not a multiple of either kernel's pixel groups: 4 and 16) and the whole
    # slice, batched
    crop = real_slice[..., 40:77, 30:83]
    batch = torch.cat([crop, crop.flip(-1)])
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for x in (batch, real_slice):
                ref = model.body(model.head(x))
                out = trunk(x)
                assert out.shape == ref.shape
                assert out.is_contiguous(memory_format=torch.channels_last)
                torch.testing.assert_close(out, ref, atol=TOL, rtol=0)
            full = inference_form(model)
            assert any(isinstance(m, NativeNewCARNTrunk) for m in full.modules())
            torch.testing.assert_close(full(real_slice, scale), model(real_slice, scale), atol=TOL, rtol=0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("scale", [1.1, 1.5, 2.0, 2.37, 3.0, 4.0])
def test_native_meta_decode_equals_the_reference_on_a_real_slice(lib, real_slice, scale):
    """The shipped meta_srgan: a zoom box of the real slice, in the middle and at the borders."""
    model = prepare_for_inference(load_weights(shipped_weights_path("meta_srgan", None)).model)
    fast = inference_form(model)
    x = real_slice[..., 20:100, 30:121]  # 80 x 91
    with torch.inference_mode():
        maps, enc = fast.encode(x), model.encode(x)
        h, w = fast.decode(maps, scale, None, "pixelwise").shape[-2:]
        for box in (None, (0, 0, h // 2, w // 3), (h // 3, w // 4, h, w), (h - 1, 0, h, w)):
            ref = model.decode(enc, scale, box)
            out = fast.decode(maps, scale, box, "native")
            torch.testing.assert_close(out, ref, atol=TOL, rtol=0)
            torch.testing.assert_close(fast.decode(maps, scale, box), out, atol=0, rtol=0)  # auto = native


# (output size, box) of a real 256^2-ish slice: a zoom box inside, one at the borders, the whole image,
# a downscale, and a 1 x 1 box
BICUBIC_CASES = [((563, 563), (101, 37, 512, 549)), ((640, 480), (0, 0, 640, 480)),
                 ((300, 700), (299, 0, 300, 700)), ((100, 90), (0, 0, 100, 90)), ((257, 300), (5, 7, 6, 8))]


@pytest.mark.parametrize("size,box", BICUBIC_CASES)
def test_native_bicubic_box_equals_the_reference_on_a_real_slice(lib, real_slice, size, box):
    from engine.fast.resample import bicubic_resize_box
    from engine.models.blocks import bicubic_upsample_box
    from engine.zoom import windowed

    hu = real_slice * 1400.0 - 1000.0  # in HU-like units: the tolerance is relative to the span
    reference = bicubic_upsample_box(hu.double(), size, box).float()
    batch = torch.cat([hu, hu.flip(-1)])
    out = native.bicubic_box(batch, size, box)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, box[2] - box[0], box[3] - box[1])
    torch.testing.assert_close(out[:1], reference, atol=TOL * 1400, rtol=0)
    torch.testing.assert_close(out[1:], bicubic_upsample_box(hu.flip(-1).double(), size, box).float(),
                               atol=TOL * 1400, rtol=0)
    # the resampler takes the native path, and its torch path gives the same
    torch.testing.assert_close(bicubic_resize_box(hu, size, box), out[:1], atol=0, rtol=0)
    with native.switched_off():
        assert native.bicubic_box(hu, size, box) is None
        torch.testing.assert_close(bicubic_resize_box(hu, size, box), reference, atol=TOL * 1400, rtol=0)
    # an array in, an array out; the windowed display copy is what engine.zoom.windowed makes of it
    values, shown = native.bicubic_box_shown(hu[0, 0].numpy(), size, box, (-200.0, 300.0))
    np.testing.assert_allclose(values, reference[0, 0].numpy(), atol=TOL * 1400, rtol=0)
    assert shown.dtype == np.uint8
    assert np.abs(shown.astype(int) - windowed(values, (-200.0, 300.0)).astype(int)).max() <= 1


def test_native_bicubic_box_refuses_what_it_does_not_take(lib, real_slice):
    assert native.bicubic_box(real_slice.double(), (300, 300), (0, 0, 300, 300)) is None
    assert native.bicubic_box(real_slice.numpy().astype(np.float64), (300, 300), (0, 0, 300, 300)) is None
    with pytest.raises(ValueError, match="bad sizes"):
        native.bicubic_box(real_slice, (300, 300), (0, 0, 301, 300))


def test_native_is_only_used_where_it_fits(lib):
    wide = prepare_for_inference(build_model("new_carn", 2, inner=16))
    assert not NativeNewCARNTrunk.supports(wide.head, wide.body)
    assert not any(isinstance(m, NativeNewCARNTrunk) for m in inference_form(wide).modules())
    shipped = prepare_for_inference(build_model("new_carn", 2))
    assert not any(isinstance(m, NativeNewCARNTrunk) for m in inference_form(shipped, native=False).modules())
    with native.switched_off():
        assert not native.available()
        assert not any(isinstance(m, NativeNewCARNTrunk) for m in inference_form(shipped).modules())
    assert native.available()


def test_environment_switch_and_a_stale_library_fall_back_to_torch(lib, tmp_path, monkeypatch):
    try:
        monkeypatch.setenv("MEDSR_NATIVE", "0")
        native.library.cache_clear()
        assert native.library() is None
        monkeypatch.delenv("MEDSR_NATIVE")
        # a library older than its sources (a pull without `make setup`) is not trusted
        copy = tmp_path / native.LIBRARY.name
        sources = tuple(tmp_path / src.name for src in native.SOURCES)
        shutil.copyfile(native.LIBRARY, copy)
        for src, dst in zip(native.SOURCES, sources, strict=True):
            shutil.copyfile(src, dst)
        os.utime(copy, (1_000_000, 1_000_000))
        monkeypatch.setattr(native, "LIBRARY", copy)
        monkeypatch.setattr(native, "SOURCES", sources)
        native.library.cache_clear()
        assert native.library() is None
        os.utime(copy, None)
        for src in sources:
            os.utime(src, (1_000_000, 1_000_000))
        native.library.cache_clear()
        assert native.library() is not None
    finally:
        monkeypatch.undo()
        native.library.cache_clear()
    assert native.available()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_kernel_shares_torchs_openmp_runtime(lib):
    """One libgomp in the process: a second OpenMP pool would fight torch's spinning threads."""
    with open("/proc/self/maps") as fh:
        gomp = {line.split()[-1] for line in fh if "libgomp" in line}
    assert len(gomp) == 1, gomp


def test_avx512_layout_follows_the_cpu_and_its_switch(lib, monkeypatch):
    assert native.use_avx512() == bool(lib.medsr_native_avx512_supported())
    monkeypatch.setenv("MEDSR_NATIVE_AVX512", "0")
    assert not native.use_avx512()


@pytest.mark.parametrize("scale", [2.0, 3.0, 4.0])
@pytest.mark.parametrize("threads", [1, 2])
def test_native_carn_body_equals_torch_on_a_real_slice(lib, layout, real_slice, scale, threads):
    from engine.fast.native import NativeCARNBody

    model = prepare_for_inference(load_weights(shipped_weights_path("carn", scale)).model)
    assert NativeCARNBody.supports(model.body)
    body = NativeCARNBody(model.body)
    crop = real_slice[..., 40:77, 30:83]  # 37 x 53: the last 16-pixel group of a row is partial
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for x in (torch.cat([crop, crop.flip(-1)]), real_slice):
                features = model.extract(x)
                torch.testing.assert_close(body(features), model.body(features), atol=TOL, rtol=0)
            fast = inference_form(model)
            assert any(isinstance(m, NativeCARNBody) for m in fast.modules())
            torch.testing.assert_close(fast(real_slice, scale), model(real_slice, scale), atol=TOL, rtol=0)
            with pytest.MonkeyPatch.context() as mp:  # without the library the blocks it replaced run
                mp.setattr(native, "library", lambda: None)
                reference = model(real_slice, scale)
                torch.testing.assert_close(fast(real_slice, scale), reference, atol=TOL, rtol=0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name,scale", [("srgan", 4.0), ("srcnn_ct", 2.0), ("srcnn", 3.0)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_native_single_output_conv_equals_torch_on_real_features(lib, real_slice, name, scale, memory_format):
    """The last layer (k x k to one channel) of shipped networks, on the features they compute from a
    real slice: NCHW or channels_last input, a batch of two, an odd crop."""
    from engine.fast.native import NativeSingleOutputConv

    model = prepare_for_inference(load_weights(shipped_weights_path(name, scale)).model)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 1][-1]
    assert NativeSingleOutputConv.supports(last)
    features: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, args, _out: features.append(args[0]))
    crop = real_slice[..., 40:77, 30:83]
    with torch.inference_mode():
        model(torch.cat([crop, crop.flip(-1)]), scale)
        hook.remove()
        x = features[0].contiguous(memory_format=memory_format)
        native_conv = NativeSingleOutputConv(last)
        span = float(last(x).abs().max()) + 1.0
        torch.testing.assert_close(native_conv(x), last(x), atol=TOL * span, rtol=0)
        with native.switched_off(), pytest.MonkeyPatch.context() as mp:
            mp.setattr(native, "library", lambda: None)  # not built: the wrapped conv runs
            torch.testing.assert_close(native_conv(x), last(x), atol=0, rtol=0)


def test_single_output_conv_is_only_swapped_where_it_pays():
    from engine.fast.native import NativeSingleOutputConv

    nn = torch.nn
    assert NativeSingleOutputConv.supports(nn.Conv2d(32, 1, 9, padding=4))
    assert not NativeSingleOutputConv.supports(nn.Conv2d(32, 1, 3, padding=1))  # oneDNN is as fast
    assert not NativeSingleOutputConv.supports(nn.Conv2d(32, 2, 9, padding=4))
    assert not NativeSingleOutputConv.supports(nn.Conv2d(32, 1, 9, padding=4, stride=2))
    assert not NativeSingleOutputConv.supports(nn.Conv2d(32, 1, 9, padding=4, padding_mode="reflect"))
