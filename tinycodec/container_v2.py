"""The ``.tcz`` header of the rate-distortion families (format version 2; format_spec.md, "Version 2").

Same magic, extension records and checksum conventions as version 1; the fields after the header length
name a codec family (1 pyramid, 2 shallow) and list its latent segments. Every field is checked before
anything is allocated from it, and each segment's payload must be at least what the coder can possibly write
for the number of latents the family puts there (the tables cap every symbol's probability, see
``pyramid.laplace``), so a tiny file cannot declare a huge image.
"""

from __future__ import annotations

import importlib
import math
import re
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .container import MAGIC, MAX_DIMENSION, MAX_HEADER, SEGMENT_WORD, _Reader, _varint, header_length
from .errors import TinyCodecError
from .limits import DEFAULT_LIMITS, Limits
from .laplace import MIN_BITS_PER_ELEMENT

VERSION = 2
# family byte -> the module that says how many latents each of its segments codes (``segment_elements``)
FAMILY_LAYOUTS = {1: "tinycodec.pyramid.layout", 2: "tinycodec.shallow.layout"}
MAX_QUALITY = 100
FLAG_WEIGHTS = 0x01  # the file carries its own synthesis weights (effort overfit): one segment before the grids
MAX_WEIGHTS_SEGMENT = 16384  # bytes; the compressed synthesis deltas of one image are 1-3 KB
_FIXED = struct.Struct("<8sBBHIIBBBB")  # magic .. grid count
_U32 = struct.Struct("<I")
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # nothing a terminal could interpret
MAX_BITS_PER_ELEMENT = 25  # a table symbol costs at most 24 bits at constriction's precision, plus rounding
SEGMENT_SLACK_BYTES = 16
MIN_HEADER = _FIXED.size + 1 + 1 + 8 + 1 + 4 + 4


@dataclass
class InfoV2:
    """What decoding a version-2 file found."""

    width: int
    height: int
    quality: int
    model: str
    mode: str
    grids: int  # latent segments in the file
    grids_decoded: int  # fewer: a partial decode

    @property
    def complete(self) -> bool:
        return self.grids_decoded == self.grids


def check_quality(quality: int) -> int:
    """The quality argument of a version-2 encoder, checked."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 0 <= quality <= MAX_QUALITY:
        raise TinyCodecError(f"quality must be an integer from 0 to {MAX_QUALITY}, not {quality!r}")
    return int(quality)


def check_request(family: str, efforts: tuple[str, ...], quality: int, effort: str, has_alpha: bool) -> int:
    """What every version-2 encoder refuses (bad quality, an effort the family lacks, alpha); the quality."""
    quality = check_quality(quality)
    if effort not in efforts:
        raise TinyCodecError(f"unknown effort '{effort}' for the {family} family (choose from {', '.join(efforts)})")
    if has_alpha:
        raise TinyCodecError(f"the {family} family codes no alpha channel: use TinyCompress (-s/--scale) "
                             "for images with transparency, or drop the alpha channel")
    return quality


def segment_elements(family: int, height: int, width: int, model: str) -> list[int]:
    """Latents coded in each segment of a family's file for an image of this size (and, where the family's
    models differ in their latents, this model: an unknown one is a TinyCodecError)."""
    return importlib.import_module(FAMILY_LAYOUTS[family]).segment_elements(height, width, model)


@dataclass
class HeaderV2:
    family: int  # a key of FAMILY_LAYOUTS
    width: int  # of the coded image
    height: int
    color_channels: int  # 1 grey (coded as RGB, decoded as L), 3 RGB
    quality: int  # 0..100
    model: str
    weights_id: bytes
    extensions: list[tuple[int, bytes]] = field(default_factory=list)
    has_weights: bool = False  # a decoder-weights segment precedes the latents (effort overfit)

    @property
    def segment_elements(self) -> list[int]:
        return segment_elements(self.family, self.height, self.width, self.model)

    @property
    def mode(self) -> str:
        return "L" if self.color_channels == 1 else "RGB"


def min_segment_bytes(elements: int) -> int:
    """Fewest bytes a segment coding ``elements`` latents can have.

    Each element costs at least MIN_BITS_PER_ELEMENT; 0.9 of it allows for constriction's rounding of the
    probabilities to 24 bits, and two words for the coder's final state.
    """
    return max(SEGMENT_WORD, SEGMENT_WORD * (math.floor(elements * MIN_BITS_PER_ELEMENT * 0.9 / 32) - 2))


def max_segment_bytes(elements: int) -> int:
    return SEGMENT_WORD * math.ceil(elements * MAX_BITS_PER_ELEMENT / 32) + SEGMENT_SLACK_BYTES


def _check_packable(h: HeaderV2, segments: list[bytes]) -> None:
    problems = []
    if h.family not in FAMILY_LAYOUTS:
        raise ValueError(f"cannot write this .tcz file: family {h.family}")
    if not (1 <= h.width <= MAX_DIMENSION and 1 <= h.height <= MAX_DIMENSION):
        problems.append(f"size {h.width}x{h.height}")
    if h.color_channels not in (1, 3):
        problems.append(f"{h.color_channels} colour channels")
    if not 0 <= h.quality <= MAX_QUALITY:
        problems.append(f"quality {h.quality}")
    if not MODEL_NAME.fullmatch(h.model):
        raise ValueError("cannot write this .tcz file: model name")
    if len(h.weights_id) != 8:
        problems.append("weights id")
    if len(h.extensions) > 255 or any(not 0 <= t <= 255 or len(d) > 0xFFFF for t, d in h.extensions):
        problems.append("extensions")
    grid_segments = segments[1:] if h.has_weights else segments
    if h.has_weights and not (segments and 0 < len(segments[0]) <= MAX_WEIGHTS_SEGMENT
                              and len(segments[0]) % SEGMENT_WORD == 0):
        problems.append("weights segment")
    elements = h.segment_elements
    if len(grid_segments) != len(elements):
        problems.append("segment count")
    for seg, count in zip(grid_segments, elements):
        n = len(seg)
        if n % SEGMENT_WORD or not min_segment_bytes(count) <= n <= max_segment_bytes(count):
            problems.append(f"segment of {n} bytes for {count} latents")
    if problems:
        raise ValueError("cannot write this .tcz file: " + ", ".join(problems))


def pack(h: HeaderV2, segments: list[bytes]) -> bytes:
    _check_packable(h, segments)
    name = h.model.encode("ascii")
    body = bytearray(_FIXED.pack(MAGIC, VERSION, h.family, 0, h.width, h.height, h.color_channels, h.quality,
                                 FLAG_WEIGHTS if h.has_weights else 0, len(h.segment_elements)))
    body += bytes([len(name)]) + name + h.weights_id + bytes([len(h.extensions)])
    for ext_type, ext_data in h.extensions:
        body += struct.pack("<BH", ext_type, len(ext_data)) + ext_data
    for seg in segments:
        body += _U32.pack(zlib.crc32(seg)) + _varint(len(seg))
    payload = b"".join(segments)
    body += _U32.pack(len(payload))
    header_len = len(body) + 4
    if header_len > MAX_HEADER:
        raise TinyCodecError("header too large (extension records)")
    struct.pack_into("<H", body, 10, header_len)
    body += _U32.pack(zlib.crc32(body))
    return bytes(body) + payload


@dataclass
class Unpacked:
    header: HeaderV2
    segments: list[bytes | None]  # per latent segment; None: not received (partial files only)
    weights: bytes | None = None  # the synthesis-weights segment of an overfit file

    @property
    def complete(self) -> bool:
        return all(s is not None for s in self.segments)


def read_header(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> tuple[HeaderV2, list[tuple[int, int]], int]:
    """Parse and verify the header: (header, [(crc, length)] per segment, header length)."""
    header_len = header_length(data)
    if len(data) < _FIXED.size or len(data) < header_len:
        raise TinyCodecError("truncated .tcz file: header incomplete")
    if header_len < MIN_HEADER:
        raise TinyCodecError("corrupt .tcz header: header length too small")
    if zlib.crc32(data[: header_len - 4]) != _U32.unpack_from(data, header_len - 4)[0]:
        raise TinyCodecError("corrupt .tcz file: header checksum mismatch")
    _, version, family, _, width, height, colour, quality, flags, n_grids = _FIXED.unpack_from(data, 0)
    if version != VERSION:
        raise TinyCodecError(f"not a .tcz file of format version {VERSION} (version {version})")
    if family not in FAMILY_LAYOUTS:
        raise TinyCodecError(f"file is a .tcz of codec family {family}, unknown to this tinycodec: upgrade")
    if flags & ~FLAG_WEIGHTS:
        raise TinyCodecError(f"unsupported .tcz flags 0x{flags:02x}: written by a newer tinycodec?")
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
        raise TinyCodecError(f"corrupt .tcz header: image size {width}x{height} out of range")
    limits.check_pixels(width, height)
    if colour not in (1, 3):
        raise TinyCodecError(f"corrupt .tcz header: {colour} colour channels")
    if quality > MAX_QUALITY:
        raise TinyCodecError(f"corrupt .tcz header: quality {quality}")
    r = _Reader(data, _FIXED.size, header_len - 4)
    raw_name = r.take(r.u8())
    model = raw_name.decode("ascii", errors="replace")
    if not MODEL_NAME.fullmatch(model):
        raise TinyCodecError("corrupt .tcz header: model name has characters outside [a-z0-9._-]")
    elements = segment_elements(family, height, width, model)
    if n_grids != len(elements):
        raise TinyCodecError(f"corrupt .tcz header: {n_grids} latent segments (this family has {len(elements)})")
    weights_id = r.take(8)
    extensions = []
    for _ in range(r.u8()):
        ext_type = r.u8()
        extensions.append((ext_type, r.take(struct.unpack("<H", r.take(2))[0])))
    header = HeaderV2(family, width, height, colour, quality, model, weights_id, extensions, bool(flags & FLAG_WEIGHTS))
    table = []
    if header.has_weights:
        crc = _U32.unpack(r.take(4))[0]
        n = r.varint()
        if n % SEGMENT_WORD or not 0 < n <= MAX_WEIGHTS_SEGMENT:
            raise TinyCodecError(f"corrupt .tcz header: weights segment of {n} bytes")
        table.append((crc, n))
    for count in elements:
        crc = _U32.unpack(r.take(4))[0]
        n = r.varint()
        if n % SEGMENT_WORD:
            raise TinyCodecError("corrupt .tcz header: segment length is not a whole number of 32-bit words")
        if n < min_segment_bytes(count):
            raise TinyCodecError(f"corrupt .tcz header: {n} bytes cannot code {count} latents "
                                 "(a decompression bomb or a damaged file)")
        if n > max_segment_bytes(count):
            raise TinyCodecError(f"corrupt .tcz header: {n} bytes is implausibly large for {count} latents")
        table.append((crc, n))
    payload_len = _U32.unpack(r.take(4))[0]
    if r.pos != r.end:
        raise TinyCodecError("corrupt .tcz header: unexpected bytes after the segment table")
    if sum(n for _, n in table) != payload_len:
        raise TinyCodecError("corrupt .tcz header: segment lengths disagree with the payload length")
    return header, table, header_len


def unpack(data: bytes, *, partial: bool = False, limits: Limits = DEFAULT_LIMITS) -> Unpacked:
    """Verify and split a file; with ``partial`` a truncated file yields the segments that arrived whole."""
    header, table, pos = read_header(data, limits=limits)
    total = sum(n for _, n in table)
    available = len(data) - pos
    if available > total:
        raise TinyCodecError("corrupt .tcz file: trailing bytes after the payload")
    if available < total and not partial:
        raise TinyCodecError(f"truncated .tcz file: {available} of {total} payload bytes present "
                             "(tcdec --partial decodes the grids that arrived)")
    segments: list[bytes | None] = []
    for index, (crc, n) in enumerate(table):
        what = "the weights segment" if header.has_weights and index == 0 else \
            f"latent segment {index - header.has_weights}"
        if pos + n > len(data):
            if header.has_weights and index == 0:
                raise TinyCodecError("truncated .tcz file: its decoder weights did not arrive whole")
            segments.extend([None] * (len(table) - index))
            break
        seg = data[pos : pos + n]
        if zlib.crc32(seg) != crc:
            raise TinyCodecError(f"corrupt .tcz file: checksum mismatch in {what}")
        segments.append(seg)
        pos += n
    if header.has_weights:
        return Unpacked(header, segments[1:], segments[0])
    return Unpacked(header, segments)
