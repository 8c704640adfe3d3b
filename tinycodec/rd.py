"""Rate-distortion comparison of tinycodec against JPEG, WebP, AVIF and JPEG XL.

The library behind ``tinycodec rd DATA_DIR`` (see ``cli.py``)::

    records = run_sweep(list_images(folder), [CODECS["jpeg"], CODECS["tinycodec"]], quick=True)
    results = summarize(records, codecs)      # CompressAI results dicts, one per codec
    bd_rate(anchor_bpp, anchor_psnr, test_bpp, test_psnr)   # Bjontegaard delta rate, percent

Conventions (stated again in every output):

* rate: bits per pixel from the real encoded bytes, 8 * len(bytes) / (W * H), whole file
  (the ``.tcz`` header included);
* quality: PSNR on RGB, PSNR on Y (BT.601 studio range, as the TinyCompress seed and
  ``tools/bench_codec.py`` report it), SSIM and MS-SSIM (pytorch_msssim, RGB, data range 255);
* one operating point = one codec setting; its bpp and metrics are the means of the per-image
  values (CompressAI's convention);
* Bjontegaard deltas: piecewise cubic Hermite interpolation (PCHIP, as in the common modern
  implementations) of log10(rate) against quality, integrated exactly over the overlapping quality
  range; the classic cubic polynomial fit is available as ``method="cubic"``.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import json
import math
import sys
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image, features
from pytorch_msssim import ms_ssim, ssim

from .errors import TinyCodecError

Setting = float | tuple[int, int]  # a codec's quality parameter; (scale, planes) for tinycodec

IMAGE_SUFFIXES = (".png", ".ppm", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")
MSSSIM_MIN_SIDE = 161  # pytorch_msssim asserts min side > (11 - 1) * 2**4 for its 4 downsamplings
BD_METHODS = ("pchip", "cubic")
BD_DESCRIPTION = {
    "pchip": "piecewise cubic Hermite interpolation (PCHIP) of log10(rate) against quality, integrated exactly "
             "over the overlapping quality range",
    "cubic": "classic Bjontegaard cubic polynomial fit of log10(rate) against quality, integrated over the "
             "overlapping quality range",
}
METRICS = ("psnr-rgb", "psnr-y", "ssim", "ms-ssim")

# The TinyCompress seed's figures (one Kodak image each, PSNR on Y), as reported: (bpp, PSNR-Y dB, MS-SSIM).
SEED_TINYCOMPRESS = {
    "TC-4": (5.2862, 39.6596, 0.9961), "TC-16": (1.2758, 31.9334, 0.9819), "TC-64": (0.3350, 28.5576, 0.9387),
    "TC-4 (cmp)": (4.8578, 40.0778, 0.9959), "TC-16 (cmp)": (0.9909, 31.6855, 0.9759),
    "TC-64 (cmp)": (0.3075, 27.6528, 0.9228), "TC-256 (cmp)": (0.0811, 25.1362, 0.8285),
}
SEED_JPEG = {
    "JPEG a": (5.1224, 51.8739, 0.9975), "JPEG b": (1.0562, 39.8930, 0.9881),
    "JPEG c": (0.3145, 32.6283, 0.9277), "JPEG d": (0.1643, 25.7558, 0.7834),
}


# --------------------------------------------------------------------------------------------- codecs


class Codec:
    """A codec under test: ``encode(rgb, setting) -> bytes`` and ``decode(bytes) -> rgb``.

    ``rgb`` is an (H, W, 3) uint8 array. Subclasses set the sweeps; ``settings`` runs from the
    lowest to the highest rate.
    """

    key: str = ""
    name: str = ""
    sweep: tuple[Setting, ...] = ()
    quick_sweep: tuple[Setting, ...] = ()

    def settings(self, quick: bool = False) -> tuple[Setting, ...]:
        return self.quick_sweep if quick else self.sweep

    def label(self, setting: Setting) -> str:
        return f"q{setting:g}"

    def unavailable(self) -> str | None:
        """Why this codec cannot run here (one line), or None."""
        return None

    def description(self) -> str:
        return self.name

    def encode(self, rgb: np.ndarray, setting: Setting) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class PillowCodec(Codec):
    pil_format = ""
    options: dict = {}

    def encode(self, rgb: np.ndarray, setting: Setting) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=self.pil_format, quality=int(setting), **self.options)
        return buf.getvalue()


class JpegCodec(PillowCodec):
    key, name, pil_format = "jpeg", "JPEG", "JPEG"
    options = {"optimize": True}  # Pillow's default chroma subsampling is 4:2:0
    sweep = (5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 85, 90, 93, 95, 97)
    quick_sweep = (10, 30, 60, 90)

    def description(self) -> str:
        lib = f"libjpeg-turbo {features.version_feature('libjpeg_turbo')}" if features.check_feature(
            "libjpeg_turbo") else f"libjpeg {features.version('jpg')}"
        return (f"JPEG, Pillow {Image.__version__} ({lib}), optimize=True, 4:2:0, "
                f"quality {self.sweep[0]}..{self.sweep[-1]}")


class WebpCodec(PillowCodec):
    key, name, pil_format = "webp", "WebP", "WEBP"
    options = {"method": 6}
    sweep = (0, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 100)
    quick_sweep = (5, 40, 75, 95)

    def description(self) -> str:
        return (f"WebP (lossy), Pillow {Image.__version__} (libwebp {features.version('webp')}), method=6, "
                f"quality {self.sweep[0]}..{self.sweep[-1]}")


class AvifCodec(PillowCodec):
    key, name, pil_format = "avif", "AVIF", "AVIF"
    options = {"max_threads": 1}  # Pillow's defaults otherwise: speed 6, 4:2:0
    sweep = (0, 10, 20, 30, 40, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95)
    quick_sweep = (20, 50, 70, 85)

    def unavailable(self) -> str | None:
        if not features.check("avif"):
            return "AVIF is not available in this Pillow build (PIL.features.check('avif') is False)"
        return None

    def description(self) -> str:
        from PIL import _avif

        return (f"AVIF, Pillow {Image.__version__} (libavif {features.version('avif')}; {_avif.codec_versions()}), "
                f"Pillow defaults (speed 6, 4:2:0), quality {self.sweep[0]}..{self.sweep[-1]}")


class JxlCodec(Codec):
    key, name = "jxl", "JPEG XL"
    # Butteraugli distance: lower is better, so the sweep runs from high to low distance.
    sweep = (25.0, 15.0, 12.0, 9.0, 7.0, 5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.7, 0.5, 0.3)
    quick_sweep = (9.0, 3.0, 1.0, 0.3)

    def label(self, setting: Setting) -> str:
        return f"d{setting:g}"

    def unavailable(self) -> str | None:
        try:
            import imagecodecs
        except ImportError:
            return "JPEG XL needs imagecodecs: pip install 'tinycodec[compare]' (or leave jxl out with --codecs)"
        if not imagecodecs.JPEGXL.available:
            return "this imagecodecs build has no JPEG XL"
        return None

    def description(self) -> str:
        import imagecodecs

        return (f"JPEG XL, imagecodecs {imagecodecs.__version__} ({imagecodecs.jpegxl_version()}), "
                f"default effort 7, distance {self.sweep[0]:g}..{self.sweep[-1]:g}")

    def encode(self, rgb: np.ndarray, setting: Setting) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(rgb, distance=float(setting), numthreads=1))

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        return imagecodecs.jpegxl_decode(data, numthreads=1)


class TinyCodec(Codec):
    key, name = "tinycodec", "tinycodec"

    @property
    def sweep(self) -> tuple[Setting, ...]:  # every scale x planes, coarsest first
        from .codec import SCALES

        return tuple((s, p) for s in sorted(SCALES, reverse=True) for p in range(1, 9))

    quick_sweep = ((256, 8), (64, 8), (16, 8), (4, 8))

    def label(self, setting: Setting) -> str:
        scale, planes = setting
        return f"s{scale}p{planes}"

    def description(self) -> str:
        from . import __version__
        from .codec import SCALES
        from .zoo import current_entry, model_name

        ids = ", ".join(f"s{s} {current_entry(model_name(s)).short_id.hex()}" for s in SCALES)
        return (f"tinycodec {__version__} (weights {ids}), whole .tcz file; Pareto frontier of scale x planes "
                f"(a point is kept if no cheaper point has higher mean PSNR-RGB or higher mean MS-SSIM)")

    def refine_steps(self) -> int:
        return 0

    def encode(self, rgb: np.ndarray, setting: Setting) -> bytes:
        from .codec import encode

        scale, planes = setting
        return encode(rgb, scale=scale, planes=planes, refine=self.refine_steps())

    def decode(self, data: bytes) -> np.ndarray:
        from .codec import decode

        return np.asarray(decode(data).convert("RGB"))


class RefinedTinyCodec(TinyCodec):
    """tinycodec with latent refinement at its tuned effort (``encode(..., refine=DEFAULT_STEPS)``).

    Planes 4, 6 and 8 only: refinement costs seconds per image (a Kodak sweep of these 12 settings takes
    about half an hour on 2 cores), and no point below 3 planes is on the unrefined frontier on Kodak
    except at scale 256.
    """

    key, name = "tinycodec-refined", "tinycodec refined"

    @property
    def sweep(self) -> tuple[Setting, ...]:
        from .codec import SCALES

        return tuple((s, p) for s in sorted(SCALES, reverse=True) for p in (4, 6, 8))

    def description(self) -> str:
        from .refine import RATE_WEIGHT

        weights = ", ".join(f"s{s} {w:g}" for s, w in sorted(RATE_WEIGHT.items()))
        return (f"{super().description()}; latent refinement, {self.refine_steps()} steps, rate weights {weights} "
                f"(same decoder and format)")

    def refine_steps(self) -> int:
        from .refine import DEFAULT_STEPS

        return DEFAULT_STEPS


class PyramidCodec(Codec):
    """The pyramid family (``encode(..., quality=q, family="pyramid")``), effort fast: one encoder-network pass."""

    key, name = "pyramid", "tinycodec pyramid (fast)"
    family = "pyramid"
    sweep = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    quick_sweep = (0, 30, 60, 90)
    effort = "fast"

    def label(self, setting: Setting) -> str:
        return f"Q{setting:g}"

    def _model(self) -> str:
        return importlib.import_module(f"tinycodec.{self.family}.weights").MODEL

    def unavailable(self) -> str | None:
        from .zoo import registry

        if self._model() not in registry():
            return f"no {self.family}-family weights installed (model '{self._model()}' is not in the weights registry)"
        return None

    def refine_steps(self) -> int:
        from .families import DEFAULT_RD_STEPS

        return 0 if self.effort == "fast" else DEFAULT_RD_STEPS[self.effort]

    def description(self) -> str:
        from . import __version__
        from .zoo import current_entry

        steps = f", {self.refine_steps()} steps" if self.effort != "fast" else ""
        return (f"tinycodec {__version__} {self.family} family (weights {current_entry(self._model()).short_id.hex()}), "
                f"effort {self.effort}{steps}, whole .tcz file, quality {self.sweep[0]}..{self.sweep[-1]}")

    def encode(self, rgb: np.ndarray, setting: Setting) -> bytes:
        from .codec import encode

        return encode(rgb, quality=int(setting), effort=self.effort, refine=self.refine_steps(), family=self.family)

    def decode(self, data: bytes) -> np.ndarray:
        from .codec import decode

        return np.asarray(decode(data).convert("RGB"))


class RefinedPyramidCodec(PyramidCodec):
    """The pyramid family at effort refine (its default steps): seconds per image."""

    key, name = "pyramid-refine", "tinycodec pyramid (refine)"
    effort = "refine"


class OverfitPyramidCodec(PyramidCodec):
    """The pyramid family at effort overfit (its default steps): minutes per Kodak image on a CPU."""

    key, name = "pyramid-overfit", "tinycodec pyramid (overfit)"
    effort = "overfit"


class ShallowCodec(PyramidCodec):
    """The shallow family (``encode(..., quality=q)``, the default), effort fast: one encoder-network pass."""

    key, name = "shallow", "tinycodec shallow (fast)"
    family = "shallow"


class RefinedShallowCodec(ShallowCodec):
    """The shallow family at effort refine (its default steps)."""

    key, name = "shallow-refine", "tinycodec shallow (refine)"
    effort = "refine"


CODECS: dict[str, Codec] = {c.key: c for c in (JpegCodec(), WebpCodec(), AvifCodec(), JxlCodec(), TinyCodec(),
                                                RefinedTinyCodec(), ShallowCodec(), RefinedShallowCodec(),
                                                PyramidCodec(), RefinedPyramidCodec(), OverfitPyramidCodec())}
ANCHOR = "jpeg"
# What `tinycodec rd` runs when no --codecs is given: the published codecs and the families' fast efforts.
DEFAULT_CODECS = ("jpeg", "webp", "avif", "jxl", "tinycodec", "shallow", "pyramid")



def select_codecs(keys: str | Sequence[str] | None, skipped: list[str] | None = None) -> list[Codec]:
    """Codecs by key ('jpeg,webp'), in the canonical order; a clear error for unknown ones.

    A codec named in ``keys`` that cannot run here is an error; with ``keys`` None, the default set is
    taken and the codecs that cannot run are left out, each with its reason appended to ``skipped``.
    """
    if keys is None:
        wanted = list(DEFAULT_CODECS)
    else:
        wanted = [k.strip().lower() for k in (keys.split(",") if isinstance(keys, str) else keys) if k.strip()]
    unknown = [k for k in wanted if k not in CODECS]
    if unknown or not wanted:
        raise TinyCodecError(f"unknown codec '{','.join(unknown)}': choose from {', '.join(CODECS)}")
    codecs = []
    for c in (c for k, c in CODECS.items() if k in wanted):
        if reason := c.unavailable():
            if keys is not None:
                raise TinyCodecError(reason)
            if skipped is not None:
                skipped.append(f"{c.key}: {reason}")
            continue
        codecs.append(c)
    return codecs


# -------------------------------------------------------------------------------------------- metrics


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB over all samples; ``inf`` for identical images (never capped)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def luma_bt601(rgb: np.ndarray) -> np.ndarray:
    """Y of BT.601 YCbCr, studio range [16, 235] as MATLAB's rgb2ycbcr (not rounded)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR on BT.601 luma with peak 255, the convention of the seed and of most super-resolution work."""
    return psnr(luma_bt601(a), luma_bt601(b))


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    # float32: 6-8x faster than float64 on CPU; MS-SSIM differs by about 3e-7 (0.001 dB at 0.999).
    return torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None]


def ssim_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (pytorch_msssim, 11x11 Gaussian window, data range 255), mean over R, G, B."""
    return float(ssim(_tensor(a), _tensor(b), data_range=255.0))


def ms_ssim_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (pytorch_msssim defaults, data range 255), mean over R, G, B; both sides must be > 160."""
    if min(a.shape[:2]) < MSSSIM_MIN_SIDE:
        raise TinyCodecError(f"MS-SSIM needs images at least {MSSSIM_MIN_SIDE} pixels on each side, "
                             f"not {a.shape[1]}x{a.shape[0]}")
    return float(ms_ssim(_tensor(a), _tensor(b), data_range=255.0))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM): spreads the 0.95..1 range where codecs differ."""
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


# -------------------------------------------------------------------------------- Bjontegaard deltas


def pareto_front(rates: Sequence[float], qualities: Sequence[float]) -> list[int]:
    """Indices of the points no cheaper point beats: sorted by rate, each of strictly higher quality.

    At equal rate only the best point is kept. Non-finite qualities are ignored.
    """
    order = sorted((i for i, q in enumerate(qualities) if math.isfinite(q) and math.isfinite(rates[i])),
                   key=lambda i: (rates[i], -qualities[i]))
    front: list[int] = []
    for i in order:
        if not front or (qualities[i] > qualities[front[-1]] and rates[i] > rates[front[-1]]):
            front.append(i)
    return front


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives of the shape-preserving PCHIP interpolant (Fritsch-Butland, as scipy's PchipInterpolator)."""
    h = np.diff(x)
    m = np.diff(y) / h
    if len(x) == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(y)
    for k in range(1, len(x) - 1):
        if m[k - 1] * m[k] > 0:  # weighted harmonic mean; zero at local extrema keeps the curve monotone
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])

    def end(h0: float, h1: float, m0: float, m1: float) -> float:
        slope = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(slope) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(slope) > 3 * abs(m0):
            return 3 * m0
        return slope

    d[0] = end(h[0], h[1], m[0], m[1])
    d[-1] = end(h[-1], h[-2], m[-1], m[-2])
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over [lo, hi] (inside [x0, xn]) of the PCHIP interpolant through (x, y)."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(x[k], lo), min(x[k + 1], hi)
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        m = (y[k + 1] - y[k]) / h
        c2 = (3 * m - 2 * d[k] - d[k + 1]) / h  # the Hermite cubic in power form around x[k]
        c3 = (d[k] + d[k + 1] - 2 * m) / h**2

        def antiderivative(s: float) -> float:
            return y[k] * s + d[k] * s**2 / 2 + c2 * s**3 / 3 + c3 * s**4 / 4

        total += antiderivative(b - x[k]) - antiderivative(a - x[k])
    return float(total)


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    if method == "pchip":
        return _pchip_integral(x, y, lo, hi)
    poly = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(poly, hi) - np.polyval(poly, lo))


def _curve(rates: Sequence[float], qualities: Sequence[float], method: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(log10 rate, quality) of the curve's Pareto points, sorted; None if too few to interpolate."""
    if method not in BD_METHODS:
        raise ValueError(f"method must be one of {BD_METHODS}, not {method!r}")
    idx = [i for i in pareto_front(rates, qualities) if rates[i] > 0]
    if len(idx) < (4 if method == "cubic" else 2):
        return None
    return np.log10([rates[i] for i in idx]), np.array([qualities[i] for i in idx], dtype=np.float64)


def _mean_gap(anchor_rates: Sequence[float], anchor_quality: Sequence[float], test_rates: Sequence[float],
              test_quality: Sequence[float], method: str, along_quality: bool) -> float:
    """Mean of (test - anchor) over the overlap: log10(rate) along quality, or quality along log10(rate)."""
    a, t = _curve(anchor_rates, anchor_quality, method), _curve(test_rates, test_quality, method)
    if a is None or t is None:
        return math.nan
    x, y = (1, 0) if along_quality else (0, 1)
    lo, hi = max(a[x].min(), t[x].min()), min(a[x].max(), t[x].max())
    if hi <= lo:
        return math.nan
    return float((_integral(t[x], t[y], lo, hi, method) - _integral(a[x], a[y], lo, hi, method)) / (hi - lo))


def bd_rate(anchor_rates: Sequence[float], anchor_quality: Sequence[float], test_rates: Sequence[float],
            test_quality: Sequence[float], method: str = "pchip") -> float:
    """Bjontegaard delta rate in percent: the test's mean rate change at equal quality (negative = fewer bits).

    log10(rate) is interpolated against quality over the overlapping quality range (see BD_DESCRIPTION);
    points that no cheaper point beats are used (:func:`pareto_front`). NaN if the curves do not overlap
    or have too few points.
    """
    diff = _mean_gap(anchor_rates, anchor_quality, test_rates, test_quality, method, along_quality=True)
    return float((10**diff - 1) * 100)


def bd_quality(anchor_rates: Sequence[float], anchor_quality: Sequence[float], test_rates: Sequence[float],
               test_quality: Sequence[float], method: str = "pchip") -> float:
    """Bjontegaard delta quality (BD-PSNR for PSNR): the test's mean quality gain at equal rate.

    Quality is interpolated against log10(rate) over the overlapping rate range. NaN if no overlap.
    """
    return _mean_gap(anchor_rates, anchor_quality, test_rates, test_quality, method, along_quality=False)


# ---------------------------------------------------------------------------------------------- sweep


@dataclass
class Measurement:
    """One image coded at one setting of one codec: a row of the per-image CSV."""

    image: str
    width: int
    height: int
    codec: str
    setting: str
    bytes: int
    bpp: float
    psnr_rgb: float
    psnr_y: float
    ssim: float
    ms_ssim: float
    encode_ms: float
    decode_ms: float
    on_frontier: bool = True  # tinycodec: whether this setting is on the curve (set by summarize)


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """The images of a folder, sorted by name; the first ``limit`` of them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TinyCodecError(f"not a folder: {folder}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise TinyCodecError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return images[:limit] if limit else images


def load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise TinyCodecError(f"cannot read {path}: {exc}") from None
    if min(rgb.shape[:2]) < MSSSIM_MIN_SIDE:
        raise TinyCodecError(f"{path.name} is {rgb.shape[1]}x{rgb.shape[0]}: MS-SSIM needs at least "
                             f"{MSSSIM_MIN_SIDE} pixels on each side")
    return rgb


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """One thread for torch and AVIF while measuring: comparable timings, and N jobs use N cores."""
    from PIL import AvifImagePlugin

    threads, avif_threads = torch.get_num_threads(), AvifImagePlugin.DEFAULT_MAX_THREADS
    torch.set_num_threads(1)
    AvifImagePlugin.DEFAULT_MAX_THREADS = 1  # the AVIF decoder reads this
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        AvifImagePlugin.DEFAULT_MAX_THREADS = avif_threads


def measure(rgb: np.ndarray, name: str, codec: Codec, setting: Setting) -> Measurement:
    start = time.perf_counter()
    data = codec.encode(rgb, setting)
    mid = time.perf_counter()
    out = codec.decode(data)
    end = time.perf_counter()
    if out.shape != rgb.shape:
        raise TinyCodecError(f"{codec.name} decoded {name} to shape {out.shape}, expected {rgb.shape}")
    h, w = rgb.shape[:2]
    return Measurement(
        image=name, width=w, height=h, codec=codec.key, setting=codec.label(setting), bytes=len(data),
        bpp=8 * len(data) / (w * h), psnr_rgb=psnr(rgb, out), psnr_y=psnr_y(rgb, out), ssim=ssim_rgb(rgb, out),
        ms_ssim=ms_ssim_rgb(rgb, out), encode_ms=(mid - start) * 1000, decode_ms=(end - mid) * 1000,
    )


def warm_up(codecs: Sequence[Codec]) -> None:
    """Load models and libraries once, so that no measured time includes them."""
    rgb = np.full((64, 64, 3), 128, np.uint8)
    for codec in codecs:
        for setting in (codec.quick_sweep if isinstance(codec, TinyCodec) else codec.quick_sweep[:1]):
            codec.decode(codec.encode(rgb, setting))


Task = tuple[str, str, Setting]  # (image path, codec key, setting)
_image_cache: dict[str, np.ndarray] = {}


def _run_task(task: Task) -> Measurement:
    path, key, setting = task
    if path not in _image_cache:  # tasks arrive grouped by image: keep the current ones only
        if len(_image_cache) >= 4:
            _image_cache.pop(next(iter(_image_cache)))
        _image_cache[path] = load_rgb(Path(path))
    return measure(_image_cache[path], Path(path).name, CODECS[key], setting)


def _init_worker(keys: list[str]) -> None:
    torch.set_num_threads(1)
    from PIL import AvifImagePlugin

    AvifImagePlugin.DEFAULT_MAX_THREADS = 1
    warm_up([CODECS[k] for k in keys])


def run_sweep(images: Sequence[Path], codecs: Sequence[Codec], quick: bool = False, jobs: int = 1,
              progress: bool | None = None) -> list[Measurement]:
    """Code every image with every setting of every codec; ``jobs`` worker processes (1: in this process).

    ``progress``: a tqdm bar on stderr (None: only when stderr is a terminal).
    """
    from tqdm import tqdm

    for path in images:  # fail early on an unreadable or too small image, not after minutes of work
        load_rgb(path)
    tasks: list[Task] = [(str(p), c.key, s) for p in images for c in codecs for s in c.settings(quick)]
    bar = tqdm(total=len(tasks), desc="rd", unit="code", disable=(None if progress is None else not progress),
               dynamic_ncols=True)
    records: list[Measurement] = []
    try:
        if jobs <= 1:
            with single_threaded():
                warm_up(codecs)
                for task in tasks:
                    records.append(_run_task(task))
                    bar.update()
        else:
            # spawn, not fork: a forked copy of a process that has started torch's thread pool can hang.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(jobs, initializer=_init_worker, initargs=([c.key for c in codecs],)) as pool:
                for record in pool.imap_unordered(_run_task, tasks, chunksize=1):
                    records.append(record)
                    bar.update()
    finally:
        bar.close()
        _image_cache.clear()
    return records


# ------------------------------------------------------------------------------------------- summaries


@dataclass
class CodecResult:
    """One codec's curve in CompressAI's results format, plus the settings behind each point."""

    codec: Codec
    settings: list[str]
    results: dict[str, list[float]]
    images: int
    all_points: dict[str, list] = field(default_factory=dict)  # every setting (tinycodec: before the frontier)

    def to_json(self, dataset: str, method: str) -> dict:
        return {
            "name": self.codec.name,
            "description": (f"{self.codec.description()}. {dataset}, {self.images} images; per-image metrics "
                            f"averaged per setting (CompressAI's convention); bpp from whole encoded files; "
                            f"psnr-y on BT.601 studio-range luma. BD deltas: {BD_DESCRIPTION[method]}."),
            "settings": self.settings,
            "results": {k: [_finite_or_none(v) for v in vals] for k, vals in self.results.items()},
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no inf: identical images give null


RESULT_KEYS = {"bpp": "bpp", "psnr-rgb": "psnr_rgb", "psnr-y": "psnr_y", "ssim": "ssim", "ms-ssim": "ms_ssim",
               "encode_ms": "encode_ms", "decode_ms": "decode_ms"}


def summarize(records: list[Measurement], codecs: Sequence[Codec]) -> dict[str, CodecResult]:
    """Mean of the per-image values per setting; tinycodec's settings reduced to the Pareto frontier.

    Marks ``on_frontier`` in the records.
    """
    out: dict[str, CodecResult] = {}
    for codec in codecs:
        by_setting: dict[str, list[Measurement]] = {}
        for r in records:
            if r.codec == codec.key:
                by_setting.setdefault(r.setting, []).append(r)
        if not by_setting:
            continue
        labels = list(by_setting)
        means = {k: [float(np.mean([getattr(r, attr) for r in by_setting[s]])) for s in labels]
                 for k, attr in RESULT_KEYS.items()}
        keep = list(range(len(labels)))
        if isinstance(codec, TinyCodec):  # a setting stays if it is on the frontier for PSNR or for MS-SSIM
            keep = sorted(set(pareto_front(means["bpp"], means["psnr-rgb"]))
                          | set(pareto_front(means["bpp"], means["ms-ssim"])))
            for s in labels:
                for r in by_setting[s]:
                    r.on_frontier = labels.index(s) in keep
        keep.sort(key=lambda i: means["bpp"][i])
        out[codec.key] = CodecResult(
            codec=codec, settings=[labels[i] for i in keep],
            results={k: [v[i] for i in keep] for k, v in means.items()},
            images=len(by_setting[labels[0]]),
            all_points={"settings": labels, **means},
        )
    return out


def bd_table(results: dict[str, CodecResult], dataset: str, images: int, method: str = "pchip") -> str:
    """The markdown table of BD-rate (PSNR-RGB, MS-SSIM) and BD-PSNR: every codec against JPEG, and
    tinycodec against every other codec."""

    def row(anchor: CodecResult, test: CodecResult) -> list[str]:
        a, t = anchor.results, test.results
        a_db = [ms_ssim_db(v) for v in a["ms-ssim"]]
        t_db = [ms_ssim_db(v) for v in t["ms-ssim"]]
        lo, hi = max(min(a["psnr-rgb"]), min(t["psnr-rgb"])), min(max(a["psnr-rgb"]), max(t["psnr-rgb"]))
        return [
            _pct(bd_rate(a["bpp"], a["psnr-rgb"], t["bpp"], t["psnr-rgb"], method)),
            _pct(bd_rate(a["bpp"], a["psnr-y"], t["bpp"], t["psnr-y"], method)),
            _pct(bd_rate(a["bpp"], a_db, t["bpp"], t_db, method)),
            _db(bd_quality(a["bpp"], a["psnr-rgb"], t["bpp"], t["psnr-rgb"], method)),
            f"{lo:.1f}–{hi:.1f}" if hi > lo else "none",
        ]

    header = ("| {} | BD-rate PSNR-RGB | BD-rate PSNR-Y | BD-rate MS-SSIM (dB) | BD-PSNR-RGB (dB) "
              "| PSNR-RGB overlap (dB) |\n|---|---:|---:|---:|---:|---|")
    lines = [
        f"# BD-rate and BD-PSNR on {dataset} ({images} images)",
        "",
        f"Bjøntegaard deltas, interpolation: {BD_DESCRIPTION[method]} (BD-PSNR: quality against log10(rate) "
        "over the overlapping rate range). Each curve is the mean of per-image values per setting "
        "(CompressAI's convention); MS-SSIM in dB is −10·log10(1 − MS-SSIM). A negative BD-rate means fewer "
        "bits than the anchor for the same quality; n/a: the curves do not overlap.",
        "",
    ]
    others = [k for k in results if k != ANCHOR]
    if ANCHOR in results and others:
        lines += ["## Against JPEG (anchor)", "", header.format("codec")]
        lines += [f"| {results[k].codec.name} | " + " | ".join(row(results[ANCHOR], results[k])) + " |"
                  for k in others]
        lines.append("")
    ours = (TinyCodec, PyramidCodec)
    tinycodecs = [k for k, res in results.items() if isinstance(res.codec, ours)] if len(results) > 1 else []
    for tc in tinycodecs:
        lines += [f"## {results[tc].codec.name} against each codec (anchor)", "", header.format("anchor")]
        lines += [f"| {results[k].codec.name} | " + " | ".join(row(results[k], results[tc])) + " |"
                  for k in results if k != tc]
        lines.append("")
    if len(lines) == 4:
        lines.append("Nothing to compare: run JPEG with another codec, or tinycodec with another codec.")
    return "\n".join(lines) + "\n"


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.1f}%"


def _db(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.2f}"


# --------------------------------------------------------------------------------------------- outputs

COLORS = {"jpeg": "tab:blue", "webp": "tab:orange", "avif": "tab:green", "jxl": "tab:purple", "tinycodec": "tab:red",
          "tinycodec-refined": "darkred", "pyramid": "black", "pyramid-refine": "tab:gray",
          "pyramid-overfit": "tab:brown"}
PLOTS: dict[str, tuple[str, str, Callable[[float], float]]] = {  # file stem: (result key, axis label, transform)
    "rd_psnr": ("psnr-rgb", "PSNR-RGB (dB)", float),
    "rd_psnr_y": ("psnr-y", "PSNR-Y, BT.601 (dB)", float),
    "rd_msssim": ("ms-ssim", "MS-SSIM (dB) = −10·log10(1 − MS-SSIM)", ms_ssim_db),
}
X_MAX = 4.0


def plot(results: dict[str, CodecResult], stem: str, dataset: str, images: int, path: Path) -> None:
    """One rate-distortion plot as PNG (matplotlib's Agg canvas: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    key, ylabel, transform = PLOTS[stem]
    fig = Figure(figsize=(8, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown: list[float] = []
    for k, res in results.items():
        pts = res.all_points
        y_all = [transform(v) for v in pts[key]]
        front = pareto_front(pts["bpp"], y_all)
        xs, ys = [pts["bpp"][i] for i in front], [y_all[i] for i in front]
        is_tc = isinstance(res.codec, TinyCodec)
        ax.plot(xs, ys, marker="o", ms=4 if not is_tc else 5, lw=2.5 if is_tc else 1.6,
                color=COLORS.get(k), label=res.codec.name + (" (Pareto frontier)" if is_tc else ""), zorder=3)
        rest = [i for i in range(len(y_all)) if i not in front and math.isfinite(y_all[i])]
        if rest:
            ax.scatter([pts["bpp"][i] for i in rest], [y_all[i] for i in rest], s=12, color=COLORS.get(k),
                       alpha=0.35, label=f"{res.codec.name}, other settings", zorder=2)
        shown += [y for x, y in zip(pts["bpp"], y_all) if x <= X_MAX and math.isfinite(y)]
    seed_metric = {"psnr-y": 1, "ms-ssim": 2}.get(key)
    note = "seed points were reported as PSNR-Y: see rd_psnr_y.png"
    if seed_metric is not None:
        for label, pts, marker, color in (("TinyCompress", SEED_TINYCOMPRESS, "*", "tab:red"),
                                          ("JPEG", SEED_JPEG, "s", "tab:blue")):
            xs = [p[0] for p in pts.values()]
            ys = [transform(p[seed_metric]) for p in pts.values()]
            ax.scatter(xs, ys, marker=marker, s=110 if marker == "*" else 50, facecolors="none",
                       edgecolors=color, linewidths=1.4, zorder=4,
                       label=f"{label} (seed, one Kodak image, as reported)")
            shown += [y for x, y in zip(xs, ys) if x <= X_MAX]
        off = [f"{n} {p[0]:.2f} bpp" for n, p in {**SEED_TINYCOMPRESS, **SEED_JPEG}.items() if p[0] > X_MAX]
        note = "seed points off the plot: " + ", ".join(off) if off else ""
    if note:  # top left: no codec reaches high quality at almost no rate, so this corner stays empty
        ax.text(0.01, 0.99, note, transform=ax.transAxes, ha="left", va="top", fontsize=7, color="0.35")
    ax.set_xlim(0, X_MAX)
    if shown:
        lo, hi = min(shown), max(shown)
        ax.set_ylim(lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo))
    ax.set_xlabel("rate (bits per pixel)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{dataset} ({images} image{'s' if images != 1 else ''}): {ylabel.split(' (')[0]} against rate")
    ax.grid(True, which="major", alpha=0.4)
    ax.minorticks_on()
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)


def write_csv(records: list[Measurement], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f.name for f in fields(Measurement)])
        for r in records:
            writer.writerow([_csv_value(v) for v in asdict(r).values()])


def _csv_value(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}" if not math.isinf(value) else "inf"
    return value


@dataclass
class Report:
    """What ``run_rd`` did: the files written and the BD table."""

    files: list[Path]
    table: str
    images: int
    measurements: int


def run_rd(data_dir: str | Path, out_dir: str | Path, codecs: str | None = None,
           quick: bool = False, jobs: int = 1, limit: int | None = None, method: str = "pchip",
           progress: bool | None = None) -> Report:
    """The whole comparison: sweep, JSON per codec, per-image CSV, plots and the BD table."""
    skipped: list[str] = []
    selected = select_codecs(codecs, skipped)
    for line in skipped:
        print(f"tinycodec rd: skipped {line}", file=sys.stderr)
    images = list_images(data_dir, limit)
    dataset = Path(data_dir).resolve().name
    records = run_sweep(images, selected, quick=quick, jobs=jobs, progress=progress)
    # A stable order in the CSV whatever order the workers finished in.
    order = {(c.key, c.label(s)): (i, j) for i, c in enumerate(selected) for j, s in enumerate(c.settings(quick))}
    records.sort(key=lambda r: (order[r.codec, r.setting], r.image))
    results = summarize(records, selected)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for key, res in results.items():
        path = out / f"rd_{key}.json"
        path.write_text(json.dumps(res.to_json(dataset, method), indent=2) + "\n")
        files.append(path)
    write_csv(records, out / "rd_per_image.csv")
    files.append(out / "rd_per_image.csv")
    for stem in PLOTS:
        plot(results, stem, dataset, len(images), out / f"{stem}.png")
        files.append(out / f"{stem}.png")
    table = bd_table(results, dataset, len(images), method)
    (out / "bd_table.md").write_text(table)
    files.append(out / "bd_table.md")
    return Report(files=files, table=table, images=len(images), measurements=len(records))
