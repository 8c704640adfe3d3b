"""The codec pipeline: image -> encoder network -> quantiser -> entropy coder -> container, and back."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import backends, container, entropy, quantize, runtime
from .container import ALPHA_PLANES, DEFAULT_MAX_PIXELS, DOWNSCALE_FACTORS, Header
from .enhance import NONE, enhance_planes, fit_to_size, parse_filter
from .errors import TinyCodecError
from .image import Planar, to_pil, to_planar
from .models import SCALE_DEPTHS
from .zoo import current_entry, entry_for_file, model_name

DEFAULT_SCALE = 16
DEFAULT_PLANES = 8
DEFAULT_TILE = 256  # latent elements per tile side
SCALES = tuple(sorted(SCALE_DEPTHS))

# Encoder-side pixel cap; the decoder's cap is the ``max_pixels`` argument.
MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS


class PartialAlphaWarning(UserWarning):
    """A partial decode had the colour planes but not the whole alpha channel."""


@dataclass
class DecodeInfo:
    """What a decode found in the file."""

    width: int  # of the decoded image (the original size, or enlarged by a super-resolution filter)
    height: int
    scale: int
    planes: int  # kept planes in the file
    planes_decoded: int  # fewer than ``planes`` only for a partial decode
    model: str
    mode: str
    downscale: int = 1  # the image was coded at 1/downscale of its size (tcenc --downscale)
    enhance: str = NONE  # the filter applied after decoding


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


def _downscale(planar: Planar, factor: int) -> Planar:
    """Pillow bicubic to ceil(size / factor): the degradation SRUNet was trained to undo."""
    h, w = planar.rgb.shape[:2]
    size = (-(-w // factor), -(-h // factor))
    rgb = np.asarray(Image.fromarray(planar.rgb, "RGB").resize(size, Image.BICUBIC))
    alpha = None
    if planar.alpha is not None:
        alpha = np.asarray(Image.fromarray(planar.alpha, "L").resize(size, Image.BICUBIC))
    return Planar(rgb, alpha, planar.grey)


def encode(image: Image.Image | np.ndarray, scale: int = DEFAULT_SCALE, planes: int = DEFAULT_PLANES,
           *, tile: int = DEFAULT_TILE, downscale: int = 1, backend: str = "auto", device: str = "cpu",
           precision: str = "fp32") -> bytes:
    """Encode an image to ``.tcz`` bytes.

    image: a PIL image (any mode Pillow reads; grey stays grey, alpha is kept
        losslessly, 16-bit input is reduced to 8 bits with a warning) or a
        uint8 array of shape HxW, HxWx1, HxWx2, HxWx3 or HxWx4.
    scale: pixels per latent element: 4, 16, 64 or 256 (larger = smaller file).
    planes: most significant bit-planes of the 8-bit latent kept, 1..8 (fewer = smaller file).
    tile: tile side in latent elements (tiles are coded independently).
    downscale: 2 or 4 codes the image at 1/downscale of its width and height
        (Pillow bicubic) and records the original size; ``decode(..., enhance="srunet")``
        restores it with super-resolution, plain ``decode`` with bicubic. Fewer bits, less detail.
    backend, device, precision: what runs the encoder network (see :mod:`tinycodec.backends`):
        backend ``auto`` (the fastest available), ``torch``, ``onnx`` or ``tensorrt``; device ``cpu``
        or ``cuda``; precision ``fp32``, ``fp16`` (cuda) or ``int8``. The file is valid for every
        decoder whatever runs it; another backend gives a slightly different (equally valid) file.

    Raises TinyCodecError for images the codec cannot take (BackendError for a backend that is not
    available here), ValueError for bad arguments.
    """
    if scale not in SCALE_DEPTHS:
        raise ValueError(f"scale must be one of {SCALES}, not {scale}")
    quantize.check_planes(planes)
    if not 8 <= tile <= 0xFFFF:
        raise ValueError("tile must be 8..65535 latent elements")
    if downscale != 1 and downscale not in DOWNSCALE_FACTORS:
        raise ValueError(f"downscale must be 1 or one of {DOWNSCALE_FACTORS}, not {downscale}")
    backends.check_request(backend, device, precision)
    planar: Planar = to_planar(image)
    height, width = planar.rgb.shape[:2]
    if width * height > MAX_IMAGE_PIXELS:
        raise TinyCodecError(f"image of {width}x{height} pixels exceeds the limit of {MAX_IMAGE_PIXELS} pixels")
    extensions = []
    if downscale != 1:
        extensions.append(container.downscale_record(downscale, width, height))
        planar = _downscale(planar, downscale)
        height, width = planar.rgb.shape[:2]

    depth = SCALE_DEPTHS[scale]
    entry = current_entry(model_name(scale))
    try:
        latent = runtime.run_encoder(entry, scale, _pad_to_multiple(planar.rgb, 1 << depth), backend=backend,
                                     device=device, precision=precision)
    except (MemoryError, RuntimeError) as exc:
        raise TinyCodecError(f"cannot encode a {width}x{height} image here: {exc}") from None
    lo, hi = quantize.latent_range(latent)
    symbols = quantize.quantize(latent, lo, hi, planes)

    header = Header(
        width=width, height=height, color_channels=1 if planar.grey else 3,
        has_alpha=planar.alpha is not None, depth=depth, planes=planes, coder_id=entropy.CODER_ID,
        tile=tile, lo=tuple(float(v) for v in lo), hi=tuple(float(v) for v in hi),
        model=entry.model, weights_id=entry.short_id, extensions=extensions,
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


def simulate_rgb(rgb: np.ndarray, scale: int, planes: int = DEFAULT_PLANES, *, backend: str = "auto",
                 device: str = "cpu", precision: str = "fp32") -> np.ndarray:
    """The RGB image ``decode(encode(rgb, scale, planes))`` returns, without running the entropy coder.

    The coder is lossless, so skipping it changes nothing but the time; used to
    make training pairs for the enhancement filters. rgb: (H, W, 3) uint8.
    """
    depth = SCALE_DEPTHS[scale]
    quantize.check_planes(planes)
    height, width = rgb.shape[:2]
    entry = current_entry(model_name(scale))
    run = {"backend": backend, "device": device, "precision": precision}
    latent = runtime.run_encoder(entry, scale, _pad_to_multiple(rgb, 1 << depth), **run)
    lo, hi = quantize.latent_range(latent)
    symbols = quantize.quantize(latent, lo, hi, planes)
    latent = quantize.dequantize(symbols, np.asarray(lo, np.float32), np.asarray(hi, np.float32), planes)
    return runtime.run_decoder(entry, scale, latent, **run)[:height, :width]


def decode_with_info(data: bytes, *, partial: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                     enhance: str = NONE, backend: str = "auto", device: str = "cpu",
                     precision: str = "fp32") -> tuple[Image.Image, DecodeInfo]:
    """Decode ``.tcz`` bytes; also report what was decoded. See :func:`decode`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, not {type(data).__name__}")
    data = bytes(data)
    choice = parse_filter(enhance)  # an unknown filter fails before any work
    backends.check_request(backend, device, precision)  # and so does a backend that is not here
    if choice is not None:
        backends.check_request(backend, device, choice.precision)
    unpacked = container.unpack(data, partial=partial, max_pixels=max_pixels)
    header, groups = unpacked.header, unpacked.groups
    downscale = container.find_downscale(header)
    out_w, out_h = (downscale[1], downscale[2]) if downscale else (header.width, header.height)
    if choice is not None and not downscale:
        out_w, out_h = out_w * choice.spec.upscale, out_h * choice.spec.upscale
    if out_w * out_h > max_pixels:
        raise TinyCodecError(f"output of {out_w}x{out_h} pixels exceeds the limit of {max_pixels} pixels")
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
        symbols[:, rows, cols] = _decode_tile(segments, header.planes, shape)
    lo = np.array(header.lo, dtype=np.float32)
    hi = np.array(header.hi, dtype=np.float32)
    latent = quantize.dequantize(symbols, lo, hi, decoded_planes)
    try:
        rgb = runtime.run_decoder(entry, scale, latent, backend=backend, device=device,
                                  precision=precision)[: header.height, : header.width]
    except (MemoryError, RuntimeError) as exc:  # torch reports allocation failures as RuntimeError
        raise TinyCodecError(f"cannot decode a {header.width}x{header.height} image here: {exc}") from None

    alpha = None
    if header.has_alpha:
        alpha_groups = groups[header.planes :]
        if len(alpha_groups) == ALPHA_PLANES:
            alpha = np.empty((header.height, header.width), dtype=np.uint8)
            for index, (rows, cols) in enumerate(_tile_slices(header, 1 << header.depth)):
                shape = (1, *alpha[rows, cols].shape)
                alpha[rows, cols] = _decode_tile([g[index] for g in alpha_groups], ALPHA_PLANES, shape)[0]
        else:  # partial file: colour arrived, alpha did not; show it opaque rather than fail
            alpha = np.full((header.height, header.width), 255, dtype=np.uint8)
            warnings.warn("alpha planes incomplete in partial file: shown opaque", PartialAlphaWarning, stacklevel=2)

    grey = header.color_channels == 1
    if choice is None:
        image = to_pil(np.ascontiguousarray(rgb), alpha, grey)
    else:
        image = enhance_planes(np.ascontiguousarray(rgb), alpha, grey, choice, backend=backend, device=device)
    if downscale:
        image = fit_to_size(image, out_w, out_h)
    info = DecodeInfo(image.width, image.height, scale, header.planes, decoded_planes, header.model, image.mode,
                      downscale[0] if downscale else 1, choice.name if choice else NONE)
    return image, info


def _decode_tile(segments: list[bytes], planes: int, shape: tuple[int, int, int]) -> np.ndarray:
    try:
        return entropy.decode_tile(segments, planes, shape)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - constriction signals bad data with AssertionError or a Rust panic
        raise TinyCodecError(f"corrupt .tcz payload: {exc}") from None


def decode(data: bytes, *, partial: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
           enhance: str = NONE, backend: str = "auto", device: str = "cpu", precision: str = "fp32") -> Image.Image:
    """Decode ``.tcz`` bytes to a PIL image (mode L, LA, RGB or RGBA, the original size).

    partial: accept a truncated file and decode the bit-planes that arrived
        whole (progressive decoding); without it a truncated file is an error.
    max_pixels: refuse files that declare more pixels than this, before
        allocating anything for them.
    enhance: a learned filter run on the decoded image (see
        :func:`tinycodec.enhance.filter_names`): ``unet`` removes coding
        artefacts; ``srunet`` and ``tinypssr-x2/x4`` enlarge the image, or
        restore the original size of a file encoded with ``downscale``; ``srunet-int8`` and the
        like run the filter in that precision.
    backend, device, precision: what runs the decoder network (and the filter: its precision is
        part of its name), as for :func:`encode`. Any file decodes with any of them.

    Raises TinyCodecError for anything wrong with the data (BackendError for a backend that is not
    available here).
    """
    return decode_with_info(data, partial=partial, max_pixels=max_pixels, enhance=enhance, backend=backend,
                            device=device, precision=precision)[0]
