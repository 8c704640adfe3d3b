"""File helpers: reading input images and writing outputs atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from .codec import DEFAULT_PLANES, DEFAULT_SCALE, decode, encode
from .errors import TinyCodecError

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
                 format: str | None = None) -> None:
    """Write bytes, or an image via Pillow, so that ``path`` is either complete or untouched.

    The data goes to a temporary file in the target directory, which is renamed
    over ``path`` only once it is fully written and flushed.
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
                image.save(f, format=format or _format_for(path))
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
    ext = path.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise TinyCodecError(f"unknown output image format '{ext or path.name}': use e.g. .png")
    return fmt


def encode_file(src: PathLike, dst: PathLike, scale: int = DEFAULT_SCALE, planes: int = DEFAULT_PLANES,
                **run) -> int:
    """Encode an image file to a .tcz file; returns the number of bytes written.

    run: ``backend``, ``device``, ``precision`` as for :func:`tinycodec.encode`.
    """
    data = encode(read_image(src), scale=scale, planes=planes, **run)
    write_atomic(dst, data)
    return len(data)


def decode_file(src: PathLike, dst: PathLike, *, partial: bool = False, **run) -> Image.Image:
    """Decode a .tcz file to an image file (format from the extension); returns the image.

    run: ``backend``, ``device``, ``precision`` (and ``enhance``) as for :func:`tinycodec.decode`.
    """
    try:
        data = Path(src).read_bytes()
    except FileNotFoundError:
        raise TinyCodecError(f"no such file: {src}") from None
    except IsADirectoryError:
        raise TinyCodecError(f"is a directory: {src}") from None
    image = decode(data, partial=partial, **run)
    save_image(image, dst)
    return image


def save_image(image: Image.Image, dst: PathLike, format: str | None = None) -> None:
    """Save atomically, format from the extension unless given; tinycodec's errors."""
    fmt = format or _format_for(Path(dst))  # fail before writing anything
    try:
        write_atomic(dst, image=image, format=fmt)
    except (KeyError, ValueError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a real I/O failure (disk full, permissions): the caller reports it
        raise TinyCodecError(f"cannot save a {image.mode} image as {fmt}: {exc}") from None
