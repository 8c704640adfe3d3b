"""File helpers: reading input images and .tcz files, and writing outputs atomically."""

from __future__ import annotations

import errno
import functools
import os
import socket
import stat
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from . import container, families
from .codec import decode, encode_planar
from .errors import TinyCodecError
from .image import Planar, to_planar
from .limits import DEFAULT_LIMITS, Limits
from .metadata import Metadata
from .options import DEFAULT_PLANES, DEFAULT_SCALE

PathLike = str | os.PathLike

# Test hook: with this set to N, write_atomic writes half of its output, sleeps N seconds,
# then writes the rest, so that tests can kill a real tcenc/tcdec in the middle of a write.
PAUSE_MID_WRITE_ENV = "TINYCODEC_TEST_PAUSE_MID_WRITE"
TEMP_SUFFIX = ".part"  # temporary outputs are hidden: ".NAME.PID-HOST.XXXXXXXX.part" beside NAME


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
        return families.read_declared(source, limits=limits)
    try:
        with open(source, "rb") as f:
            return families.read_declared(f, limits=limits)
    except FileNotFoundError:
        raise TinyCodecError(f"no such file: {source}") from None
    except IsADirectoryError:
        raise TinyCodecError(f"is a directory: {source}") from None


def write_atomic(path: PathLike, data: bytes | None = None, *, image: Image.Image | None = None,
                 format: str | None = None, options: dict | None = None, overwrite: bool = True) -> None:
    """Write bytes, or an image via Pillow, so that ``path`` is either complete or untouched.

    The guard every output file goes through. The data goes to a hidden temporary file in the
    target directory (``.NAME.PID-HOST.XXXXXXXX.part``), which is flushed to disk and then put in
    place: renamed over ``path`` with ``overwrite``, otherwise hard-linked to ``path``, which
    fails if anything is there, however late it appeared (two racing writers: one wins, the
    other gets "already exists"). Any exception on the way (KeyboardInterrupt and the CLI's
    SIGTERM included) removes the temporary file; after a SIGKILL or a power cut, the next
    write into the same folder removes temporaries whose process is gone. ``options`` are
    passed to ``Image.save``; images are streamed into the file, not rendered in memory first.

    What is at ``path`` decides how (:func:`output_target`): a symbolic link is followed (a
    dangling one is refused); a FIFO or a character device (``/dev/null``) is written through,
    never replaced; a terminal, a folder, a block device or a socket is refused. Every error
    names ``path``, never the temporary file.
    """
    path = Path(path)
    if image is None and data is None:
        raise TypeError("write_atomic needs data or image")
    fmt = (format or _format_for(path)) if image is not None else None  # an unknown format fails before writing
    target, through = output_target(path, overwrite)
    if through:
        _write_through(path, data, image, fmt, options)
        return
    _remove_stale_temporaries(target.parent)
    try:  # the name is capped so that the temporary name stays within NAME_MAX
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:200]}.{os.getpid()}-{_host_tag()}.", suffix=TEMP_SUFFIX,
                                   dir=target.parent)
    except OSError as exc:  # name the file the user asked for, not our temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as f:
            pause = float(os.environ.get(PAUSE_MID_WRITE_ENV) or 0)
            if image is not None:
                image.save(_NoFileno(f), format=fmt, **(options or {}))
                _pause_for_tests(f, pause)  # written, not yet renamed into place
            else:
                half = len(data) // 2 if pause else 0
                f.write(data[:half])
                _pause_for_tests(f, pause)
                f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            _place_new(tmp, target, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from None  # say which output failed
        raise
    _fsync_dir(target.parent)


def output_target(path: PathLike, overwrite: bool) -> tuple[Path, bool]:
    """Where an output to ``path`` goes: (file to create or replace, False) or (``path``, True) to
    write through it. Raises TinyCodecError for what must not be written (see :func:`write_atomic`).

    Also the early check of the CLI, before any work; :func:`write_atomic` checks again when it
    places the file, since anything can appear in between.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path, False
    except NotADirectoryError:
        raise TinyCodecError(f"{path}: a part of the path is not a folder") from None
    target = path
    if stat.S_ISLNK(st.st_mode):  # followed: the link stays, its target is written
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise TinyCodecError(f"{path} is a dangling symbolic link: not writing through it") from None
        target = Path(os.path.realpath(path))
    if stat.S_ISREG(st.st_mode):
        if not overwrite:
            raise TinyCodecError(f"{path} already exists (use -f to overwrite)")
        return target, False
    if stat.S_ISDIR(st.st_mode):
        raise TinyCodecError(f"{path} is a folder")
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
        return path, True
    raise TinyCodecError(f"{path} is not a regular file, a pipe or a character device: not writing to it")


def _write_through(path: Path, data: bytes | None, image: Image.Image | None, fmt: str | None,
                   options: dict | None) -> None:
    """Write into an existing FIFO or character device (never created, truncated or replaced)."""
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    if os.isatty(fd):
        os.close(fd)
        raise TinyCodecError(f"{path} is a terminal: refusing to write binary data to it")
    try:
        with os.fdopen(fd, "wb") as f:
            if image is not None:
                image.save(_NoFileno(f), format=fmt, **(options or {}))
                f.flush()
            else:
                write_fully(f, data, str(path))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


# link() is not supported everywhere (FAT, some network and FUSE file systems)
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def _place_new(tmp: str, target: Path, path: Path) -> None:
    """Put the finished temporary file at ``target`` only if nothing is there: link() fails
    if the name exists, atomically. Where hard links do not exist, the name is reserved with
    O_EXCL and then replaced."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise TinyCodecError(f"{path} already exists (use -f to overwrite)") from None
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise TinyCodecError(f"{path} already exists (use -f to overwrite)") from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


_CLEANED: set[str] = set()


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove ``.NAME.PID-HOST.XXXXXXXX.part`` files of this host whose process is gone (a SIGKILL, a power cut).

    Once per folder per process. A live process keeps its own (its PID still exists, or
    belongs to another user); the PID may be reused, which only keeps a stale file longer.
    Temporaries of another host (a cluster node writing to the same shared folder, a container
    with its own host name) are never judged here: their PIDs mean nothing on this one.
    Names without a host (``.NAME.PID.XXXXXXXX.part``, older tinycodec) count as this host's.
    Temporaries of a writer in another PID namespace that shares the folder and the host name
    look orphaned: such setups should give each writer its own folder.
    """
    key = os.path.abspath(folder)
    if key in _CLEANED:
        return
    _CLEANED.add(key)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
            continue
        parts = name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or len(parts[2]) != 8:
            continue
        pid, _, host = parts[1].partition("-")
        if not pid.isdigit() or host not in ("", _host_tag()):
            continue
        if int(pid) == os.getpid() or _process_exists(int(pid)):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:
            pass  # not ours to remove, or already gone


@functools.cache
def _host_tag() -> str:
    """8 hex digits naming this host in temporary names (a hash: host names can hold anything)."""
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or a PID we cannot ask about: assume alive
    return True


def write_fully(stream: BinaryIO, data: bytes, name: str = "<stdout>") -> None:
    """Write all of ``data`` to an open stream (stdout, a pipe, a device) or raise OSError naming ``name``.

    The guard for every output that is not a file written by :func:`write_atomic`. A raw file
    object (stdout under ``python -u`` or PYTHONUNBUFFERED) may write only part of a buffer and
    say so in its return value, which ``write`` callers ignore: with RLIMIT_FSIZE or a full disk
    the output was cut short and the command succeeded. Here every write loops until done.
    """
    view = memoryview(data).cast("B")
    try:
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
            fd = None
        stream.flush()  # whatever was written before goes first
        while view:
            n = os.write(fd, view) if fd is not None else stream.write(view)
            if not n:  # None: a non-blocking stream that would block; 0: nothing was written
                raise OSError(errno.EIO, "write made no progress")
            view = view[n:]
        stream.flush()
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, name) from None


class _NoFileno:
    """A file that Pillow must write through Python's ``write``.

    Given a file descriptor, Pillow's C encoders write to it without checking
    for short writes: with the disk (or RLIMIT_FSIZE) full mid-buffer the
    output was silently truncated and the command succeeded. Python's buffered
    writer raises instead.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def __getattr__(self, name: str):
        if name == "fileno":
            raise AttributeError(name)
        return getattr(self._f, name)


def _pause_for_tests(f: BinaryIO, seconds: float) -> None:
    if seconds:
        f.flush()
        time.sleep(seconds)


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
    return format_for_suffix(path.suffix or path.name)


def format_for_suffix(suffix: str) -> str:
    """Pillow's format name for a file extension such as ".png", or a TinyCodecError."""
    Image.preinit()  # PNG, JPEG, BMP, GIF, PPM; Pillow's other plugins are loaded (all of them) only for other formats
    fmt = Image.EXTENSION.get(suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
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
                keep_metadata: bool = True, workers: int = 1, **run) -> int:
    """Encode an image file to a .tcz file; returns the number of bytes written.

    run: ``downscale``, ``backend``, ``device``, ``precision`` as for :func:`tinycodec.encode`.
    """
    source = read_source(src, keep_metadata=keep_metadata)
    data = encode_planar(source.planar, scale, planes, metadata=source.metadata, workers=workers, **run)
    write_atomic(dst, data)
    return len(data)


def decode_file(src: PathLike, dst: PathLike, *, partial: bool = False, keep_metadata: bool = True,
                workers: int = 1, limits: Limits = DEFAULT_LIMITS, **run) -> Image.Image:
    """Decode a .tcz file to an image file (format from the extension); returns the image.

    run: ``enhance``, ``backend``, ``device``, ``precision`` as for :func:`tinycodec.decode`.
    """
    data = read_tcz(src, limits=limits)
    image = decode(data, partial=partial, limits=limits, workers=workers, **run)
    del data
    save_image(image, dst, keep_metadata=keep_metadata)
    return image


def save_image(image: Image.Image, dst: PathLike, format: str | None = None, *, keep_metadata: bool = True,
               overwrite: bool = True) -> None:
    """Save atomically, format from the extension unless given; tinycodec's errors.

    The image's ICC profile and EXIF block (``image.info``) are written too,
    in the formats that hold them, unless ``keep_metadata`` is False. Without
    ``overwrite`` an existing file is never replaced (see :func:`write_atomic`).
    """
    fmt = format or _format_for(Path(dst))  # fail before writing anything
    try:
        write_atomic(dst, image=image, format=fmt,
                     options={**LOSSLESS_OPTIONS.get(fmt, {}), **_metadata_options(image, keep_metadata)},
                     overwrite=overwrite)
    except (KeyError, ValueError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a real I/O failure (disk full, permissions): the caller reports it
        raise TinyCodecError(f"cannot save a {image.mode} image as {fmt}: {exc}") from None


def save_image_to(f: BinaryIO, image: Image.Image, format: str, *, keep_metadata: bool = True) -> None:
    """:func:`save_image` to an open binary file (stdout, a buffer)."""
    try:
        image.save(f, format=format, **LOSSLESS_OPTIONS.get(format.upper(), {}), **_metadata_options(image, keep_metadata))
    except (KeyError, ValueError) as exc:
        raise TinyCodecError(f"cannot save a {image.mode} image as {format}: {exc}") from None


# Decoded images are written losslessly in every format that has a lossless mode (a decoder should not add
# a second generation of loss unasked); JPEG has none, and is written at Pillow's quality 95, 4:4:4.
LOSSLESS_OPTIONS: dict[str, dict] = {
    "WEBP": {"lossless": True},
    "AVIF": {"quality": 100, "subsampling": "4:4:4"},  # as close as libavif comes through Pillow
    "JPEG": {"quality": 95, "subsampling": 0},
    "JPEG2000": {"irreversible": False},
}


def _metadata_options(image: Image.Image, keep: bool) -> dict[str, bytes | None]:
    """``Image.save`` arguments that write the image's metadata, or that write none.

    Formats without these fields ignore them. Explicit empty values are needed
    to drop them: some savers (PNG, TIFF) fall back to ``image.info``.
    """
    if not keep:
        return {"icc_profile": None, "exif": b""}
    return {key: image.info[key] for key in ("icc_profile", "exif") if image.info.get(key)}
