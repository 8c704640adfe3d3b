"""Shallow family: .tcz bytes -> image, in numpy (no PyTorch on the decoding path).

    container --> z --integer hyper-synthesis--> mean, scale of y --> y --x step(q)--> synthesis --> image
"""

from __future__ import annotations

from PIL import Image

from .. import zoo
from ..container import EXT_CRITICAL
from ..container_v2 import InfoV2, unpack
from ..errors import TinyCodecError
from ..image import to_pil
from ..limits import DEFAULT_LIMITS, Limits
from . import bitstream, layout
from .synthesis import synthesise
from .weights import load_decoder

FAMILY = 2  # the family byte of its files (container_v2)


def _open(data: bytes, partial: bool, limits: Limits):
    unpacked = unpack(bytes(data), partial=partial, limits=limits)
    header = unpacked.header
    for ext_type, _ in header.extensions:
        if ext_type & EXT_CRITICAL:
            raise TinyCodecError(f"file needs header extension {ext_type}, unknown to this tinycodec: upgrade")
    layout.architecture(header.model)  # a model this tinycodec knows, or a clear error
    if header.has_weights:
        raise TinyCodecError("corrupt .tcz header: the shallow family carries no decoder weights in its files")
    return unpacked, zoo.entry_for_file(header.model, header.weights_id)


def verify(data: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    _open(data, False, limits)


def decode_with_info(data: bytes, *, partial: bool = False, limits: Limits = DEFAULT_LIMITS) -> tuple[Image.Image, InfoV2]:
    unpacked, entry = _open(data, partial, limits)
    header = unpacked.header
    if unpacked.segments[0] is None:
        raise TinyCodecError("truncated .tcz file: its hyper-latents did not arrive whole")
    dec = load_decoder(entry)
    deadline = limits.deadline(header.width, header.height)
    try:
        _, k, whole = bitstream.decode_latents(
            unpacked.segments, layout.hyper_shape(header.height, header.width, dec.arch),
            layout.latent_shape(header.height, header.width, dec.arch), header.quality, dec.hyper, dec.coder)
        deadline.check()
        rgb = synthesise(k, dec.synthesis, header.quality, header.height, header.width)
    except MemoryError:
        raise TinyCodecError(f"not enough memory to decode a {header.width}x{header.height} image here") from None
    image = to_pil(rgb, None, header.color_channels == 1)
    return image, InfoV2(header.width, header.height, header.quality, header.model, image.mode, 2, 1 + whole)


def decode(data: bytes, *, partial: bool = False, limits: Limits = DEFAULT_LIMITS) -> Image.Image:
    return decode_with_info(data, partial=partial, limits=limits)[0]
