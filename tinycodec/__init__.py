"""tinycodec: a learned image codec small enough for edge devices.

Flat functions, in the manner of imagecodecs::

    data = tinycodec.encode(image, scale=16, planes=8)   # PIL image or uint8 array -> bytes
    image = tinycodec.decode(data)                         # bytes -> PIL image
    tinycodec.encode_file("in.png", "out.tcz", scale=16)
    tinycodec.decode_file("out.tcz", "out.png")
    big = tinycodec.enhance(image, "tinypssr-x2")         # learned filters, on any image

Every problem a caller can cause with data (bad file, unsupported image,
missing weights) raises :class:`TinyCodecError`.

Importing tinycodec registers its Pillow plugin: ``Image.open("x.tcz")`` and
``im.save("x.tcz", scale=16, planes=6)`` work from then on.
"""

from __future__ import annotations

from . import pillow_plugin
from .codec import DEFAULT_PLANES, DEFAULT_SCALE, SCALES, DecodeInfo, decode, decode_with_info, encode, verify
from .enhance import enhance, filter_names
from .errors import TinyCodecError
from .files import decode_file, encode_file, read_image, read_tcz, save_image, write_atomic
from .limits import DEFAULT_LIMITS, Limits
from .metadata import Metadata

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LIMITS", "DEFAULT_PLANES", "DEFAULT_SCALE", "SCALES", "DecodeInfo", "Limits", "Metadata",
    "TinyCodecError", "__version__", "decode", "decode_file", "decode_with_info", "encode", "encode_file",
    "enhance", "filter_names", "read_image", "read_tcz", "save_image", "verify", "write_atomic",
]

pillow_plugin.register()
