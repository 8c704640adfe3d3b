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

import importlib
import sys
import types

from . import pillow_plugin
from .errors import TinyCodecError
from .limits import DEFAULT_LIMITS, Limits
from .options import DEFAULT_PLANES, DEFAULT_SCALE, SCALES

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LIMITS", "DEFAULT_PLANES", "DEFAULT_SCALE", "SCALES", "DecodeInfo", "Limits", "Metadata",
    "TinyCodecError", "__version__", "decode", "decode_file", "decode_with_info", "encode", "encode_file",
    "enhance", "filter_names", "read_image", "read_tcz", "save_image", "verify", "write_atomic",
]

# The rest of the API is imported on first use (PEP 562), so that ``import tinycodec`` (and the command
# lines' --help) does not start numpy or PyTorch.
_LAZY = {
    "codec": ("DecodeInfo", "decode", "decode_with_info", "encode", "verify"),
    "enhance": ("enhance", "filter_names"),
    "files": ("decode_file", "encode_file", "read_image", "read_tcz", "save_image", "write_atomic"),
    "metadata": ("Metadata",),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value
        return value
    try:  # tinycodec.codec and the like, as when the package imported every module itself
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # Importing the submodule tinycodec.enhance binds it here; tinycodec.enhance stays the function.
        if name == "enhance" and isinstance(value, types.ModuleType):
            value = value.enhance
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
pillow_plugin.register()
