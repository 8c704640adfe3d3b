"""tinycodec: a learned image codec small enough for edge devices.

Flat functions, in the manner of imagecodecs::

    data = tinycodec.encode(image, scale=16, planes=8)   # PIL image or uint8 array -> bytes
    image = tinycodec.decode(data)                         # bytes -> PIL image
    tinycodec.encode_file("in.png", "out.tcz", scale=16)
    tinycodec.decode_file("out.tcz", "out.png")
    big = tinycodec.enhance(image, "tinypssr-x2")         # learned filters, on any image

Every problem a caller can cause with data (bad file, unsupported image,
missing weights) raises :class:`TinyCodecError`.
"""

from __future__ import annotations

from .codec import DEFAULT_PLANES, DEFAULT_SCALE, SCALES, DecodeInfo, decode, decode_with_info, encode
from .enhance import enhance, filter_names
from .errors import TinyCodecError
from .files import decode_file, encode_file, read_image, save_image, write_atomic

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PLANES", "DEFAULT_SCALE", "SCALES", "DecodeInfo", "TinyCodecError", "__version__",
    "decode", "decode_file", "decode_with_info", "encode", "encode_file", "enhance", "filter_names", "read_image",
    "save_image", "write_atomic",
]
