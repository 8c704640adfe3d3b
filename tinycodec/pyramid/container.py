"""The ``.tcz`` header of the pyramid family (format version 2, family 1; format_spec.md, "Version 2").

Same magic, extension records and checksum conventions as version 1; the fields after the header length
describe a latent pyramid instead of bit-planes. Every field is checked before anything is allocated from it,
and the payload of each grid must be at least what the coder can possibly write for that many elements (the
tables cap every symbol's probability, see laplace.py), so a tiny file cannot declare a huge image.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass, field

from ..container import MAGIC, MAX_DIMENSION, MAX_HEADER, SEGMENT_WORD, _Reader, _varint, header_length
from ..errors import TinyCodecError
from ..limits import DEFAULT_LIMITS, Limits
from . import layout
from .laplace import MIN_BITS_PER_ELEMENT

VERSION = 2
FAMILY = 1
FLAG_WEIGHTS = 0x01  # the file carries its own synthesis weights (effort overfit): one segment before the grids
MAX_WEIGHTS_SEGMENT = 16384  # bytes; the compressed synthesis deltas of one image are 1-3 KB
_FIXED = struct.Struct("<8sBBHIIBBBB")  # magic .. grid count
_U32 = struct.Struct("<I")
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # nothing a terminal could interpret
MAX_BITS_PER_ELEMENT = 25  # a table symbol costs at most 24 bits at constriction's precision, plus rounding
SEGMENT_SLACK_BYTES = 16
MIN_HEADER = _FIXED.size + 1 + 1 + 8 + 1 + 4 + 4


@dataclass
class PyramidHeader:
    width: int  # of the coded image
    height: int
    color_channels: int  # 1 grey (coded as RGB, decoded as L), 3 RGB
    quality: int  # 0..100
    model: str
    weights_id: bytes
    extensions: list[tuple[int, bytes]] = field(default_factory=list)
    has_weights: bool = False  # a synthesis-weights segment precedes the grids (effort overfit)

    @property
    def grid_shapes(self) -> list[tuple[int, int]]:
        return [layout.grid_shape(g, self.height, self.width) for g in layout.GRIDS]

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


def _check_packable(h: PyramidHeader, segments: list[bytes]) -> None:
    problems = []
    if not (1 <= h.width <= MAX_DIMENSION and 1 <= h.height <= MAX_DIMENSION):
        problems.append(f"size {h.width}x{h.height}")
    if h.color_channels not in (1, 3):
        problems.append(f"{h.color_channels} colour channels")
    if not 0 <= h.quality <= layout.MAX_QUALITY:
        problems.append(f"quality {h.quality}")
    if not MODEL_NAME.fullmatch(h.model):
        problems.append("model name")
    if len(h.weights_id) != 8:
        problems.append("weights id")
    if len(h.extensions) > 255 or any(not 0 <= t <= 255 or len(d) > 0xFFFF for t, d in h.extensions):
        problems.append("extensions")
    grid_segments = segments[1:] if h.has_weights else segments
    if h.has_weights and not (segments and 0 < len(segments[0]) <= MAX_WEIGHTS_SEGMENT
                              and len(segments[0]) % SEGMENT_WORD == 0):
        problems.append("weights segment")
    if len(grid_segments) != len(layout.GRIDS):
        problems.append("grid count")
    for seg, (gh, gw) in zip(grid_segments, h.grid_shapes):
        n = len(seg)
        if n % SEGMENT_WORD or not min_segment_bytes(gh * gw) <= n <= max_segment_bytes(gh * gw):
            problems.append(f"segment of {n} bytes for {gh}x{gw} latents")
    if problems:
        raise ValueError("cannot write this .tcz file: " + ", ".join(problems))


def pack(h: PyramidHeader, segments: list[bytes]) -> bytes:
    _check_packable(h, segments)
    name = h.model.encode("ascii")
    body = bytearray(_FIXED.pack(MAGIC, VERSION, FAMILY, 0, h.width, h.height, h.color_channels, h.quality,
                                 FLAG_WEIGHTS if h.has_weights else 0, len(layout.GRIDS)))
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
    header: PyramidHeader
    segments: list[bytes | None]  # per grid; None: not received (partial files only)
    weights: bytes | None = None  # the synthesis-weights segment of an overfit file

    @property
    def complete(self) -> bool:
        return all(s is not None for s in self.segments)


def read_header(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> tuple[PyramidHeader, list[tuple[int, int]], int]:
    """Parse and verify the header: (header, [(crc, length)] per grid, header length)."""
    header_len = header_length(data)
    if len(data) < _FIXED.size or len(data) < header_len:
        raise TinyCodecError("truncated .tcz file: header incomplete")
    if header_len < MIN_HEADER:
        raise TinyCodecError("corrupt .tcz header: header length too small")
    if zlib.crc32(data[: header_len - 4]) != _U32.unpack_from(data, header_len - 4)[0]:
        raise TinyCodecError("corrupt .tcz file: header checksum mismatch")
    _, version, family, _, width, height, colour, quality, flags, n_grids = _FIXED.unpack_from(data, 0)
    if version != VERSION or family != FAMILY:
        raise TinyCodecError(f"not a pyramid-family .tcz file (version {version}, family {family})")
    if flags & ~FLAG_WEIGHTS:
        raise TinyCodecError(f"unsupported .tcz flags 0x{flags:02x}: written by a newer tinycodec?")
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
        raise TinyCodecError(f"corrupt .tcz header: image size {width}x{height} out of range")
    limits.check_pixels(width, height)
    if colour not in (1, 3):
        raise TinyCodecError(f"corrupt .tcz header: {colour} colour channels")
    if quality > layout.MAX_QUALITY:
        raise TinyCodecError(f"corrupt .tcz header: quality {quality}")
    if n_grids != len(layout.GRIDS):
        raise TinyCodecError(f"corrupt .tcz header: {n_grids} latent grids (this family has {len(layout.GRIDS)})")
    r = _Reader(data, _FIXED.size, header_len - 4)
    raw_name = r.take(r.u8())
    model = raw_name.decode("ascii", errors="replace")
    if not MODEL_NAME.fullmatch(model):
        raise TinyCodecError("corrupt .tcz header: model name has characters outside [a-z0-9._-]")
    weights_id = r.take(8)
    extensions = []
    for _ in range(r.u8()):
        ext_type = r.u8()
        extensions.append((ext_type, r.take(struct.unpack("<H", r.take(2))[0])))
    header = PyramidHeader(width, height, colour, quality, model, weights_id, extensions, bool(flags & FLAG_WEIGHTS))
    table = []
    if header.has_weights:
        crc = _U32.unpack(r.take(4))[0]
        n = r.varint()
        if n % SEGMENT_WORD or not 0 < n <= MAX_WEIGHTS_SEGMENT:
            raise TinyCodecError(f"corrupt .tcz header: weights segment of {n} bytes")
        table.append((crc, n))
    for (gh, gw) in header.grid_shapes:
        crc = _U32.unpack(r.take(4))[0]
        n = r.varint()
        if n % SEGMENT_WORD:
            raise TinyCodecError("corrupt .tcz header: segment length is not a whole number of 32-bit words")
        if n < min_segment_bytes(gh * gw):
            raise TinyCodecError(f"corrupt .tcz header: {n} bytes cannot code {gh}x{gw} latents "
                                 "(a decompression bomb or a damaged file)")
        if n > max_segment_bytes(gh * gw):
            raise TinyCodecError(f"corrupt .tcz header: {n} bytes is implausibly large for {gh}x{gw} latents")
        table.append((crc, n))
    payload_len = _U32.unpack(r.take(4))[0]
    if r.pos != r.end:
        raise TinyCodecError("corrupt .tcz header: unexpected bytes after the segment table")
    if sum(n for _, n in table) != payload_len:
        raise TinyCodecError("corrupt .tcz header: segment lengths disagree with the payload length")
    return header, table, header_len


def unpack(data: bytes, *, partial: bool = False, limits: Limits = DEFAULT_LIMITS) -> Unpacked:
    """Verify and split a file; with ``partial`` a truncated file yields the grids that arrived whole."""
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
            f"latent grid {index - header.has_weights}"
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
