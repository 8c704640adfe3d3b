"""Bringing any Pillow image (or array) to what the codec codes, and back.

The networks work on RGB. Grey images are coded through the same RGB path and
restored as grey ("L"). Alpha is carried losslessly in its own planes. Images
with more than 8 bits per sample are reduced to 8 bits (a warning says so):
16-bit integer samples by 1/257, float (F) samples taken as 0..1.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import TinyCodecError


@dataclass
class Planar:
    """An image ready for coding: 8-bit RGB plus optional alpha."""

    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) uint8 or None
    grey: bool  # restore as L / LA


class HighBitDepthWarning(UserWarning):
    """The input had more than 8 bits per sample and was reduced to 8."""


def _to_8bit(im: Image.Image) -> Image.Image:
    """I;16* and I are taken as 16-bit samples (0..65535 -> 0..255); F as 0..1 floats."""
    arr = np.asarray(im).astype(np.float64)
    scale = 255.0 if im.mode == "F" else 1 / 257.0
    data = np.clip(np.rint(arr * scale), 0, 255)
    warnings.warn(f"{im.mode} image reduced to 8 bits per sample", HighBitDepthWarning, stacklevel=3)
    return Image.fromarray(data.astype(np.uint8), "L")


_BAND_PIXELS = 1 << 22  # rows converted at a time from large Pillow images


def _pixels(im: Image.Image) -> np.ndarray:
    """``np.asarray(im)`` (uint8), for large images built a band of rows at a time.

    ``np.asarray`` goes through ``im.tobytes()``, which for a 100-megapixel
    RGB image holds 300 MB of chunks and 300 MB joined on top of Pillow's own
    400 MB; band by band the peak is the result plus one band.
    """
    width, height = im.size
    if width * height <= _BAND_PIXELS:
        return np.asarray(im, dtype=np.uint8)
    first = np.asarray(im.crop((0, 0, width, 1)), dtype=np.uint8)
    out = np.empty((height, *first.shape[1:]), dtype=np.uint8)
    rows = max(1, _BAND_PIXELS // width)
    for y in range(0, height, rows):
        out[y : y + rows] = np.asarray(im.crop((0, y, width, min(height, y + rows))), dtype=np.uint8)
    return out


def from_pil(im: Image.Image) -> Planar:
    mode = im.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        im, mode = _to_8bit(im), "L"
    if mode in ("La", "RGBa"):  # premultiplied alpha: undo it first
        mode = mode.upper()
        im = im.convert(mode)
    if mode == "1":
        im, mode = im.convert("L"), "L"
    if mode in ("P", "PA", "L", "RGB") and im.has_transparency_data:
        # palette alpha, or a tRNS colour key: make the transparency an alpha channel
        mode = "LA" if mode == "L" else "RGBA"
        im = im.convert(mode)
    elif mode == "P":
        im, mode = im.convert("RGB"), "RGB"
    if mode in ("L", "LA"):
        grey = _pixels(im.getchannel("L"))
        alpha = _pixels(im.getchannel("A")) if mode == "LA" else None
        return Planar(np.repeat(grey[:, :, None], 3, axis=2), alpha, True)
    if mode == "RGBA":
        arr = _pixels(im)
        return Planar(np.ascontiguousarray(arr[:, :, :3]), np.ascontiguousarray(arr[:, :, 3]), False)
    if mode != "RGB":  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as exc:
            raise TinyCodecError(f"cannot convert a {mode} image to RGB: {exc}") from None
    return Planar(_pixels(im), None, False)


def from_array(arr: np.ndarray) -> Planar:
    """HxW (grey), HxWx1, HxWx2 (grey+alpha), HxWx3 (RGB) or HxWx4 (RGBA) uint8."""
    if arr.dtype != np.uint8:
        raise TinyCodecError(f"array images must be uint8, not {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise TinyCodecError(f"array images must be HxW or HxWxC with C in 1..4, not shape {arr.shape}")
    c = arr.shape[2]
    alpha = np.ascontiguousarray(arr[:, :, -1]) if c in (2, 4) else None
    if c <= 2:
        return Planar(np.repeat(arr[:, :, :1], 3, axis=2), alpha, True)
    return Planar(np.ascontiguousarray(arr[:, :, :3]), alpha, False)


def to_planar(image: Image.Image | np.ndarray) -> Planar:
    if isinstance(image, Image.Image):
        planar = from_pil(image)
    elif isinstance(image, np.ndarray):
        planar = from_array(image)
    else:
        raise TypeError(f"expected a PIL image or a numpy array, not {type(image).__name__}")
    h, w = planar.rgb.shape[:2]
    if h < 1 or w < 1:
        raise TinyCodecError(f"image has no pixels ({w}x{h})")
    return planar


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None, grey: bool) -> Image.Image:
    if grey:
        # The three decoded channels of a grey image differ slightly; their mean is the best estimate.
        lum = np.rint(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
        if alpha is None:
            return Image.fromarray(lum, "L")
        return Image.fromarray(np.stack([lum, alpha], axis=2), "LA")
    if alpha is None:
        return Image.fromarray(rgb, "RGB")
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def bicubic_down(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Crop an HxWxC uint8 array to multiples of ``factor``, then Pillow bicubic to 1/factor.

    The degradation the super-resolution benchmarks use and the filters were
    trained and calibrated on (tools and int8 calibration share this one).
    """
    h, w = rgb.shape[0] // factor * factor, rgb.shape[1] // factor * factor
    im = Image.fromarray(np.ascontiguousarray(rgb[:h, :w]))
    return np.asarray(im.resize((w // factor, h // factor), Image.BICUBIC))
