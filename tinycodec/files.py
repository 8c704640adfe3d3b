"""File helpers: reading input images and writing outputs atomically."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from .codec import DEFAULT_PLANES, DEFAULT_SCALE, decode, encode_planar
from .errors import TinyCodecError
from .image import Planar, to_planar
from .metadata import Metadata

PathLike = str | os.PathLike


def read_image(path: PathLike | BinaryIO) -> Image.Image:
    """Open an image (path or binary file object) with Pillow and load it, with tinycodec's errors."""
    if not isinstance(path, (str, os.PathLike)):
        path_name = getattr(path, "name", "<stdin>")
    else:
        path_name = path
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except FileNotFoundError:
        raise TinyCodecError(f"no such file: {path_name}") from None
    except IsADirectoryError:
        raise TinyCodecError(f"is a directory: {path_name}") from None
    except UnidentifiedImageError:
        raise TinyCodecError(f"not an image Pillow can read: {path_name}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise TinyCodecError(f"cannot read image {path_name}: {exc}") from None


def write_atomic(path: PathLike, data: bytes | None = None, *, image: Image.Image | None = None,
                 format: str | None = None, options: dict | None = None) -> None:
    """Write bytes, or an image via Pillow, so that ``path`` is either complete or untouched.

    The data goes to a temporary file in the target directory, which is renamed
    over ``path`` only once it is fully written and flushed. ``options`` are
    passed to ``Image.save``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not our temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as f:
            if image is not None:
                image.save(f, format=format or _format_for(path), **(options or {}))
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _format_for(path: Path) -> str:
    return format_for_suffix(path.suffix or path.name)


def format_for_suffix(suffix: str) -> str:
    """Pillow's format name for a file extension such as ".png", or a TinyCodecError."""
    fmt = Image.registered_extensions().get(suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise TinyCodecError(f"unknown output image format '{suffix}': use e.g. .png")
    return fmt


@dataclass
class SourceImage:
    """An input image read for encoding: its pixels in the codec's form, its metadata, its original mode."""

    planar: Planar
    metadata: Metadata
    mode: str

    @property
    def width(self) -> int:
        return self.planar.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.planar.rgb.shape[0]


def read_source(src: PathLike | BinaryIO, *, keep_metadata: bool = True) -> SourceImage:
    """Read an image for encoding, keeping only what the codec needs.

    The Pillow image is dropped here, before the networks run: a 100-megapixel
    RGB image takes 400 MB in Pillow on top of the 300 MB the codec works from.
    """
    image = read_image(src)
    metadata = Metadata.from_image(image) if keep_metadata else Metadata()
    return SourceImage(to_planar(image), metadata, image.mode)


def encode_file(src: PathLike, dst: PathLike, scale: int = DEFAULT_SCALE, planes: int = DEFAULT_PLANES, *,
                keep_metadata: bool = True, workers: int = 1) -> int:
    """Encode an image file to a .tcz file; returns the number of bytes written."""
    source = read_source(src, keep_metadata=keep_metadata)
    data = encode_planar(source.planar, scale, planes, metadata=source.metadata, workers=workers)
    write_atomic(dst, data)
    return len(data)


def decode_file(src: PathLike, dst: PathLike, *, partial: bool = False, keep_metadata: bool = True,
                workers: int = 1) -> Image.Image:
    """Decode a .tcz file to an image file (format from the extension); returns the image."""
    try:
        data = Path(src).read_bytes()
    except FileNotFoundError:
        raise TinyCodecError(f"no such file: {src}") from None
    except IsADirectoryError:
        raise TinyCodecError(f"is a directory: {src}") from None
    image = decode(data, partial=partial, workers=workers)
    del data
    save_image(image, dst, keep_metadata=keep_metadata)
    return image


def save_image(image: Image.Image, dst: PathLike, format: str | None = None, *, keep_metadata: bool = True) -> None:
    """Save atomically, format from the extension unless given; tinycodec's errors.

    The image's ICC profile and EXIF block (``image.info``) are written too,
    in the formats that hold them, unless ``keep_metadata`` is False.
    """
    fmt = format or _format_for(Path(dst))  # fail before writing anything
    try:
        write_atomic(dst, image=image, format=fmt, options=_metadata_options(image, keep_metadata))
    except (KeyError, ValueError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a real I/O failure (disk full, permissions): the caller reports it
        raise TinyCodecError(f"cannot save a {image.mode} image as {fmt}: {exc}") from None


def save_image_to(f: BinaryIO, image: Image.Image, format: str, *, keep_metadata: bool = True) -> None:
    """:func:`save_image` to an open binary file (stdout, a buffer)."""
    try:
        image.save(f, format=format, **_metadata_options(image, keep_metadata))
    except (KeyError, ValueError) as exc:
        raise TinyCodecError(f"cannot save a {image.mode} image as {format}: {exc}") from None


def _metadata_options(image: Image.Image, keep: bool) -> dict[str, bytes | None]:
    """``Image.save`` arguments that write the image's metadata, or that write none.

    Formats without these fields ignore them. Explicit empty values are needed
    to drop them: some savers (PNG, TIFF) fall back to ``image.info``.
    """
    if not keep:
        return {"icc_profile": None, "exif": b""}
    return {key: image.info[key] for key in ("icc_profile", "exif") if image.info.get(key)}
