"""What one slice shows, computed off the GUI thread (no Qt): requests in, panel images out.

A request is a frozen record built on the GUI thread (napari's layer-slicer idea); the jobs here are
generators that yield a quick preview (LR, HR, bicubic), then the final result with SR, error maps,
histograms and scores, and check ``cancel`` between steps. The GUI applies a result only if its
request is still the current one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from engine.degradation import crop_for_scale, downscale, make_pair
from engine.errors import Cancelled, ModelError
from engine.metrics import SliceScores, absolute_error, error_histograms, foreground_mask, score_slice
from medsr_viewer.model_cache import ModelCache, ResolvedModel
from medsr_viewer.slicing import SliceGeometry, display_slice
from medsr_viewer.state import SIMULATE, LoadedVolume, ViewerState

CancelFn = Callable[[], bool]
HISTOGRAM_BINS = 64


@dataclass(frozen=True)
class SliceRequest:
    """Everything that decides what the panels of one slice show."""

    volume_id: int
    axis: int
    index: int
    model: str
    scale: float
    mode: str
    blur: bool = False
    device: str = "auto"
    weights: str | None = None

    @classmethod
    def from_state(cls, state: ViewerState) -> SliceRequest | None:
        if state.loaded is None:
            return None
        return cls(
            state.loaded.volume_id,
            state.axis,
            state.slice,
            state.model,
            state.scale,
            state.mode,
            state.blur,
            state.device,
            state.weights.get(state.model),
        )

    @property
    def curve(self) -> CurveRequest:
        return CurveRequest(
            self.volume_id, self.axis, self.model, self.scale, self.mode, self.blur, self.device, self.weights
        )


@dataclass(frozen=True)
class CurveRequest:
    """What decides the per-slice metric curves: a request without the slice index."""

    volume_id: int
    axis: int
    model: str
    scale: float
    mode: str
    blur: bool = False
    device: str = "auto"
    weights: str | None = None


@dataclass(frozen=True)
class Layer:
    """One panel's image, covering ``extent_mm`` (width, height) from the slice's top-left corner."""

    image: np.ndarray
    extent_mm: tuple[float, float]


@dataclass(frozen=True)
class SrInfo:
    """Provenance of the SR panel: what ran, what was asked for, and why they differ if they do."""

    requested: str
    ran: str
    scale: float
    weights_sha256: str = ""
    notice: str = ""
    ms: float = 0.0

    @property
    def fallback(self) -> bool:
        return bool(self.notice)

    @property
    def headline(self) -> str:
        if self.fallback:
            return f"SR unavailable · {self.requested} ×{self.scale:g}"
        return f"SR — not acquired · {self.ran} ×{self.scale:g}"

    @property
    def detail(self) -> str:
        if self.fallback:
            return "bicubic interpolation shown in its place"
        return f"weights sha256 {self.weights_sha256[:12]}" if self.weights_sha256 else "no weights file"

    @property
    def title(self) -> str:
        """One line for labels outside the panel (PNG header, status)."""
        return f"{self.headline} ({self.detail})"


@dataclass
class SliceResult:
    """Panel images of one request; ``final`` is False for the preview without SR."""

    request: SliceRequest
    final: bool
    geometry: SliceGeometry
    images: dict[str, Layer]  # simulate: lr, bicubic, sr, hr; enhance: input, bicubic, sr
    errors: dict[str, Layer] = field(
        default_factory=dict
    )  # simulate: bicubic, sr; enhance: difference, consistency
    error_max: float = 1.0  # one colour scale for every error map
    histogram: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
    scores: dict[str, SliceScores | None] = field(default_factory=dict)  # bicubic, sr
    sr: SrInfo | None = None
    border: int = 0


def check(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def prepare_inputs(
    image: np.ndarray, request: SliceRequest | CurveRequest
) -> tuple[np.ndarray, np.ndarray | None]:
    """(network input, ground truth or None): the degraded slice in Simulate, the slice itself in Enhance."""
    rows, cols = image.shape
    if request.mode == SIMULATE:
        if min(rows, cols) < 2 * request.scale:
            raise ModelError(
                f"a {rows}x{cols} slice is too small to simulate x{request.scale:g} (pick another plane)"
            )
        lr, hr = make_pair(image, request.scale, request.blur)
        return lr, hr
    if min(rows, cols) < 2:
        raise ModelError(f"a {rows}x{cols} slice is too small to upscale (pick another plane)")
    return image, None


def degrade_like_input(
    up: np.ndarray, scale: float, blur: bool, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(degrade(up), the input cropped to match): the data-consistency pair of an upscaled slice."""
    down = downscale(crop_for_scale(up, scale), scale, blur)
    rows, cols = min(down.shape[0], target.shape[0]), min(down.shape[1], target.shape[1])
    return down[:rows, :cols], target[:rows, :cols]


def slice_job(
    request: SliceRequest, loaded: LoadedVolume, models: ModelCache, cancel: CancelFn | None = None
) -> Iterator[SliceResult]:
    """Yield the preview (no SR) then the final result of ``request``."""
    geometry = SliceGeometry.of(loaded.volume, request.axis, request.index)
    image = display_slice(loaded.volume.data, request.axis, request.index)
    pixel_w, pixel_h = geometry.pixel_mm
    net_input, truth = prepare_inputs(image, request)
    reference = truth if truth is not None else net_input
    extent = (reference.shape[1] * pixel_w, reference.shape[0] * pixel_h)
    norm = loaded.normalizer
    check(cancel)
    bicubic = models.bicubic().upscale_slice(net_input, request.scale, norm)
    if truth is not None:
        images = {
            "lr": Layer(net_input, extent),
            "bicubic": Layer(bicubic, extent),
            "hr": Layer(truth, extent),
        }
    else:
        images = {"input": Layer(net_input, extent), "bicubic": Layer(bicubic, extent)}
    yield SliceResult(request, False, geometry, dict(images))

    check(cancel)
    resolved = models.resolve(request.model, request.scale, request.device, request.weights)
    t0 = time.perf_counter()
    sr = bicubic if resolved.fallback else resolved.upscaler.upscale_slice(net_input, request.scale, norm)
    ms = (time.perf_counter() - t0) * 1000.0
    check(cancel)
    images["sr"] = Layer(sr, extent)
    result = SliceResult(request, True, geometry, images, sr=sr_info(resolved, request, ms))
    border = math.ceil(request.scale)
    result.border = border
    if truth is not None:
        errors = {"bicubic": absolute_error(bicubic, truth), "sr": absolute_error(sr, truth)}
        mask = foreground_mask(truth)
        result.errors = {k: Layer(v, extent) for k, v in errors.items()}
        constant = not truth.max() > truth.min()
        result.scores = {
            k: None if constant else score_slice(v, truth, loaded.data_range, border)
            for k, v in (("bicubic", bicubic), ("sr", sr))
        }
    else:
        down_sr, target = degrade_like_input(sr, request.scale, request.blur, net_input)
        down_bic, _ = degrade_like_input(bicubic, request.scale, request.blur, net_input)
        dc_extent = (target.shape[1] * pixel_w, target.shape[0] * pixel_h)
        errors = {"difference": absolute_error(sr, bicubic), "consistency": absolute_error(down_sr, target)}
        mask = None
        result.errors = {
            "difference": Layer(errors["difference"], extent),
            "consistency": Layer(errors["consistency"], dc_extent),
        }
        constant = not target.max() > target.min()
        result.scores = {
            k: None if constant else score_slice(v, target, loaded.data_range, border)
            for k, v in (("bicubic", down_bic), ("sr", down_sr))
        }
    check(cancel)
    result.error_max = shared_error_max(errors.values(), mask)
    result.histogram = error_histograms(errors, bins=HISTOGRAM_BINS, mask=_fitting_mask(mask, errors))
    yield result


def _fitting_mask(mask: np.ndarray | None, maps: dict[str, np.ndarray]) -> np.ndarray | None:
    if mask is None or any(m.shape != mask.shape for m in maps.values()):
        return None
    return mask


def shared_error_max(maps, mask: np.ndarray | None = None) -> float:
    """Top of the shared error colour scale: the 99.5th percentile over all maps (robust to outliers)."""
    values = [m[mask] if mask is not None and m.shape == mask.shape else m.ravel() for m in maps]
    values = np.concatenate([v for v in values if v.size]) if values else np.zeros(1)
    top = float(np.percentile(values, 99.5)) if values.size else 0.0
    return top if top > 0 else max(float(values.max()) if values.size else 0.0, 1e-6)


def sr_info(resolved: ResolvedModel, request: SliceRequest, ms: float) -> SrInfo:
    up = resolved.upscaler
    return SrInfo(request.model, up.name, request.scale, up.weights_sha256, resolved.notice, ms)


@dataclass(frozen=True)
class CurvePoint:
    """Scores of one slice for the per-slice plot (None where the slice is empty)."""

    index: int
    bicubic: SliceScores | None
    sr: SliceScores | None


def curve_job(
    request: CurveRequest,
    loaded: LoadedVolume,
    models: ModelCache,
    cancel: CancelFn | None = None,
    pause: Callable[[], None] | None = None,
    order: list[int] | None = None,
) -> Iterator[CurvePoint]:
    """PSNR/SSIM of bicubic and SR for every slice along the axis (against HR, or data consistency).

    ``pause`` is called before each slice so interactive work can go first.
    """
    n = loaded.volume.shape[request.axis]
    resolved = models.resolve(request.model, request.scale, request.device, request.weights)
    bic_up = models.bicubic()
    border = math.ceil(request.scale)
    for index in order if order is not None else range(n):
        if pause is not None:
            pause()
        check(cancel)
        image = display_slice(loaded.volume.data, request.axis, index)
        try:
            net_input, truth = prepare_inputs(image, request)
        except ModelError:
            yield CurvePoint(index, None, None)
            continue
        bic = bic_up.upscale_slice(net_input, request.scale, loaded.normalizer)
        sr = (
            bic
            if resolved.fallback
            else resolved.upscaler.upscale_slice(net_input, request.scale, loaded.normalizer)
        )
        check(cancel)
        if truth is None:
            down_bic, target = degrade_like_input(bic, request.scale, request.blur, net_input)
            down_sr, _ = degrade_like_input(sr, request.scale, request.blur, net_input)
            pairs, ref = (down_bic, down_sr), target
        else:
            pairs, ref = (bic, sr), truth
        if not ref.max() > ref.min():
            yield CurvePoint(index, None, None)
            continue
        yield CurvePoint(
            index,
            score_slice(pairs[0], ref, loaded.data_range, border),
            score_slice(pairs[1], ref, loaded.data_range, border),
        )


def centre_out_order(n: int, start: int) -> list[int]:
    """Slice indices from ``start`` outwards, so the curve fills where the user is looking first."""
    order = [start]
    for d in range(1, n):
        for i in (start - d, start + d):
            if 0 <= i < n:
                order.append(i)
    return order[:n] if 0 <= start < n else list(range(n))
