"""File helpers: reading input images and .tcz files, and writing outputs atomically."""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from . import container
from .codec import DEFAULT_PLANES, DEFAULT_SCALE, decode, encode
from .errors import TinyCodecError
from .limits import DEFAULT_LIMITS, Limits

PathLike = str | os.PathLike

# Test hook: with this set to N, write_atomic writes half of its output, sleeps N seconds,
# then writes the rest, so that tests can kill a real tcenc/tcdec in the middle of a write.
PAUSE_MID_WRITE_ENV = "TINYCODEC_TEST_PAUSE_MID_WRITE"
TEMP_SUFFIX = ".part"  # temporary outputs are hidden: ".NAME.XXXXXXXX.part" beside NAME
_READ_CHUNK = 1 << 20


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


def read_tcz(source: PathLike | BinaryIO, *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Read one .tcz file from a path or a binary stream, reading no further than its header allows.

    The header is read and verified first (magic, checksum, pixel and payload
    limits); then exactly the declared payload, plus one byte so that the
    decoder can report trailing data. Something that is not a .tcz file costs
    a 12-byte read, however large it is; a truncated file comes back short (the
    decoder refuses it, or decodes its complete planes with ``partial=True``).
    """
    if not isinstance(source, (str, os.PathLike)):
        return _read_tcz_stream(source, limits)
    try:
        with open(source, "rb") as f:
            return _read_tcz_stream(f, limits)
    except FileNotFoundError:
        raise TinyCodecError(f"no such file: {source}") from None
    except IsADirectoryError:
        raise TinyCodecError(f"is a directory: {source}") from None


def _read_tcz_stream(stream: BinaryIO, limits: Limits) -> bytes:
    head = _read_up_to(stream, 12)
    header_len = container.header_length(head)
    # at least the fixed fields, so that a too-small header length is reported as such, not as truncation
    head += _read_up_to(stream, max(header_len, container.MIN_HEADER) - len(head))
    _, table, _ = container.read_header(head, limits=limits)
    payload = _read_up_to(stream, sum(sum(lengths) for _, lengths in table))
    return head + payload + _read_up_to(stream, 1)


def _read_up_to(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream); memory grows with what arrives, not with n."""
    parts, got = [], 0
    while got < n:
        part = stream.read(min(n - got, _READ_CHUNK))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def write_atomic(path: PathLike, data: bytes | None = None, *, image: Image.Image | None = None,
                 format: str | None = None) -> None:
    """Write bytes, or an image via Pillow, so that ``path`` is either complete or untouched.

    The data goes to a hidden temporary file in the target directory
    (``.NAME.XXXXXXXX.part``), which is flushed to disk and then renamed over
    ``path``. Any exception on the way (KeyboardInterrupt and the CLI's SIGTERM
    included) removes the temporary file; only SIGKILL or a power cut can leave
    one behind, and never a partial file under the final name.
    """
    path = Path(path)
    if image is not None:  # rendered first: a format error then leaves nothing behind at all
        buffer = io.BytesIO()
        image.save(buffer, format=format or _format_for(path))
        data = buffer.getvalue()
    elif data is None:
        raise TypeError("write_atomic needs data or image")
    try:  # the name is capped so that the temporary name stays within NAME_MAX
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not our temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as f:
            pause = os.environ.get(PAUSE_MID_WRITE_ENV)
            if pause:
                half = len(data) // 2
                f.write(data[:half])
                f.flush()
                time.sleep(float(pause))
                data = data[half:]
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from None  # say which output failed
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a crash right after it must not bring back the old file)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # not supported here (e.g. Windows); the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def encode_file(src: PathLike, dst: PathLike, scale: int = DEFAULT_SCALE, planes: int = DEFAULT_PLANES) -> int:
    """Encode an image file to a .tcz file; returns the number of bytes written."""
    data = encode(read_image(src), scale=scale, planes=planes)
    write_atomic(dst, data)
    return len(data)


def decode_file(src: PathLike, dst: PathLike, *, partial: bool = False,
                limits: Limits = DEFAULT_LIMITS) -> Image.Image:
    """Decode a .tcz file to an image file (format from the extension); returns the image."""
    image = decode(read_tcz(src, limits=limits), partial=partial, limits=limits)
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
