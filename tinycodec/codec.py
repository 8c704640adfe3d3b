"""The codec pipeline: image -> encoder network -> quantiser -> entropy coder -> container, and back."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import container, entropy, quantize, runtime
from .container import ALPHA_PLANES, Header
from .errors import TinyCodecError
from .image import Planar, to_pil, to_planar
from .limits import DEFAULT_LIMITS, Deadline, Limits
from .models import SCALE_DEPTHS
from .zoo import current_entry, entry_for_file, model_name

DEFAULT_SCALE = 16
DEFAULT_PLANES = 8
DEFAULT_TILE = 256  # latent elements per tile side
SCALES = tuple(sorted(SCALE_DEPTHS))

# Encoder-side pixel cap: the decoder's default, so that no file is written that a default reader refuses.
MAX_IMAGE_PIXELS = DEFAULT_LIMITS.max_pixels


class PartialAlphaWarning(UserWarning):
    """A partial decode had the colour planes but not the whole alpha channel."""


@dataclass
class DecodeInfo:
    """What a decode found in the file."""

    width: int
    height: int
    scale: int
    planes: int  # kept planes in the file
    planes_decoded: int  # fewer than ``planes`` only for a partial decode
    model: str
    mode: str


def _tile_slices(header: Header, tile_scale: int = 1):
    """(row slice, col slice) of every tile, in file order; ``tile_scale`` 2**k gives pixel tiles."""
    rows, cols = header.tiles
    t = header.tile * tile_scale
    for r in range(rows):
        for c in range(cols):
            yield slice(r * t, (r + 1) * t), slice(c * t, (c + 1) * t)


def _pad_to_multiple(rgb: np.ndarray, step: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    ph, pw = -h % step, -w % step
    if ph or pw:  # edge replication keeps the padding cheap to code and seam-free
        rgb = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return rgb


def encode(image: Image.Image | np.ndarray, scale: int = DEFAULT_SCALE, planes: int = DEFAULT_PLANES,
           *, tile: int = DEFAULT_TILE) -> bytes:
    """Encode an image to ``.tcz`` bytes.

    image: a PIL image (any mode Pillow reads; grey stays grey, alpha is kept
        losslessly, 16-bit input is reduced to 8 bits with a warning) or a
        uint8 array of shape HxW, HxWx1, HxWx2, HxWx3 or HxWx4.
    scale: pixels per latent element: 4, 16, 64 or 256 (larger = smaller file).
    planes: most significant bit-planes of the 8-bit latent kept, 1..8 (fewer = smaller file).
    tile: tile side in latent elements (tiles are coded independently).

    Raises TinyCodecError for images the codec cannot take, ValueError for bad arguments.
    """
    if scale not in SCALE_DEPTHS:
        raise ValueError(f"scale must be one of {SCALES}, not {scale}")
    quantize.check_planes(planes)
    if not 8 <= tile <= 0xFFFF:
        raise ValueError("tile must be 8..65535 latent elements")
    planar: Planar = to_planar(image)
    height, width = planar.rgb.shape[:2]
    if width * height > MAX_IMAGE_PIXELS:
        raise TinyCodecError(f"image of {width}x{height} pixels exceeds the limit of {MAX_IMAGE_PIXELS} pixels")

    depth = SCALE_DEPTHS[scale]
    entry = current_entry(model_name(scale))
    try:
        latent = runtime.run_encoder(entry, scale, _pad_to_multiple(planar.rgb, 1 << depth))
    except (MemoryError, RuntimeError) as exc:
        raise TinyCodecError(f"cannot encode a {width}x{height} image here: {exc}") from None
    lo, hi = quantize.latent_range(latent)
    symbols = quantize.quantize(latent, lo, hi, planes)

    header = Header(
        width=width, height=height, color_channels=1 if planar.grey else 3,
        has_alpha=planar.alpha is not None, depth=depth, planes=planes, coder_id=entropy.CODER_ID,
        tile=tile, lo=tuple(float(v) for v in lo), hi=tuple(float(v) for v in hi),
        model=entry.model, weights_id=entry.short_id,
    )
    groups: list[list[bytes]] = [[] for _ in range(header.n_groups)]
    for rows, cols in _tile_slices(header):
        for plane, segment in enumerate(entropy.encode_tile(np.ascontiguousarray(symbols[:, rows, cols]), planes)):
            groups[plane].append(segment)
    if planar.alpha is not None:
        for rows, cols in _tile_slices(header, 1 << depth):
            tile_alpha = np.ascontiguousarray(planar.alpha[None, rows, cols])
            for plane, segment in enumerate(entropy.encode_tile(tile_alpha, ALPHA_PLANES)):
                groups[planes + plane].append(segment)
    return container.pack(header, groups)


def decode_with_info(data: bytes, *, partial: bool = False, max_pixels: int | None = None,
                     limits: Limits = DEFAULT_LIMITS) -> tuple[Image.Image, DecodeInfo]:
    """Decode ``.tcz`` bytes; also report what was decoded. See :func:`decode`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, not {type(data).__name__}")
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a tinycodec.Limits, not {type(limits).__name__}")
    data = bytes(data)
    unpacked = container.unpack(data, partial=partial, limits=limits, max_pixels=max_pixels)
    try:
        return _decode_unpacked(unpacked, limits.deadline(unpacked.header.width, unpacked.header.height))
    except MemoryError:  # the limits keep this rare, but a small machine can still run out
        h = unpacked.header
        raise TinyCodecError(f"not enough memory to decode a {h.width}x{h.height} image here") from None


def _decode_unpacked(unpacked: container.Decoded, deadline: Deadline) -> tuple[Image.Image, DecodeInfo]:
    header, groups = unpacked.header, unpacked.groups
    if header.coder_id != entropy.CODER_ID:
        raise TinyCodecError(f"file uses entropy coder {header.coder_id}, this tinycodec has {entropy.CODER_ID}")
    for ext_type, _ in header.extensions:
        if ext_type & container.EXT_CRITICAL:
            raise TinyCodecError(f"file needs header extension {ext_type}, unknown to this tinycodec: upgrade")
    scale = header.scale
    if header.model != model_name(scale):
        raise TinyCodecError(f"file names model '{header.model}' for scale level {scale}: not a known pairing")
    entry = entry_for_file(header.model, header.weights_id)

    colour_groups = groups[: header.planes]
    decoded_planes = len(colour_groups)
    if decoded_planes == 0:
        raise TinyCodecError("truncated .tcz file: not even the first bit-plane arrived")
    lh, lw = header.latent_size
    symbols = np.empty((3, lh, lw), dtype=np.uint8)
    for index, (rows, cols) in enumerate(_tile_slices(header)):
        shape = symbols[:, rows, cols].shape
        segments = [group[index] for group in colour_groups]
        symbols[:, rows, cols] = entropy.decode_tile(segments, header.planes, shape, deadline.check)
    lo = np.array(header.lo, dtype=np.float32)
    hi = np.array(header.hi, dtype=np.float32)
    latent = quantize.dequantize(symbols, lo, hi, decoded_planes)
    try:
        rgb = runtime.run_decoder(entry, scale, latent)[: header.height, : header.width]
    except (MemoryError, RuntimeError) as exc:  # torch reports allocation failures as RuntimeError
        raise TinyCodecError(f"cannot decode a {header.width}x{header.height} image here: {exc}") from None
    deadline.check()  # the network is one call: its time counts, though it cannot be cut short

    alpha = None
    if header.has_alpha:
        alpha_groups = groups[header.planes :]
        if len(alpha_groups) == ALPHA_PLANES:
            alpha = np.empty((header.height, header.width), dtype=np.uint8)
            for index, (rows, cols) in enumerate(_tile_slices(header, 1 << header.depth)):
                shape = (1, *alpha[rows, cols].shape)
                segments = [g[index] for g in alpha_groups]
                alpha[rows, cols] = entropy.decode_tile(segments, ALPHA_PLANES, shape, deadline.check)[0]
        else:  # partial file: colour arrived, alpha did not; show it opaque rather than fail
            alpha = np.full((header.height, header.width), 255, dtype=np.uint8)
            warnings.warn("alpha planes incomplete in partial file: shown opaque", PartialAlphaWarning, stacklevel=3)

    image = to_pil(np.ascontiguousarray(rgb), alpha, header.color_channels == 1)
    info = DecodeInfo(header.width, header.height, scale, header.planes, decoded_planes, header.model, image.mode)
    return image, info


def decode(data: bytes, *, partial: bool = False, max_pixels: int | None = None,
           limits: Limits = DEFAULT_LIMITS) -> Image.Image:
    """Decode ``.tcz`` bytes to a PIL image (mode L, LA, RGB or RGBA, the original size).

    partial: accept a truncated file and decode the bit-planes that arrived
        whole (progressive decoding); without it a truncated file is an error.
    limits: what one decode may cost (pixels, payload size, time per pixel);
        see :class:`tinycodec.Limits`. The pixel and payload limits are checked
        on the header, before anything is allocated for the image.
    max_pixels: shorthand for ``limits.max_pixels``.

    Raises TinyCodecError for anything wrong with the data, a limit included.
    """
    return decode_with_info(data, partial=partial, max_pixels=max_pixels, limits=limits)[0]
