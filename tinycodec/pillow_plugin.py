"""Pillow plugin: ``Image.open("x.tcz")`` and ``im.save("x.tcz", scale=16, planes=6)``.

Registered by ``import tinycodec``. A thin layer over the Python API:

* opening reads only the header, so ``size``, ``mode`` and ``info`` (ICC
  profile, EXIF orientation, scale and planes) are there before any pixel is
  decoded; the pixels are decoded on ``load()`` (or anything that needs them);
* ``verify()`` checks structure and every checksum without decoding;
* with ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` a truncated file decodes
  progressively, as Pillow does for other formats: the bit-planes that arrived
  of a TinyCompress file saved with ``progressive=True`` (entropy coder 3), the
  tiles that arrived whole of a default (coder 4) file;
* saving takes ``scale`` (4, 16, 64, 256), ``planes`` (1..8) and ``progressive``
  (as for JPEG: a file whose every prefix decodes) for TinyCompress, or
  ``quality`` (0..100, and ``family``, ``effort``, ``refine``) for the rate-distortion families, and
  ``icc_profile`` / ``exif`` like Pillow's other savers (by default the image's
  own).

Data errors surface as Pillow's do: ``OSError`` when loading or saving,
``SyntaxError`` from ``verify()``.
"""

from __future__ import annotations

import dataclasses
from typing import IO

from PIL import Image, ImageFile

from . import codec, container, families
from .errors import TinyCodecError
from .files import write_fully
from .image import to_planar
from .limits import DEFAULT_LIMITS
from .metadata import ORIENTATION_TAG, Metadata

FORMAT = "TCZ"
MIME = "image/x-tcz"
EXTENSION = ".tcz"
_DECODER = "tcz"


def _accept(prefix: bytes) -> bool:
    return prefix[: len(container.MAGIC)] == container.MAGIC


class TczImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "tinycodec learned image"

    def _open(self) -> None:
        assert self.fp is not None
        start = self.fp.read(12)
        try:
            head = start + self.fp.read(max(container.header_length(start) - len(start), 0))
            # Pillow applies its own decompression-bomb limit after _open; ours would only get in its way.
            unlimited = container.MAX_DIMENSION**2
            if families.identify(start) != families.TINYCOMPRESS:
                from .container_v2 import read_header as read_header_v2

                header = read_header_v2(head, limits=dataclasses.replace(DEFAULT_LIMITS, max_pixels=unlimited))[0]
                downscale = None
            else:
                header, _, _ = container.read_header(head, max_pixels=unlimited)
                downscale = container.find_downscale(header)
        except TinyCodecError as exc:
            raise SyntaxError(str(exc)) from None
        # the size decoding produces: a --downscale file decodes to its original size
        self._size = (downscale[1], downscale[2]) if downscale else (header.width, header.height)
        self._mode = header.mode
        Metadata.from_extensions(header.extensions).attach(self)
        if hasattr(header, "quality"):
            self.info["tcz_quality"] = header.quality
        else:
            self.info["tcz_scale"] = header.scale
            self.info["tcz_planes"] = header.planes
        tile = (_DECODER, (0, 0, *self.size), 0, (self.info,))  # the decoder reports planes decoded there
        self.tile = [ImageFile._Tile(*tile) if hasattr(ImageFile, "_Tile") else tile]  # _Tile: Pillow >= 11

    def verify(self) -> None:
        """Check the whole file (structure, every CRC, coder and model known) without decoding pixels."""
        if self.fp is None:
            raise RuntimeError("verify must be called directly after open")
        self.fp.seek(0)
        try:
            limit = self.size[0] * self.size[1]
            codec.verify(families.read_declared(self.fp, max_pixels=limit), max_pixels=limit)
        except TinyCodecError as exc:
            raise SyntaxError(str(exc)) from None
        finally:
            super().verify()  # closes the file if Pillow opened it, as other plugins do


class _TczDecoder(ImageFile.PyDecoder):
    """Decodes the whole file at once (the codec's tiles are not Pillow's tiles)."""

    _pulls_fd = True

    def __init__(self, mode: str, info: dict, *args) -> None:
        super().__init__(mode, *args)
        self.image_info = info

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        assert self.fd is not None
        width, height = self.state.xsize, self.state.ysize
        try:
            data = families.read_declared(self.fd, max_pixels=width * height)  # not what follows the file
            image = codec.decode(data, partial=bool(ImageFile.LOAD_TRUNCATED_IMAGES), max_pixels=width * height)
        except TinyCodecError as exc:
            raise OSError(str(exc)) from None
        if codec.INFO_PLANES_DECODED in image.info:
            self.image_info[codec.INFO_PLANES_DECODED] = image.info[codec.INFO_PLANES_DECODED]
        self.set_as_raw(image.tobytes(), image.mode)
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    options = im.encoderinfo
    metadata = Metadata.from_image(im)
    icc = options.get("icc_profile", metadata.icc_profile)
    orientation = metadata.orientation
    if "exif" in options:
        exif = options["exif"]
        if not isinstance(exif, Image.Exif):
            parsed = Image.Exif()
            parsed.load(exif or b"")
            exif = parsed
        value = exif.get(ORIENTATION_TAG)
        orientation = value if isinstance(value, int) and 1 <= value <= 8 else None
    try:
        if options.get("quality") is not None:
            data = codec.encode_rd(to_planar(im), int(options["quality"]), str(options.get("effort", "fast")),
                                   int(options.get("refine", 0)), Metadata(icc or None, orientation),
                                   options.get("family"))
        else:
            data = codec.encode_planar(
                to_planar(im), int(options.get("scale", codec.DEFAULT_SCALE)),
                int(options.get("planes", codec.DEFAULT_PLANES)), metadata=Metadata(icc or None, orientation),
                refine=int(options.get("refine", 0)), progressive=bool(options.get("progressive", False)),
            )
    except TinyCodecError as exc:
        raise OSError(str(exc)) from None
    write_fully(fp, data, filename.decode(errors="replace") if isinstance(filename, bytes) else str(filename or "<stream>"))


def register() -> None:
    """Make Pillow open and save .tcz files (done by ``import tinycodec``; repeating it is harmless)."""
    Image.register_open(FORMAT, TczImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
    Image.register_decoder(_DECODER, _TczDecoder)
