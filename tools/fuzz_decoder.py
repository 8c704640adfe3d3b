#!/usr/bin/env python3
"""Fuzz the .tcz decoder: a seeded mutation fuzzer that always runs, and atheris where it imports.

    python tools/fuzz_decoder.py --inputs 200000 --seed 1            # the campaign (1 process, ~1 core)
    python tools/fuzz_decoder.py --seconds 15 --corpus small         # what the test suite runs
    python tools/fuzz_decoder.py --sweep                             # flip every bit of a small file
    python tools/fuzz_decoder.py --engine atheris -- -max_total_time=600   # coverage-guided (libFuzzer)

The mutation fuzzer starts from valid files of every scale x planes x mode
(L, LA, RGB, RGBA; 8x8 to 48x40 pixels; some with 8-element tiles so that
files have several tiles; entropy coders 4 and 3, the default and the progressive one, alternating) and mutates them at two levels:

* structure-aware, on the parsed fields (:class:`RawTcz`): extreme field
  values, inflated widths / heights / tiles / segment and payload lengths,
  overlong varints, extension records, dropped or added groups, garbage
  segments, geometry changed together with a matching segment table, headers
  spliced onto other files' payloads; the result is written with fresh
  checksums most of the time, since a mutation that the CRC rejects tests
  nothing beyond the CRC;
* byte-level, on the serialised file: bit flips, byte sets, truncation,
  insertion, deletion, cross-over between files, trailing garbage; then, half
  of the time, the header CRC is recomputed at the declared header length.

Each input goes to one of four targets: the public ``tinycodec.decode``, the
container layer alone (``container.unpack``, fast), the entropy layer alone
(``entropy.decode_tile`` on mutated segments and shapes), or *bomb*:
``tinycodec.decode`` with the default limits on a file that declares a large
image (up to the default pixel cap) with segments of a few bytes, so that the
campaign's own pixel cap cannot hide decompression bombs. The documented
outcome for bad data is :class:`tinycodec.TinyCodecError`; anything else
raised is a *crash*, grouped by exception type and the innermost tinycodec
frame. An input that runs longer than ``--hang-seconds`` (5 s) is a *hang*
(a SIGALRM watchdog interrupts it; the measured time decides); an input that
raises the process's peak RSS by more than ``--memory-jump-mb`` is a *memory
blow-up*. Every finding is saved under ``--out`` with its traceback. The
campaign decodes with ``max_pixels=2**16`` so that no input can legitimately
take long; the decoder's own limits (time per pixel, payload ratio) apply as
in production.

atheris: ``pip install atheris`` (a manylinux wheel exists for CPython 3.11 on
x86-64; elsewhere it builds from source and needs clang). Without it,
``--engine atheris`` says so and exits 2; the mutation fuzzer needs nothing
beyond tinycodec.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load: one core per fuzzing process

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    import atheris
except ImportError:
    atheris = None

# Coverage instrumentation has to be in place before tinycodec is first imported, so the
# decision is taken here, from the command line, rather than in main().
_INSTRUMENT = atheris is not None and __name__ == "__main__" and "atheris" in " ".join(sys.argv[1:3])
with atheris.instrument_imports(include=["tinycodec"]) if _INSTRUMENT else contextlib.nullcontext():
    import tinycodec
    from tinycodec import container, entropy
    from tinycodec.codec import _tile_slices
    from tinycodec.errors import TinyCodecError
    from tinycodec.limits import DEFAULT_LIMITS
    from tinycodec.zoo import current_entry, model_name

import torch  # noqa: E402

torch.set_num_threads(1)

HANG_SECONDS = 5.0
FUZZ_MAX_PIXELS = 1 << 16  # every legitimate decode under this cap takes well under a second
MEMORY_JUMP_MB = 256.0
SCALES = (4, 16, 64, 256)
MODES = ("L", "LA", "RGB", "RGBA")
SIZES = ((8, 8), (13, 9), (24, 17), (48, 40), (33, 21), (40, 48))  # (width, height)

_FIXED = struct.Struct("<8sBBHIIBBBBH3I3I")  # container._FIXED with lo/hi as raw float32 bits
_FIXED_FIELDS = ("magic", "version", "flags", "header_len", "width", "height", "colour", "depth", "planes",
                 "coder", "tile", "lo0", "lo1", "lo2", "hi0", "hi1", "hi2")
_FIELD_BITS = {"version": 8, "flags": 8, "header_len": 16, "width": 32, "height": 32, "colour": 8, "depth": 8,
               "planes": 8, "coder": 8, "tile": 16}
_F32_SPECIALS = (0x7FC00000, 0x7F800000, 0xFF800000, 0x00000000, 0x80000000, 0x00000001, 0x7F7FFFFF, 0xFF7FFFFF,
                 0x7149F2CA, 0x7175D5FD, 0xF149F2CA, 0x3F800000, 0x3F800001)  # nan, inf, -inf, 0, -0, subnormal,
# max, -max, 1e30, 1.2e30, -1e30, 1.0, 1.0 + ulp


def varint(n: int) -> bytes:
    return container._varint(n)


# --------------------------------------------------------------------------- raw file model


@dataclass
class RawTcz:
    """A .tcz file as fields that may hold any value, valid or not.

    :meth:`to_bytes` writes them in the container's layout; with ``reseal`` it
    recomputes every group CRC and the header CRC (at the *declared* header
    length), so that a crafted file gets past the checksums into the parsers.
    """

    fixed: dict[str, object]
    name: bytes
    weights_id: bytes
    extensions: list[tuple[int, bytes, int | None]]  # (type, data, declared length or None)
    groups: list[list[bytes]]  # segments per group, per tile
    group_crcs: list[int]
    name_len: int | None = None  # None: the true length
    ext_count: int | None = None
    length_codes: dict[tuple[int, int], bytes] = field(default_factory=dict)  # planted varint encodings
    payload_len: int | None = None
    header_crc: int = 0
    trailer: bytes = b""

    @classmethod
    def from_valid(cls, data: bytes) -> RawTcz:
        decoded = container.unpack(data)
        _, _, header_len = container.read_header(data)
        values = _FIXED.unpack_from(data, 0)
        r = container._Reader(data, _FIXED.size, header_len - 4)
        name = r.take(r.u8())
        weights_id = r.take(8)
        extensions = []
        for _ in range(r.u8()):
            ext_type = r.u8()
            extensions.append((ext_type, r.take(struct.unpack("<H", r.take(2))[0]), None))
        fixed = dict(zip(_FIXED_FIELDS, values))
        fixed["header_len"] = None
        crcs = [zlib.crc32(b"".join(g)) for g in decoded.groups]
        return cls(fixed, name, weights_id, extensions, [list(g) for g in decoded.groups], crcs,
                   header_crc=struct.unpack_from("<I", data, header_len - 4)[0])

    def copy(self) -> RawTcz:
        return RawTcz(dict(self.fixed), self.name, self.weights_id, list(self.extensions),
                      [list(g) for g in self.groups], list(self.group_crcs), self.name_len, self.ext_count,
                      dict(self.length_codes), self.payload_len, self.header_crc, self.trailer)

    def to_bytes(self, reseal: bool = True) -> bytes:
        tail = bytearray()
        tail.append((len(self.name) if self.name_len is None else self.name_len) & 0xFF)
        tail += self.name + self.weights_id
        tail.append((len(self.extensions) if self.ext_count is None else self.ext_count) & 0xFF)
        for ext_type, data, declared in self.extensions:
            tail += struct.pack("<BH", ext_type & 0xFF, (len(data) if declared is None else declared) & 0xFFFF) + data
        payload = bytearray()
        for g, segments in enumerate(self.groups):
            joined = b"".join(segments)
            stored = self.group_crcs[g] if g < len(self.group_crcs) else 0
            tail += struct.pack("<I", zlib.crc32(joined) if reseal else stored)
            for t, segment in enumerate(segments):
                tail += self.length_codes.get((g, t), varint(len(segment)))
            payload += joined
        tail += struct.pack("<I", (len(payload) if self.payload_len is None else self.payload_len) & 0xFFFFFFFF)
        natural = _FIXED.size + len(tail) + 4
        declared = self.fixed["header_len"]
        header_len = natural if declared is None else int(declared)
        values = [self.fixed[k] for k in _FIXED_FIELDS]
        values[3] = header_len & 0xFFFF
        out = bytearray(_FIXED.pack(*values) + tail)
        out += struct.pack("<I", zlib.crc32(out) if reseal else self.header_crc)
        out += payload + self.trailer
        if reseal and declared is not None and 4 <= header_len <= len(out):
            struct.pack_into("<I", out, header_len - 4, zlib.crc32(out[: header_len - 4]))
        return bytes(out)


def reseal_header(data: bytes) -> bytes:
    """Recompute the header CRC where the (possibly mutated) header length says it is."""
    if len(data) < 12:
        return data
    header_len = struct.unpack_from("<H", data, 10)[0]
    if not 4 <= header_len <= len(data):
        return data
    out = bytearray(data)
    struct.pack_into("<I", out, header_len - 4, zlib.crc32(out[: header_len - 4]))
    return bytes(out)


# --------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes


def _seed_image(width: int, height: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Smooth gradients plus noise (what the codec is for), with a ragged alpha channel where asked."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack([(x * rng.uniform(1, 6) + y * rng.uniform(-3, 3)) for _ in range(3)], axis=2)
    rgb = np.clip(rgb + rng.normal(0, 8, rgb.shape) + rng.uniform(0, 128), 0, 255).astype(np.uint8)
    channels = [rgb[:, :, :1]] if mode in ("L", "LA") else [rgb]
    if mode.endswith("A"):
        alpha = np.where((x + y) % 7 < 5, 255, rng.integers(0, 256, (height, width)))
        channels.append(alpha.astype(np.uint8)[:, :, None])
    return np.ascontiguousarray(np.concatenate(channels, axis=2))


def seed_corpus(kind: str = "full", rng_seed: int = 0) -> list[Seed]:
    """Valid files: ``full`` is every scale x planes x mode (128 files), ``small`` every scale x planes (32),
    plus 4 files with every kind of header extension record.

    Sizes cycle through 8x8 .. 48x40; a quarter of the files use 8-element tiles,
    which gives the scale-4 files several tiles. Every other file is progressive (coder 3), the rest coder 4.
    """
    rng = np.random.default_rng(rng_seed)
    seeds = []
    i = 0
    for scale in SCALES:
        for planes in range(1, 9):
            modes = MODES if kind == "full" else (MODES[(scale + planes) % 4],)
            for mode in modes:
                width, height = SIZES[i % len(SIZES)]
                tile = 8 if i % 4 == 3 else 256
                i += 1
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    data = tinycodec.encode(_seed_image(width, height, mode, rng), scale=scale, planes=planes,
                                            tile=tile, progressive=i % 2 == 0)
                seeds.append(Seed(f"s{scale}-p{planes}-{mode}-{width}x{height}-t{tile}-c{'3' if i % 2 == 0 else '4'}",
                                  data))
    seeds += _extension_seeds(rng)
    return seeds


def _extension_seeds(rng: np.random.Generator) -> list[Seed]:
    """Files with header extension records: ICC profile, EXIF orientation, downscale factor."""
    from PIL import Image, ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    seeds = []
    for scale, mode, downscale, tile in ((16, "RGB", 1, 256), (4, "RGB", 2, 8), (64, "RGBA", 2, 8), (256, "L", 4, 256)):
        pixels = _seed_image(40, 32, mode, rng)
        image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
        image.info["icc_profile"] = icc
        exif = Image.Exif()
        exif[0x0112] = int(rng.integers(1, 9))  # orientation
        image.info["exif"] = exif.tobytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = tinycodec.encode(image, scale=scale, planes=6, downscale=downscale, tile=tile)
        seeds.append(Seed(f"s{scale}-{mode}-icc-orientation-down{downscale}-t{tile}", data))
    return seeds


# --------------------------------------------------------------------------- mutators


def _interesting_int(rng: random.Random, bits: int, original: int) -> int:
    top = (1 << bits) - 1
    choices = [0, 1, 2, 7, 8, 9, top, top - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1, original + 1,
               max(original - 1, 0), original * 2, original * 16, original * 1024, rng.randrange(top + 1)]
    if bits >= 16:
        choices += [1 << 20, (1 << 20) + 1, 1 << 16, 255, 256, 65535, 65536]
    return rng.choice(choices) & top


def _garbage(rng: random.Random, n: int) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(n)
    if kind == 1:
        return b"\xff" * n
    if kind == 2:
        return bytes(rng.getrandbits(8) for _ in range(n))
    return (b"\x00\x00\x00\x80" * (n // 4 + 1))[:n]


def _segment_length(rng: random.Random) -> int:
    n = rng.choice([4, 4, 8, 12, 16, 32, 64, 4 * rng.randrange(1, 40)])
    return n + rng.choice([1, 2, 3]) if rng.random() < 0.05 else n  # now and then not whole words


def _pick_segment(raw: RawTcz, rng: random.Random) -> tuple[int, int] | None:
    """(group, tile) of a random segment, or None if the file has none."""
    places = [(g, t) for g, segments in enumerate(raw.groups) for t in range(len(segments))]
    return rng.choice(places) if places else None


def mut_field(raw: RawTcz, rng: random.Random, seeds: list[RawTcz]) -> None:
    """One fixed-layout field to an extreme or nearby value."""
    name = rng.choice(_FIXED_FIELDS)
    if name == "magic":
        magic = bytearray(raw.fixed["magic"])
        magic[rng.randrange(8)] ^= 1 << rng.randrange(8)
        raw.fixed["magic"] = bytes(magic)
    elif name.startswith(("lo", "hi")):
        if rng.random() < 0.2:  # swap the range: hi <= lo
            c = name[2]
            raw.fixed["lo" + c], raw.fixed["hi" + c] = raw.fixed["hi" + c], raw.fixed["lo" + c]
        else:
            raw.fixed[name] = rng.choice(_F32_SPECIALS) if rng.random() < 0.8 else rng.getrandbits(32)
    elif name == "header_len":
        natural = len(raw.to_bytes()) - sum(len(b"".join(g)) for g in raw.groups) - len(raw.trailer)
        raw.fixed["header_len"] = rng.choice([natural + d for d in (-8, -4, -1, 1, 4, 8)]
                                             + [0, 1, 50, 54, 55, 0xFFFF, rng.randrange(0x10000)]) & 0xFFFF
    else:
        raw.fixed[name] = _interesting_int(rng, _FIELD_BITS[name], int(raw.fixed[name]))


def mut_geometry(raw: RawTcz, rng: random.Random, seeds: list[RawTcz]) -> None:
    """Change size, depth, tile, planes or alpha, and rebuild a matching table of garbage segments.

    Such a file passes every container check, so the entropy decoder and the
    network run on geometry no encoder produced.
    """
    f = raw.fixed
    what = rng.randrange(5)
    if what == 0:
        f["width"], f["height"] = rng.randrange(1, 257), rng.randrange(1, 257)
    elif what == 1:
        f["depth"] = rng.randrange(1, 5)
    elif what == 2:
        f["tile"] = rng.choice([8, 8, 9, 16, 255, 256, 65535])
    elif what == 3:
        f["planes"] = rng.randrange(1, 9)
    else:
        f["flags"] = int(f["flags"]) ^ container.FLAG_ALPHA
    try:
        header = container.Header(int(f["width"]), int(f["height"]), 3, bool(int(f["flags"]) & 1), int(f["depth"]),
                                  int(f["planes"]), 1, max(int(f["tile"]), 1), (0, 0, 0), (1, 1, 1), "", b"")
        rows, cols = header.tiles
        n_groups = header.n_groups
    except (ZeroDivisionError, ValueError):
        return
    if rows * cols * n_groups > 4096:
        return
    donor = [s for g in rng.choice(seeds).groups for s in g]
    groups = []
    for g in range(n_groups):
        if g < len(raw.groups) and len(raw.groups[g]) == rows * cols and rng.random() < 0.5:
            groups.append(raw.groups[g])
        else:
            groups.append([rng.choice(donor) if rng.random() < 0.5 else _garbage(rng, _segment_length(rng))
                           for _ in range(rows * cols)])
    raw.groups, raw.length_codes = groups, {}


def mut_segment(raw: RawTcz, rng: random.Random, seeds: list[RawTcz]) -> None:
    """Replace, flip, cut or extend one segment (lengths follow, so the table stays consistent)."""
    picked = _pick_segment(raw, rng)
    if picked is None:
        return
    g, t = picked
    segment = bytearray(raw.groups[g][t])
    kind = rng.randrange(5)
    if kind == 0 and segment:
        for _ in range(rng.randrange(1, 4)):
            segment[rng.randrange(len(segment))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        segment = bytearray(_garbage(rng, _segment_length(rng)))
    elif kind == 2:
        segment = segment[: rng.choice([0, 1, 3, 4, max(len(segment) - 4, 0)])]
    elif kind == 3:
        segment += _garbage(rng, rng.choice([1, 4, 4, 64]))
    else:
        other = rng.choice(seeds)
        og = rng.randrange(len(other.groups))
        segment = bytearray(rng.choice(other.groups[og]))
    raw.groups[g][t] = bytes(segment)


def mut_length_code(raw: RawTcz, rng: random.Random, seeds: list[RawTcz]) -> None:
    """Plant an odd varint in the segment table: overlong, too long, huge, zero, off by one."""
    picked = _pick_segment(raw, rng)
    if picked is None:
        return
    g, t = picked
    n = len(raw.groups[g][t])
    raw.length_codes[(g, t)] = rng.choice([
        bytes([0x80 | (n & 0x7F), n >> 7]) if n < 128 else varint(n) + b"\x00",  # overlong
        b"\x80\x80\x80\x80\x80\x01", b"\xff\xff\xff\xff\x0f", b"\xff\xff\xff\xff\x7f", b"\x00",
        varint(n + 1), varint(n + 4), varint(max(n - 4, 0)), varint(n * 1000), varint(1 << 32), b"\x80",
    ])


def mut_payload_len(raw: RawTcz, rng: random.Random, seeds: list[RawTcz]) -> None:
    total = sum(len(s) for g in raw.groups for s in g)
    raw.payload_len = rng.choice([0, total + 1, total - 1, total + 4, total * 2, 0xFFFFFFFF, 1 << 31])


def mut_name(raw: RawTcz, rng: random.Random, seeds: list[RawTcz]) -> None:
    kind = rng.randrange(5)
    if kind == 0:
        raw.name = rng.choice(seeds).name  # another scale's model
    elif kind == 1:
        raw.name = rng.choice([b"", b"\xff\xfe", b"tinycompress-s16\x00", b"x" * 255, b"tinycompress-s1024"])
    elif kind == 2:
        raw.name_len = rng.choice([0, 255, len(raw.name) + 1, max(len(raw.name) - 1, 0)])
    elif kind == 3:
        raw.weights_id = rng.choice([bytes(8), rng.choice(seeds).weights_id, raw.weights_id[:5]])
    else:
        raw.weights_id = bytes(rng.getrandbits(8) for _ in range(8))


def mut_extensions(raw: RawTcz, rng: random.Random, seeds: list[RawTcz]) -> None:
    kind = rng.randrange(4)
    if kind == 0:
        raw.extensions.append((rng.choice([0x01, 0x7F, 0x80, 0xFF]), _garbage(rng, rng.choice([0, 1, 16, 300])), None))
    elif kind == 1:
        raw.ext_count = rng.choice([1, 2, 255])
    elif kind == 2:
        raw.extensions.append((0x02, b"abc", rng.choice([0, 2, 4, 0xFFFF])))
    else:
        raw.extensions = [(0x01, bytes(rng.getrandbits(8) for _ in range(8)), None)] * rng.randrange(1, 40)


def mut_groups(raw: RawTcz, rng: random.Random, seeds: list[RawTcz]) -> None:
    """Drop or add a group, or a tile entry of a group: a table that disagrees with the header."""
    kind = rng.randrange(4)
    if kind == 0 and raw.groups:
        raw.groups.pop()
    elif kind == 1 and raw.groups:
        raw.groups.append([_garbage(rng, 4) for _ in raw.groups[0]])
    elif kind == 2 and raw.groups and raw.groups[-1]:
        raw.groups[-1] = raw.groups[-1][:-1]
    elif raw.groups:
        raw.groups[0] = raw.groups[0] + [b"\0\0\0\0"]
    raw.length_codes = {}


def mut_splice(raw: RawTcz, rng: random.Random, seeds: list[RawTcz]) -> None:
    """This header (and its fields) over another file's segment table and payload."""
    other = rng.choice(seeds)
    raw.groups = [list(g) for g in other.groups]
    raw.group_crcs = list(other.group_crcs)
    raw.length_codes = {}


def mut_trailer(raw: RawTcz, rng: random.Random, seeds: list[RawTcz]) -> None:
    raw.trailer = _garbage(rng, rng.choice([1, 3, 4, 100]))


STRUCTURED: tuple[Callable[[RawTcz, random.Random, list[RawTcz]], None], ...] = (
    mut_field, mut_field, mut_field, mut_geometry, mut_geometry, mut_segment, mut_segment, mut_length_code,
    mut_payload_len, mut_name, mut_extensions, mut_groups, mut_splice, mut_trailer,
)


def byte_mutation(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """One byte-level mutation; half of them aim at the header, where the parsing is."""
    out = bytearray(data)
    if not out:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))
    header_end = min(len(out), struct.unpack_from("<H", out, 10)[0] if len(out) >= 12 else len(out)) or len(out)
    pos = rng.randrange(header_end) if rng.random() < 0.5 else rng.randrange(len(out))
    kind = rng.randrange(8)
    if kind == 0:
        for _ in range(rng.randrange(1, 9)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        out[pos] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.getrandbits(8)])
    elif kind == 2:
        out = out[: rng.randrange(len(out))]  # truncation
    elif kind == 3:
        out[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 1, 4, 16])))
    elif kind == 4:
        del out[pos : pos + rng.choice([1, 1, 4, 16])]
    elif kind == 5:  # cross-over: a prefix of this file, the rest of another
        other = rng.choice(others)
        out = out[:pos] + other[rng.randrange(len(other)) if other else 0 :]
    elif kind == 6:
        out += bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 4, 64])))
    else:
        chunk = out[pos : pos + rng.choice([4, 16, 64])]
        out[pos:pos] = chunk * rng.randrange(1, 4)  # duplicated run
    return bytes(out)


# --------------------------------------------------------------------------- running inputs


class _Watchdog(BaseException):
    """Raised by SIGALRM in an input that ran too long (BaseException: no `except Exception` swallows it)."""


def _on_alarm(signum, frame):
    raise _Watchdog()


@dataclass
class Finding:
    kind: str  # crash, hang, memory
    signature: str
    target: str
    count: int
    example: str  # file name of the saved reproducer
    message: str


@dataclass
class CampaignResult:
    seed: int
    inputs: int = 0
    elapsed_s: float = 0.0
    targets: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)  # decoded / rejected / time-limit / crash / hang
    crashes: dict[str, Finding] = field(default_factory=dict)
    hangs: dict[str, Finding] = field(default_factory=dict)
    memory: dict[str, Finding] = field(default_factory=dict)
    warnings: Counter = field(default_factory=Counter)
    rejections: Counter = field(default_factory=Counter)  # first words of the TinyCodecError messages
    slowest_s: float = 0.0
    peak_rss_mb: float = 0.0
    baseline_rss_mb: float = 0.0
    seeds: int = 0

    def summary(self) -> dict:
        out = asdict(self)
        for key in ("targets", "outcomes", "warnings"):
            out[key] = dict(getattr(self, key))
        out["rejections"] = dict(self.rejections.most_common(40))
        out["distinct_crashes"] = len(self.crashes)
        out["distinct_hangs"] = len(self.hangs)
        out["memory_blowups"] = len(self.memory)
        out["inputs_per_s"] = round(self.inputs / self.elapsed_s, 1) if self.elapsed_s else 0.0
        return out

    @property
    def clean(self) -> bool:
        return not (self.crashes or self.hangs or self.memory)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def crash_signature(exc: BaseException) -> str:
    """Exception type and the innermost frame inside tinycodec (else the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/tinycodec/" in f.filename.replace("\\", "/")]
    frame = (ours or frames or [None])[-1]
    where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
    return f"{type(exc).__name__} at {where}"


class Fuzzer:
    """The seeded mutation fuzzer: a pure function of its seed and the seed corpus."""

    def __init__(self, seed: int, corpus: str = "full", out_dir: Path | None = None,
                 hang_seconds: float = HANG_SECONDS, memory_jump_mb: float = MEMORY_JUMP_MB,
                 log: Callable[[str], None] | None = None) -> None:
        self.rng = random.Random(seed)
        self.seeds = seed_corpus(corpus)
        self.raw_seeds = [RawTcz.from_valid(s.data) for s in self.seeds]
        self.tiles = self._tile_corpus()
        self.out_dir = out_dir
        self.hang_seconds = hang_seconds
        self.memory_jump_mb = memory_jump_mb
        self.log = log or (lambda line: None)
        self.result = CampaignResult(seed=seed, seeds=len(self.seeds))

    def _tile_corpus(self) -> list[tuple[list[bytes], int, tuple[int, int, int]]]:
        """(segments, planes, shape) of every tile of every seed, colour and alpha, for the entropy target."""
        tiles = []
        for seed in self.seeds:
            unpacked = container.unpack(seed.data)
            h = unpacked.header
            colour = unpacked.groups[: len(h.colour_groups)]
            alpha = unpacked.groups[len(h.colour_groups) :]
            lh, lw = h.latent_size
            for index, (rows, cols) in enumerate(_tile_slices(h)):
                shape = (3, len(range(lh)[rows]), len(range(lw)[cols]))
                tiles.append(([g[index] for g in colour], h.planes, shape))
            for index, (rows, cols) in enumerate(_tile_slices(h, 1 << h.depth)):
                if alpha:
                    shape = (1, len(range(h.height)[rows]), len(range(h.width)[cols]))
                    tiles.append(([g[index] for g in alpha], container.ALPHA_PLANES, shape))
        return tiles

    # ---- input generation

    def make_file(self) -> tuple[bytes, bool]:
        rng = self.rng
        raw = rng.choice(self.raw_seeds).copy()
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            rng.choice(STRUCTURED)(raw, rng, self.raw_seeds)
        data = raw.to_bytes(reseal=rng.random() < 0.85)
        if rng.random() < 0.35:
            others = [s.data for s in self.seeds]
            for _ in range(rng.choice([1, 1, 2])):
                data = byte_mutation(data, rng, others)
            if rng.random() < 0.5:
                data = reseal_header(data)
        return data, rng.random() < 0.3

    def make_bomb(self) -> tuple[bytes, bool]:
        """A resealed file declaring up to the default pixel cap, with segments of 4 to 64 bytes.

        Tiles of 8 to 1024 elements (the largest tile's decoder state is about 40 MB, so that a
        memory finding means more than one tile's legitimate state); model and weights match the
        scale, so that the file reaches the entropy decoder when its table passes the floor.
        """
        rng = self.rng
        raw = rng.choice(self.raw_seeds).copy()
        f = raw.fixed
        depth = rng.randrange(1, 5)
        f["depth"], f["planes"], f["coder"] = depth, rng.randrange(1, 9), rng.choice(sorted(entropy.CODERS))
        f["flags"] = rng.choice([0, container.FLAG_ALPHA])
        cap = DEFAULT_LIMITS.max_pixels
        pixels = rng.choice([cap, cap // 2, 13377 * 13377, 10**8, 10**7, rng.randrange(1 << 16, cap)])
        f["width"] = rng.randrange(max(1, -(-pixels // container.MAX_DIMENSION)), min(container.MAX_DIMENSION, pixels) + 1)
        f["height"] = max(1, min(container.MAX_DIMENSION, pixels // int(f["width"])))
        entry = current_entry(model_name(4**depth))
        raw.name, raw.weights_id, raw.name_len = entry.model.encode(), entry.short_id, None
        raw.extensions = [e for e in raw.extensions if e[0] != container.EXT_DOWNSCALE]  # it fixes the geometry
        for tile in sorted({rng.choice([8, 64, 256, 1024]), 1024}):  # the first that fits the header
            header = container.Header(int(f["width"]), int(f["height"]), 3, bool(f["flags"]), depth, int(f["planes"]),
                                      int(f["coder"]), tile, (0, 0, 0), (1, 1, 1), "x", b"")
            rows, cols = header.tiles
            if rows * cols * header.n_groups <= 12_000:
                break
        f["tile"] = tile
        donor = [seg for g in rng.choice(self.raw_seeds).groups for seg in g]
        raw.groups = [[rng.choice(donor)[:64] if rng.random() < 0.3 else _garbage(rng, rng.choice([4, 4, 8, 16, 64]))
                       for _ in range(rows * cols)] for _ in range(header.n_groups)]
        raw.groups = [[seg[: len(seg) - len(seg) % 4] or b"\0\0\0\x80" for seg in g] for g in raw.groups]
        raw.length_codes, raw.payload_len = {}, None
        return raw.to_bytes(reseal=True), rng.random() < 0.3

    def make_tile(self) -> tuple[list[bytes], int, tuple[int, int, int]]:
        rng = self.rng
        segments, planes, shape = rng.choice(self.tiles)
        segments = list(segments)
        kind = rng.randrange(6)
        if kind == 0:  # bit flips inside a segment
            i = rng.randrange(len(segments))
            seg = bytearray(segments[i])
            seg[rng.randrange(len(seg))] ^= 1 << rng.randrange(8)
            segments[i] = bytes(seg)
        elif kind == 1:
            segments = [_garbage(rng, _segment_length(rng)) for _ in segments]
        elif kind == 2:  # the same bits, decoded as a different shape
            c = shape[0] if rng.random() < 0.7 else rng.randrange(1, 4)
            shape = (c, rng.randrange(1, 49), rng.randrange(1, 49))
        elif kind == 3:
            segments = segments[: rng.randrange(len(segments) + 1)]
        elif kind == 4:  # a segment from another tile, or another plane
            other = rng.choice(self.tiles)[0]
            segments[rng.randrange(len(segments))] = rng.choice(other)
        else:
            i = rng.randrange(len(segments))
            segments[i] = segments[i][: rng.choice([0, 1, 4, max(len(segments[i]) - 4, 0)])]
        return segments, planes, shape

    # ---- running

    def run_one(self) -> None:
        rng = self.rng
        pick = rng.random()
        if pick < 0.05:
            target = "bomb"
            data, partial = self.make_bomb()

            def call():
                tinycodec.decode_with_info(data, partial=partial)  # the default limits, not the campaign's cap

            reproducer = data
        elif pick < 0.5:
            target = "decode"
            data, partial = self.make_file()

            def call():
                tinycodec.decode_with_info(data, partial=partial, max_pixels=FUZZ_MAX_PIXELS)

            reproducer = data
        elif pick < 0.85:
            target = "container"
            data, partial = self.make_file()

            def call():
                container.unpack(data, partial=partial, max_pixels=FUZZ_MAX_PIXELS)

            reproducer = data
        else:
            target = "entropy"
            segments, planes, shape = self.make_tile()
            coder = rng.choice(sorted(entropy.CODERS))  # every coder a file may name
            if coder in container.WHOLE_SYMBOL_CODERS:
                segments = segments[:1]  # such a coder's tile is one segment (a file cannot give it more)

            def call():
                entropy.decode_tile(segments, planes, shape, None, coder)

            reproducer = json.dumps({"segments": [s.hex() for s in segments], "planes": planes,
                                     "shape": list(shape), "coder": coder}).encode()
        self.execute(target, call, reproducer)

    def execute(self, target: str, call: Callable[[], None], reproducer: bytes) -> str:
        res = self.result
        res.inputs += 1
        res.targets[target] += 1
        rss_before = _rss_mb()
        outcome, exc = "decoded", None
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                signal.setitimer(signal.ITIMER_REAL, self.hang_seconds)
                try:
                    call()
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except TinyCodecError as err:
            outcome = "time-limit" if "time limit" in str(err) else "rejected"
            res.rejections[_rejection_key(str(err))] += 1
        except _Watchdog:
            outcome = "hang"
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # noqa: BLE001 - anything else is exactly what we are looking for
            outcome, exc = "crash", err
        finally:
            signal.signal(signal.SIGALRM, previous)
        elapsed = time.perf_counter() - start
        res.slowest_s = max(res.slowest_s, elapsed)
        if outcome != "crash" and elapsed > self.hang_seconds:
            outcome = "hang"
        for w in caught:
            if w.category.__name__ != "PartialAlphaWarning":
                res.warnings[f"{w.category.__name__}: {str(w.message)[:80]} ({Path(w.filename).name}:{w.lineno})"] += 1
        res.outcomes[outcome] += 1
        if outcome == "crash":
            self._record(res.crashes, "crash", crash_signature(exc), target, reproducer,
                         "".join(traceback.format_exception(exc)))
        elif outcome == "hang":
            self._record(res.hangs, "hang", f"{target} {elapsed:.1f}s", target, reproducer, f"ran {elapsed:.2f} s")
        jump = _rss_mb() - rss_before
        if jump > self.memory_jump_mb:
            self._record(res.memory, "memory", f"{target} +{jump:.0f}MB", target, reproducer,
                         f"peak RSS rose by {jump:.0f} MB")
        return outcome

    def _record(self, table: dict[str, Finding], kind: str, signature: str, target: str, reproducer: bytes,
                message: str) -> None:
        if signature in table:
            table[signature].count += 1
            return
        name = f"{kind}-{hashlib.sha256(reproducer).hexdigest()[:12]}.{'json' if target == 'entropy' else 'tcz'}"
        if self.out_dir is not None:
            folder = self.out_dir / f"{kind}es" if kind == "crash" else self.out_dir / f"{kind}s"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(reproducer)
            (folder / (name + ".txt")).write_text(f"target: {target}\n{message}\n")
        table[signature] = Finding(kind, signature, target, 1, name, message.strip().splitlines()[-1][:300])
        self.log(f"NEW {kind}: {signature} ({target}) -> {name}")

    def run(self, max_inputs: int | None = None, max_seconds: float | None = None,
            progress_every_s: float = 30.0) -> CampaignResult:
        res = self.result
        res.baseline_rss_mb = _rss_mb()
        start = last = time.perf_counter()
        while True:
            now = time.perf_counter()
            if (max_inputs is not None and res.inputs >= max_inputs) or (
                    max_seconds is not None and now - start >= max_seconds):
                break
            self.run_one()
            if now - last >= progress_every_s:
                last = now
                self.log(self.progress_line(now - start))
        res.elapsed_s = time.perf_counter() - start
        res.peak_rss_mb = _rss_mb()
        self.log(self.progress_line(res.elapsed_s))
        return res

    def progress_line(self, elapsed: float) -> str:
        r = self.result
        o = r.outcomes
        return (f"[{elapsed:7.0f}s] inputs {r.inputs} ({r.inputs / max(elapsed, 1e-9):.0f}/s) decoded {o['decoded']} "
                f"rejected {o['rejected']} time-limit {o['time-limit']} crashes {len(r.crashes)} "
                f"hangs {len(r.hangs)} memory {len(r.memory)} slowest {r.slowest_s:.2f}s "
                f"peak RSS {_rss_mb():.0f} MB")


def _rejection_key(message: str) -> str:
    """The TinyCodecError message without its numbers: which check rejected the input."""
    return " ".join("#" if any(ch.isdigit() for ch in word) else word for word in message.split())[:90]


def run_campaign(seed: int, max_inputs: int | None = None, max_seconds: float | None = None,
                 corpus: str = "full", out_dir: Path | None = None,
                 log: Callable[[str], None] | None = None) -> CampaignResult:
    fuzzer = Fuzzer(seed, corpus=corpus, out_dir=out_dir, log=log)
    return fuzzer.run(max_inputs=max_inputs, max_seconds=max_seconds)


# --------------------------------------------------------------------------- bit-flip sweep


@dataclass
class SweepResult:
    file_bytes: int
    flips: int
    detected: int  # TinyCodecError
    identical: int  # decoded to exactly the reference image
    silent: int  # decoded to a different image: silent corruption
    silent_bits: list[int] = field(default_factory=list)


def bit_flip_sweep(data: bytes, *, partial: bool = False) -> SweepResult:
    """Flip every bit of ``data`` in turn and decode; any other exception propagates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a partial file without its alpha warns on every decode
        return _sweep(data, partial)


def _sweep(data: bytes, partial: bool) -> SweepResult:
    reference = tinycodec.decode(data, partial=partial)
    ref_pixels = np.asarray(reference)
    result = SweepResult(len(data), 0, 0, 0, 0)
    buf = bytearray(data)
    for bit in range(len(data) * 8):
        buf[bit // 8] ^= 1 << (bit % 8)
        result.flips += 1
        try:
            out = tinycodec.decode(bytes(buf), partial=partial)
        except TinyCodecError:
            result.detected += 1
        else:
            if out.mode == reference.mode and out.size == reference.size and np.array_equal(np.asarray(out),
                                                                                             ref_pixels):
                result.identical += 1
            else:
                result.silent += 1
                result.silent_bits.append(bit)
        buf[bit // 8] ^= 1 << (bit % 8)
    return result


def sweep_file() -> bytes:
    """The small file the sweep uses: RGBA (colour and alpha groups), scale 16, 5 planes, two tile columns."""
    rng = np.random.default_rng(7)
    return tinycodec.encode(_seed_image(40, 24, "RGBA", rng), scale=16, planes=5, tile=8)


# --------------------------------------------------------------------------- atheris


def run_atheris(libfuzzer_args: list[str], out_dir: Path) -> None:
    """Coverage-guided fuzzing of tinycodec.decode, the seed corpus as the starting corpus.

    A custom mutator mixes libFuzzer's own byte mutations with the structured
    ones above and re-seals checksums, so that coverage feedback reaches past
    the CRCs.
    """
    corpus_dir = out_dir / "atheris-corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    seeds = seed_corpus("full")
    for s in seeds:
        (corpus_dir / f"{s.name}.tcz").write_bytes(s.data)
    raw_seeds = [RawTcz.from_valid(s.data) for s in seeds]
    others = [s.data for s in seeds]

    def test_one_input(data: bytes) -> None:
        for partial in (False, True):
            try:
                tinycodec.decode_with_info(data, partial=partial, max_pixels=FUZZ_MAX_PIXELS)
            except TinyCodecError:
                pass

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            try:
                raw = RawTcz.from_valid(data)
            except (TinyCodecError, struct.error, IndexError):
                raw = rng.choice(raw_seeds).copy()
            rng.choice(STRUCTURED)(raw, rng, raw_seeds)
            out = raw.to_bytes(reseal=rng.random() < 0.9)
        else:
            out = atheris.Mutate(data, max_size) if rng.random() < 0.5 else byte_mutation(data, rng, others)
            if rng.random() < 0.5:
                out = reseal_header(out)
        return out[:max_size]

    atheris.Setup([sys.argv[0], *libfuzzer_args, str(corpus_dir)], test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("mutation", "atheris"), default="mutation")
    parser.add_argument("--inputs", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--corpus", choices=("full", "small"), default="full")
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"), help="findings, progress.log, summary.json")
    parser.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")
    parser.add_argument("--sweep", action="store_true", help="flip every bit of a small file and report")
    parser.add_argument("libfuzzer_args", nargs="*", help="after --, arguments for libFuzzer (atheris engine)")
    args = parser.parse_args(argv)

    if args.sweep:
        data = sweep_file()
        # the whole file, normally and progressively; then a download cut inside its last group,
        # where flips in the incomplete group change nothing because that group is not used
        cut = data[: len(data) - len(container.unpack(data).groups[-1][-1]) // 2]
        for name, sample, partial in (("whole", data, False), ("whole", data, True), ("truncated", cut, True)):
            r = bit_flip_sweep(sample, partial=partial)
            print(json.dumps({"file": name, "partial": partial, **asdict(r)}))
        return 0
    if args.engine == "atheris":
        if atheris is None:
            print("fuzz_decoder: atheris is not importable here (pip install atheris; a wheel exists for CPython "
                  "3.11 on x86-64 Linux, elsewhere it needs clang); the mutation engine needs nothing",
                  file=sys.stderr)
            return 2
        run_atheris(args.libfuzzer_args, args.out)
        return 0
    if args.inputs is None and args.seconds is None:
        args.inputs = 100_000
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = (args.out / "progress.log").open("a")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    command = " ".join([Path(sys.executable).name, *sys.argv])
    log(f"fuzz_decoder: seed {args.seed}, corpus {args.corpus}, inputs {args.inputs}, seconds {args.seconds}: "
        f"{command}")
    fuzzer = Fuzzer(args.seed, corpus=args.corpus, out_dir=args.out, log=log)
    result = fuzzer.run(max_inputs=args.inputs, max_seconds=args.seconds, progress_every_s=args.progress_every)
    summary = {"command": command, **result.summary(),
               "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "torch": torch.__version__,
                            "tinycodec": tinycodec.__version__}}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    log(json.dumps({k: summary[k] for k in ("inputs", "distinct_crashes", "distinct_hangs", "memory_blowups",
                                             "peak_rss_mb", "elapsed_s", "seed")}))
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
