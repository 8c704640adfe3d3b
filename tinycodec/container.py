"""The ``.tcz`` container: header, segment table and payload (see format_spec.md).

This module only moves bytes: it knows nothing about networks or images. Every
field read from a file is checked before anything is allocated from it.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from dataclasses import dataclass, field

from .entropy import min_segment_bytes
from .errors import TinyCodecError
from .limits import DEFAULT_LIMITS, Limits
from .options import DOWNSCALE_FACTORS

MAGIC = b"\x89TCZ\r\n\x1a\n"
FORMAT_VERSION = 1
MAX_HEADER = 0xFFFF
MAX_DIMENSION = 1 << 20  # per side; the pixel cap below is the real limit
DEFAULT_MAX_PIXELS = DEFAULT_LIMITS.max_pixels  # where Pillow refuses to open an image; see limits.py
FLAG_ALPHA = 0x01
_KNOWN_FLAGS = FLAG_ALPHA
EXT_CRITICAL = 0x80  # an extension a decoder must understand to decode correctly
# Non-critical extension records (contents: tinycodec/metadata.py, format_spec.md).
EXT_ICC_PROFILE = 0x01  # zlib-compressed ICC profile
EXT_ORIENTATION = 0x02  # EXIF orientation, one byte 1..8
ALPHA_PLANES = 8
EXT_DOWNSCALE = 0x10  # non-critical: a decoder that skips it shows the coded (smaller) image
MAX_LATENT = 1e30  # |lo|, |hi| bound: keeps hi - lo finite in float32
MODEL_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")  # format_spec.md; as the pyramid family's
SEGMENT_WORD = 4  # every coder writes 32-bit words: every segment length is a multiple of 4
WHOLE_SYMBOL_CODERS = (4,)  # coders whose tile is one segment holding every kept plane (format_spec.md)


def group_planes(coder_id: int, planes: int) -> tuple[int, ...]:
    """The planes each segment group of a channel set holds, most significant first: one group per plane
    (progressive) for coders 1-3, one group for all of them for coder 4."""
    return (planes,) if coder_id in WHOLE_SYMBOL_CODERS else (1,) * planes

_FIXED = struct.Struct("<8sBBHIIBBBBH3f3f")  # up to and including hi[3]
_U32 = struct.Struct("<I")
# fixed fields, name length, weights id, extension count, one group (CRC, one length), payload_len, header CRC
MIN_HEADER = _FIXED.size + 1 + 8 + 1 + (4 + 1) + 4 + 4
_DOWNSCALE = struct.Struct("<BII")  # factor, original width, original height


@dataclass
class Header:
    width: int
    height: int
    color_channels: int  # 1 = grey, 3 = RGB
    has_alpha: bool
    depth: int  # k: block iterations; scale level = 4**k
    planes: int
    coder_id: int
    tile: int  # tile side in latent elements
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    model: str
    weights_id: bytes
    extensions: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def scale(self) -> int:
        return 4**self.depth

    @property
    def mode(self) -> str:
        """The PIL mode of the decoded image: L, LA, RGB or RGBA."""
        if self.color_channels == 1:
            return "LA" if self.has_alpha else "L"
        return "RGBA" if self.has_alpha else "RGB"

    @property
    def latent_size(self) -> tuple[int, int]:
        """(height, width) of the latent."""
        step = 1 << self.depth
        return -(-self.height // step), -(-self.width // step)

    @property
    def tiles(self) -> tuple[int, int]:
        """Number of tile rows and columns (same grid for colour and alpha)."""
        lh, lw = self.latent_size
        return -(-lh // self.tile), -(-lw // self.tile)

    @property
    def colour_groups(self) -> tuple[int, ...]:
        """Planes per colour group (group_planes)."""
        return group_planes(self.coder_id, self.planes)

    @property
    def alpha_groups(self) -> tuple[int, ...]:
        return group_planes(self.coder_id, ALPHA_PLANES) if self.has_alpha else ()

    @property
    def n_groups(self) -> int:
        return len(self.colour_groups) + len(self.alpha_groups)

    @property
    def raw_bits(self) -> int:
        """Bits of the kept planes stored uncompressed: 3 latent channels (grey too), plus alpha."""
        lh, lw = self.latent_size
        return self.planes * 3 * lh * lw + (ALPHA_PLANES * self.width * self.height if self.has_alpha else 0)


@dataclass
class Decoded:
    """What :func:`unpack` found: the header and, per group, the tiles' segments.

    ``groups`` holds only the groups that are complete and verified; with
    ``partial=True`` that may be fewer than ``header.n_groups``, and
    ``next_group`` then holds the segments of the following group that
    arrived whole (its first tiles, in raster order). Those cannot be checked
    against the group's CRC, which covers the whole group.
    """

    header: Header
    groups: list[list[bytes]]
    next_group: list[bytes] = field(default_factory=list)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    """Bounds-checked cursor over the header bytes."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.pos, self.end = data, start, end

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise TinyCodecError("corrupt .tcz header: fields run past the header end")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        n = shift = 0
        while True:
            byte = self.u8()
            n |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and shift:  # only the shortest encoding is valid
                    raise TinyCodecError("corrupt .tcz header: overlong segment length")
                return n
            shift += 7
            if shift >= 35:
                raise TinyCodecError("corrupt .tcz header: segment length out of range")


def _as_stored(values) -> tuple[float, ...]:
    """``values`` as a reader gets them back: rounded to float32 (inf where they overflow it)."""
    try:
        return struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values))
    except (OverflowError, struct.error):
        return (math.inf,) * len(values)


def valid_latent_range(lo, hi) -> bool:
    """The quantiser range a reader accepts: finite, |value| <= MAX_LATENT, lo < hi per channel.

    One predicate for the reader and the writer, which applies it to the values it stores."""
    values = (*lo, *hi)
    return all(math.isfinite(v) and abs(v) <= MAX_LATENT for v in values) and all(h > l for l, h in zip(lo, hi))


def valid_model_name(name: str) -> bool:
    """1 to 255 characters of MODEL_NAME_CHARS: letters, digits, '.', '_', '-'."""
    return 1 <= len(name) <= 255 and all(c in MODEL_NAME_CHARS for c in name)


def _check_packable(h: Header) -> None:
    """Refuse (ValueError) any header field a reader would refuse: never write an unreadable file."""
    problems = []
    if not (1 <= h.width <= MAX_DIMENSION and 1 <= h.height <= MAX_DIMENSION):
        problems.append(f"size {h.width}x{h.height}")
    if h.color_channels not in (1, 3):
        problems.append(f"{h.color_channels} colour channels")
    if not 1 <= h.depth <= 4:
        problems.append(f"depth {h.depth}")
    if not 1 <= h.planes <= 8:
        problems.append(f"{h.planes} planes")
    if not 0 <= h.coder_id <= 255:
        problems.append(f"coder {h.coder_id}")
    if not 8 <= h.tile <= 0xFFFF:
        problems.append(f"tile {h.tile}")
    if not (len(h.lo) == len(h.hi) == 3 and valid_latent_range(*map(_as_stored, (h.lo, h.hi)))):
        # checked on the float32 values the file will hold: 1e30 itself rounds to 1.0000000150e30
        problems.append("latent range (need finite lo < hi, |value| <= 1e30, after rounding to float32)")
    if not valid_model_name(h.model):
        problems.append("model name (1 to 255 of a-z 0-9 . _ -)")
    if len(h.weights_id) != 8:
        problems.append("weights id (8 bytes)")
    if len(h.extensions) > 255 or any(not 0 <= t <= 255 or len(d) > 0xFFFF for t, d in h.extensions):
        problems.append("extensions (at most 255, type 0..255, at most 65535 bytes each)")
    if problems:
        raise ValueError("cannot write this .tcz header: " + ", ".join(problems))


def pack(header: Header, groups: list[list[bytes]]) -> bytes:
    """Serialise a header and its groups (``groups[g][t]`` = segment of tile t in group g)."""
    _check_packable(header)
    rows, cols = header.tiles
    if len(groups) != header.n_groups or any(len(g) != rows * cols for g in groups):
        raise ValueError("groups do not match the header geometry")
    name = header.model.encode("ascii")
    body = bytearray()
    body += _FIXED.pack(
        MAGIC, FORMAT_VERSION, FLAG_ALPHA if header.has_alpha else 0, 0,  # header length patched below
        header.width, header.height, header.color_channels, header.depth, header.planes,
        header.coder_id, header.tile, *header.lo, *header.hi,
    )
    body += bytes([len(name)]) + name + header.weights_id
    body += bytes([len(header.extensions)])
    for ext_type, ext_data in header.extensions:
        body += struct.pack("<BH", ext_type, len(ext_data)) + ext_data
    payload = bytearray()
    for group in groups:
        joined = b"".join(group)
        body += _U32.pack(zlib.crc32(joined))
        for segment in group:
            body += _varint(len(segment))
        payload += joined
    body += _U32.pack(len(payload))
    most = DEFAULT_LIMITS.max_payload_bytes(header.raw_bits, header.n_groups * rows * cols)
    if len(payload) > most:  # cannot happen with any coder (see limits.py); never write what readers refuse
        raise TinyCodecError(f"payload of {len(payload)} bytes exceeds the format's limit of {most} bytes")
    header_len = len(body) + 4
    if header_len > MAX_HEADER:
        raise TinyCodecError("image needs too many tiles for one .tcz header; use a larger tile size")
    struct.pack_into("<H", body, 10, header_len)
    body += _U32.pack(zlib.crc32(body))
    return bytes(body + payload)


def header_length(data: bytes) -> int:
    """The declared header length, from the first 12 bytes; refuses what is not a .tcz file.

    Lets a reader of a stream fetch exactly the header, then verify it (and the
    limits) before reading any of the payload.
    """
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise TinyCodecError("not a .tcz file (wrong magic bytes)")
    if len(data) < 12:
        raise TinyCodecError("truncated .tcz file: header incomplete")
    return struct.unpack_from("<H", data, 10)[0]




def read_header(data: bytes, *, limits: Limits = DEFAULT_LIMITS,
                max_pixels: int | None = None) -> tuple[Header, list[tuple[int, list[int]]], int]:
    """Parse and verify the header. Returns (header, [(crc, lengths)] per group, header length).

    ``data`` needs to hold the header only. ``max_pixels`` overrides ``limits.max_pixels``.
    """
    if max_pixels is not None:
        limits = dataclasses.replace(limits, max_pixels=max_pixels)
    header_len = header_length(data)
    if len(data) < _FIXED.size:
        raise TinyCodecError("truncated .tcz file: header incomplete")
    version = data[8]
    if version > FORMAT_VERSION:
        raise TinyCodecError(f"file is .tcz format version {version}; this tinycodec reads up to {FORMAT_VERSION}: upgrade")
    if version < 1:
        raise TinyCodecError("corrupt .tcz header: format version 0")
    if header_len < MIN_HEADER:
        raise TinyCodecError("corrupt .tcz header: header length too small")
    if len(data) < header_len:
        raise TinyCodecError("truncated .tcz file: header incomplete")
    stored_crc = _U32.unpack_from(data, header_len - 4)[0]
    if zlib.crc32(data[: header_len - 4]) != stored_crc:
        raise TinyCodecError("corrupt .tcz file: header checksum mismatch")

    (_, _, flags, _, width, height, color, depth, planes, coder_id, tile, *lohi) = _FIXED.unpack_from(data, 0)
    if flags & ~_KNOWN_FLAGS:
        raise TinyCodecError(f"unsupported .tcz flags 0x{flags:02x}: written by a newer tinycodec?")
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
        raise TinyCodecError(f"corrupt .tcz header: image size {width}x{height} out of range")
    limits.check_pixels(width, height)
    if color not in (1, 3):
        raise TinyCodecError(f"corrupt .tcz header: {color} colour channels")
    if not 1 <= depth <= 4:
        raise TinyCodecError(f"corrupt .tcz header: depth {depth} (scale level must be 4, 16, 64 or 256)")
    if not 1 <= planes <= 8:
        raise TinyCodecError(f"corrupt .tcz header: {planes} bit-planes")
    if tile < 8:
        raise TinyCodecError(f"corrupt .tcz header: tile size {tile}")
    lo, hi = tuple(lohi[:3]), tuple(lohi[3:])
    if not valid_latent_range(lo, hi):
        raise TinyCodecError("corrupt .tcz header: invalid latent range")

    r = _Reader(data, _FIXED.size, header_len - 4)
    name_len = r.u8()
    model = r.take(name_len).decode("latin-1")
    if not valid_model_name(model):  # the name is printed in messages: no control characters reach them
        raise TinyCodecError("corrupt .tcz header: model name has characters outside a-z 0-9 . _ - "
                             "(or is empty)")
    weights_id = r.take(8)
    extensions = []
    for _ in range(r.u8()):
        ext_type = r.u8()
        ext_len = struct.unpack("<H", r.take(2))[0]
        extensions.append((ext_type, r.take(ext_len)))
    header = Header(width, height, color, bool(flags & FLAG_ALPHA), depth, planes, coder_id, tile,
                    lo, hi, model, weights_id, extensions)
    rows, cols = header.tiles
    n_tiles = rows * cols
    if header.n_groups * n_tiles > header_len:  # each entry takes at least one byte
        raise TinyCodecError("corrupt .tcz header: segment table does not fit the header")
    table = []
    for _ in range(header.n_groups):
        crc = _U32.unpack(r.take(4))[0]
        lengths = [r.varint() for _ in range(n_tiles)]
        if 0 in lengths:  # every segment holds at least one 32-bit word
            raise TinyCodecError("corrupt .tcz header: empty segment")
        if any(n % SEGMENT_WORD for n in lengths):
            raise TinyCodecError("corrupt .tcz header: segment length is not a whole number of 32-bit words")
        table.append((crc, lengths))
    payload_len = _U32.unpack(r.take(4))[0]
    if r.pos != r.end:
        raise TinyCodecError("corrupt .tcz header: unexpected bytes after the segment table")
    if sum(sum(lengths) for _, lengths in table) != payload_len:
        raise TinyCodecError("corrupt .tcz header: segment lengths disagree with the payload length")
    check_payload_floor(header, [lengths for _, lengths in table])
    most = limits.max_payload_bytes(header.raw_bits, header.n_groups * n_tiles)
    if most is not None and payload_len > most:
        raise TinyCodecError(f"payload of {payload_len} bytes is implausibly large for a {width}x{height} image "
                             f"(limit {most} bytes: Limits.max_payload_ratio)")
    return header, table, header_len


def tile_decisions(header: Header, group: int) -> list[int]:
    """Elements each tile's segment of ``group`` codes: channels x tile height x width (coders 1-3: one
    binary decision each; coder 4: one symbol of the group's planes each)."""
    if group < len(header.colour_groups):  # colour: 3 latent channels (grey too), tiles of the latent
        channels, (height, width), side = 3, header.latent_size, header.tile
    else:  # alpha planes: one channel, the same grid in pixels
        channels, (height, width), side = 1, (header.height, header.width), header.tile << header.depth
    rows = [min(side, height - y) for y in range(0, height, side)]
    cols = [min(side, width - x) for x in range(0, width, side)]
    return [channels * r * c for r in rows for c in cols]


def check_payload_floor(header: Header, lengths: list[list[int]]) -> None:
    """Refuse a segment table that no encoder can write: a segment shorter than the fewest bytes
    its coder needs for its tile's decisions (``entropy.min_segment_bytes``, format_spec.md).

    The guard against tiny files that declare huge images: checked on the header, before any of
    the payload is read or anything is decoded. Tiles of equal shape share one floor.
    """
    floors: dict[int, int] = {}
    for group, group_lengths in enumerate(lengths):
        for n, decisions in zip(group_lengths, tile_decisions(header, group)):
            floor = floors.get(decisions)
            if floor is None:
                floor = floors[decisions] = min_segment_bytes(header.coder_id, decisions)
            if n < floor:
                raise TinyCodecError(f"corrupt .tcz header: a segment of {n} bytes for {decisions} coded elements "
                                     f"(coder {header.coder_id} needs at least {floor}): not a file any encoder "
                                     "writes")


def unpack(data: bytes, *, partial: bool = False, limits: Limits = DEFAULT_LIMITS,
           max_pixels: int | None = None) -> Decoded:
    """Verify and split a .tcz file.

    With ``partial=False`` the file must be complete and every checksum must
    match. With ``partial=True`` a truncated file yields the groups that
    arrived whole (each still verified; a damaged one is still an error) and
    the whole segments of the group that was cut.
    """
    header, table, pos = read_header(data, limits=limits, max_pixels=max_pixels)
    payload_len = sum(sum(lengths) for _, lengths in table)
    available = len(data) - pos
    if available < payload_len and not partial:
        raise TinyCodecError(f"truncated .tcz file: {available} of {payload_len} payload bytes present")
    if available > payload_len:
        raise TinyCodecError("corrupt .tcz file: trailing bytes after the payload")
    groups: list[list[bytes]] = []
    for index, (crc, lengths) in enumerate(table):
        size = sum(lengths)
        if pos + size > len(data):  # partial: this group did not arrive whole
            return Decoded(header, groups, _whole_segments(data, pos, lengths))
        if zlib.crc32(memoryview(data)[pos : pos + size]) != crc:
            raise TinyCodecError(f"corrupt .tcz file: checksum mismatch in segment group {index}")
        groups.append(_whole_segments(data, pos, lengths))
        pos += size
    return Decoded(header, groups)


def _whole_segments(data: bytes, pos: int, lengths: list[int]) -> list[bytes]:
    """The segments of a group, starting at ``pos``, that lie entirely within ``data``."""
    segments = []
    for n in lengths:
        if pos + n > len(data):
            break
        segments.append(data[pos : pos + n])
        pos += n
    return segments


def group_ends(data: bytes) -> list[int]:
    """File offset just past each segment group: a prefix that long decodes that many groups."""
    _, table, pos = read_header(data, max_pixels=MAX_DIMENSION * MAX_DIMENSION)
    ends = []
    for _, lengths in table:
        pos += sum(lengths)
        ends.append(pos)
    return ends
def downscale_record(factor: int, width: int, height: int) -> tuple[int, bytes]:
    """The extension record of an image coded at 1/factor of its width x height."""
    return EXT_DOWNSCALE, _DOWNSCALE.pack(factor, width, height)


def find_downscale(header: Header) -> tuple[int, int, int] | None:
    """(factor, original width, original height) from a downscale record, checked against the geometry."""
    records = [data for ext_type, data in header.extensions if ext_type == EXT_DOWNSCALE]
    if not records:
        return None
    if len(records) > 1 or len(records[0]) != _DOWNSCALE.size:
        raise TinyCodecError("corrupt .tcz header: malformed downscale record")
    factor, width, height = _DOWNSCALE.unpack(records[0])
    if factor not in DOWNSCALE_FACTORS or -(-width // factor) != header.width or -(-height // factor) != header.height:
        raise TinyCodecError("corrupt .tcz header: downscale record does not match the image geometry")
    return factor, width, height
