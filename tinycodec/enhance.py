"""Learned enhancement of images: after decoding, or on any photograph.

A filter is named ``NAME`` or ``NAME-PRECISION``, e.g. ``unet``, ``srunet``,
``tinypssr-x2``, ``srunet-int8``. Every shipped filter has fp32 weights; the
fp16 and int8 variants are made from them by the inference backends (int8:
ONNX Runtime on the CPU or TensorRT; fp16: CUDA), see :mod:`tinycodec.backends`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import backends, runtime
from .errors import TinyCodecError
from .image import to_pil, to_planar
from .options import FILTERS, NONE, PRECISIONS, FilterSpec
from .zoo import current_entry

DEFAULT_TILE = 512  # input pixels per tile side: bounds memory on large images


@dataclass(frozen=True)
class FilterChoice:
    spec: FilterSpec
    precision: str

    @property
    def name(self) -> str:
        return self.spec.name if self.precision == "fp32" else f"{self.spec.name}-{self.precision}"


def filter_names() -> list[str]:
    """Every accepted ``enhance`` name, ``none`` first."""
    return [NONE] + [name if p == "fp32" else f"{name}-{p}" for name in FILTERS for p in PRECISIONS]


def parse_filter(name: str) -> FilterChoice | None:
    """``None`` for ``none``; a clear TinyCodecError for names we do not ship.

    Whether the precision can run here depends on the backend and device: see
    :func:`tinycodec.backends.check_request`.
    """
    name = name.strip().lower()
    if name == NONE:
        return None
    base, _, precision = name.rpartition("-")
    if precision not in PRECISIONS:
        base, precision = name, "fp32"
    if base not in FILTERS:
        known = ", ".join([NONE, *FILTERS])
        raise TinyCodecError(f"unknown enhancement filter '{name}': choose from {known} (optionally -fp16 or -int8)")
    return FilterChoice(FILTERS[base], precision)


def enhance_rgb(rgb: np.ndarray, choice: FilterChoice, tile: int = DEFAULT_TILE, *, backend: str = "auto",
                device: str = "cpu") -> np.ndarray:
    """(H, W, 3) uint8 -> (H*r, W*r, 3) uint8 through the chosen filter, in the choice's precision."""
    entry = current_entry(choice.spec.name)
    try:
        return runtime.run_filter_rgb(entry, choice.spec, rgb, tile=tile, backend=backend, device=device,
                                      precision=choice.precision)
    except (MemoryError, RuntimeError) as exc:  # torch reports allocation failures as RuntimeError
        raise TinyCodecError(f"cannot run {choice.name} on a {rgb.shape[1]}x{rgb.shape[0]} image here: {exc}") from None


def enhance(image: Image.Image | np.ndarray, filter: str, *, tile: int = DEFAULT_TILE, backend: str = "auto",
            device: str = "cpu") -> Image.Image:
    """Run a learned filter on an image; returns a PIL image (enlarged by super-resolution filters).

    image: a PIL image or uint8 array, as for :func:`tinycodec.encode`. Grey
        images stay grey; alpha is resized with Pillow's bicubic filter.
    filter: ``tinypssr-x2``, ``tinypssr-x4``, ``unet`` or ``srunet`` (see :func:`filter_names`),
        optionally with a precision: ``srunet-int8``, ``unet-fp16`` (cuda).
    tile: input pixels per tile side; tiles overlap so the result has no seams.
    backend, device: what runs the filter (``auto``/``torch``/``onnx``/``tensorrt``, ``cpu``/``cuda``).
    """
    planar = to_planar(image)
    choice = parse_filter(filter)
    if choice is None:
        return to_pil(planar.rgb, planar.alpha, planar.grey)
    backends.check_request(backend, device, choice.precision, filters=True)
    return enhance_planes(planar.rgb, planar.alpha, planar.grey, choice, tile, backend=backend, device=device)


def enhance_planes(rgb: np.ndarray, alpha: np.ndarray | None, grey: bool, choice: FilterChoice,
                   tile: int = DEFAULT_TILE, *, backend: str = "auto", device: str = "cpu") -> Image.Image:
    """The filter on decoded planes (colour, optional alpha, grey flag) -> PIL image."""
    out = enhance_rgb(rgb, choice, tile, backend=backend, device=device)
    if alpha is not None and out.shape[:2] != alpha.shape:
        size = (out.shape[1], out.shape[0])
        alpha = np.asarray(Image.fromarray(alpha, "L").resize(size, Image.BICUBIC))
    return to_pil(out, alpha, grey)


def fit_to_size(image: Image.Image, width: int, height: int) -> Image.Image:
    """Bring an enhanced (or not) image to a file's original size.

    A 2x filter on a ``--downscale 2`` file overshoots odd sizes by one pixel:
    crop. Anything else (no filter, a 4x filter) is resized with Pillow's bicubic.
    """
    if image.size == (width, height):
        return image
    if 0 <= image.width - width <= 1 and 0 <= image.height - height <= 1:
        return image.crop((0, 0, width, height))
    return image.resize((width, height), Image.BICUBIC)
