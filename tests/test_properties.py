"""Property-based tests (hypothesis) of the container and entropy layers.

* any byte string given to the decoder decodes or raises TinyCodecError, nothing else;
* encode -> decode is the identity on latent symbols for any shape, planes and content;
* every header field value round-trips through pack -> read_header.
"""

import math
import struct
import zlib
from functools import lru_cache
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinycodec
from tinycodec import Limits, TinyCodecError, container, entropy
from tinycodec.container import MAGIC, Header

# Hypothesis' own deadline would make timing on 2 shared cores a source of flaky failures.
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL_CAP = Limits(max_pixels=1 << 14)  # keeps any crafted geometry cheap to decode


@lru_cache(maxsize=1)
def valid_files() -> tuple[bytes, ...]:
    """Small valid files: grey, RGB, RGBA; one plane and eight; several tiles; default and progressive."""
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, rng.integers(0, 256, (12, 20), dtype=np.uint8)])
    return (
        tinycodec.encode(rgb[:, :, 0], scale=16, planes=1),
        tinycodec.encode(rgb, scale=4, planes=3, tile=8),
        tinycodec.encode(rgba, scale=64, planes=8),
        tinycodec.encode(rgba[:9, :7], scale=256, planes=2),
        tinycodec.encode(rgba, scale=64, planes=8, progressive=True),  # coder 3: one group per plane
        tinycodec.encode(rgb, scale=4, planes=3, tile=8, progressive=True),
    )


def decodes_or_refuses(data: bytes, partial: bool = False) -> bool:
    """True if it decoded, False if TinyCodecError; anything else fails the test."""
    try:
        tinycodec.decode(data, partial=partial, limits=SMALL_CAP)
    except TinyCodecError:
        return False
    return True


def reseal(data: bytes) -> bytes:
    """Recompute the header CRC where the declared header length puts it (a crafted file)."""
    if len(data) < 12:
        return data
    end = struct.unpack_from("<H", data, 10)[0]
    if not 4 <= end <= len(data):
        return data
    return data[: end - 4] + struct.pack("<I", zlib.crc32(data[: end - 4])) + data[end:]


# --------------------------------------------------------------------------- any bytes


@FAST
@given(st.binary(max_size=400), st.booleans())
def test_arbitrary_bytes(data, partial):
    decodes_or_refuses(data, partial)


@FAST
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_after_the_magic(tail, partial):
    decodes_or_refuses(MAGIC + tail, partial)


@SLOW
@given(st.data())
def test_edited_valid_files(data):
    """Byte edits, truncation and extension of valid files, with and without a resealed header CRC."""
    original = data.draw(st.sampled_from(valid_files()))
    buf = bytearray(original)
    for pos, value in data.draw(st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(0, 255)),
                                         max_size=6)):
        buf[pos] = value
    cut = data.draw(st.integers(0, len(buf)))
    out = bytes(buf[:cut]) + data.draw(st.binary(max_size=8))
    resealed = data.draw(st.booleans())
    if resealed:
        out = reseal(out)
    partial = data.draw(st.booleans())
    decoded = decodes_or_refuses(out, partial)
    if not resealed and not partial and out != original:
        assert not decoded, "a changed file decoded although its checksums were not recomputed"


@SLOW
@given(st.data())
def test_every_prefix_decodes_its_complete_planes(data):
    original = data.draw(st.sampled_from(valid_files()))
    header, table, header_len = container.read_header(original)
    cut = data.draw(st.integers(0, len(original)))
    prefix = original[:cut]
    complete = 0
    end = header_len
    for _, lengths in table:
        end += sum(lengths)
        complete += end <= cut
    # Colour groups come first: one per plane (coder 3), or one holding every plane (coder 4).
    planes = sum(header.colour_groups[:complete])
    try:
        _, info = tinycodec.decode_with_info(prefix, partial=True)
    except TinyCodecError:
        assert cut < header_len or complete == 0  # only a file without its first group is refused
    else:
        assert info.planes_decoded == planes


# --------------------------------------------------------------------------- entropy layer


@st.composite
def tiles(draw):
    planes = draw(st.integers(1, 8))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    kind = draw(st.sampled_from(["any", "smooth", "constant"]))
    if kind == "any":
        symbols = draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, 2**planes - 1)))
    elif kind == "constant":
        symbols = np.full(shape, draw(st.integers(0, 2**planes - 1)), np.uint8)
    else:  # a ramp: what latents mostly look like
        y, x = np.mgrid[0 : shape[1], 0 : shape[2]]
        symbols = np.broadcast_to(((x + y) * draw(st.integers(1, 9))) % 2**planes, shape).astype(np.uint8)
    return np.ascontiguousarray(symbols), planes


@FAST
@given(tiles())
def test_entropy_round_trip_any_shape_planes_and_content(tile):
    symbols, planes = tile
    for coder in (entropy.PROGRESSIVE_CODER_ID, entropy.CODER_ID):
        segments = entropy.encode_tile(symbols, planes, coder)
        assert len(segments) == len(container.group_planes(coder, planes))
        assert all(len(s) % 4 == 0 and s for s in segments)
        assert np.array_equal(entropy.decode_tile(segments, planes, symbols.shape, coder_id=coder), symbols)
        # the payload bound the decoder applies holds for whatever the encoder writes
        raw_bits = planes * symbols.size
        assert sum(map(len, segments)) <= Limits().max_payload_bytes(raw_bits, len(segments))


@FAST
@given(tiles(), st.data())
def test_entropy_prefix_gives_the_upper_planes(tile, data):
    # Progressive coder: one segment per plane, any prefix of them decodes.
    symbols, planes = tile
    coder = entropy.PROGRESSIVE_CODER_ID
    segments = entropy.encode_tile(symbols, planes, coder)
    m = data.draw(st.integers(0, planes))
    decoded = entropy.decode_tile(segments[:m], planes, symbols.shape, coder_id=coder)
    assert np.array_equal(decoded, symbols >> (planes - m))


@FAST
@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(1, 8), st.integers(1, 3), st.integers(1, 16),
       st.integers(1, 16))
def test_entropy_decoder_on_garbage(segments, planes, c, h, w):
    assume(len(segments) <= planes)
    coder = entropy.CODER_ID if len(segments) <= 1 else entropy.PROGRESSIVE_CODER_ID  # coder 4: one segment
    try:
        out = entropy.decode_tile(segments, planes, (c, h, w), coder_id=coder)
    except TinyCodecError:
        return
    assert out.shape == (c, h, w) and out.dtype == np.uint8
    decoded_planes = sum(container.group_planes(coder, planes)[: len(segments)])
    assert int(out.max(initial=0)) < 2**decoded_planes or not segments


# --------------------------------------------------------------------------- container layer

_LARGEST = float(np.nextafter(np.float32(container.MAX_LATENT), np.float32(0)))  # float32(1e30) is above 1e30
f32 = st.floats(min_value=-_LARGEST, max_value=_LARGEST, width=32, allow_nan=False)


@st.composite
def headers(draw):
    width, height = draw(st.integers(1, container.MAX_DIMENSION)), draw(st.integers(1, container.MAX_DIMENSION))
    depth = draw(st.integers(1, 4))
    lh, lw = -(-height // 2**depth), -(-width // 2**depth)
    tile = draw(st.integers(8, 0xFFFF))
    if math.ceil(lh / tile) * math.ceil(lw / tile) > 12:  # keep the table small: few enough tiles
        tile = draw(st.integers(min(max(8, -(-max(lh, lw) // 3)), 0xFFFF), 0xFFFF))
    lo, hi = [], []
    for _ in range(3):
        a, b = sorted((draw(f32), draw(f32)))
        assume(a < b)
        lo.append(a)
        hi.append(b)
    return Header(
        width=width, height=height, color_channels=draw(st.sampled_from([1, 3])), has_alpha=draw(st.booleans()),
        depth=depth, planes=draw(st.integers(1, 8)), coder_id=draw(st.integers(0, 255)), tile=tile,
        lo=tuple(lo), hi=tuple(hi), model=draw(st.text(sorted(container.MODEL_NAME_CHARS), min_size=1, max_size=255)),
        weights_id=draw(st.binary(min_size=8, max_size=8)),
        extensions=draw(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=4)),
    )


@FAST
@given(headers(), st.data())
def test_header_round_trip_for_every_field_value(header, data):
    rows, cols = header.tiles
    groups = [[data.draw(st.binary(min_size=1, max_size=3)) * 4 for _ in range(rows * cols)]
              for _ in range(header.n_groups)]
    packed = container.pack(header, groups)
    unlimited = Limits(max_pixels=None)
    # the fields, not the payload floor (its own test below): these segments are far too short for most geometries
    with mock.patch.object(container, "check_payload_floor", lambda header, lengths: None):
        parsed, table, header_len = container.read_header(packed, limits=unlimited)
        assert container.unpack(packed, limits=unlimited).groups == groups
    assert parsed == header
    assert [lengths for _, lengths in table] == [[len(s) for s in g] for g in groups]
    assert header_len + sum(len(s) for g in groups for s in g) == len(packed)


@FAST
@given(st.integers(1, 4000), st.integers(1, 4000), st.integers(1, 4), st.sampled_from([8, 64, 256, 4096]),
       st.booleans(), st.sampled_from(sorted(entropy.CODERS)))
def test_payload_floor_holds_exactly_at_each_tiles_floor(width, height, depth, tile, alpha, coder):
    """Segments of exactly their tile's floor pass; one word less, where that is still a segment, is refused."""
    header = Header(width, height, 3, alpha, depth, 1, coder, tile, (0.0,) * 3, (1.0,) * 3, "m", bytes(8))
    rows, cols = header.tiles
    assume(rows * cols * header.n_groups <= 2000)
    floors = [[entropy.min_segment_bytes(coder, d) for d in container.tile_decisions(header, g)]
              for g in range(header.n_groups)]
    unlimited = Limits(max_pixels=None)
    container.read_header(container.pack(header, [[bytes(n) for n in g] for g in floors]), limits=unlimited)
    g, t = max(((g, t) for g in range(len(floors)) for t in range(len(floors[g]))), key=lambda gt: floors[gt[0]][gt[1]])
    if floors[g][t] > 4:
        short = [[bytes(n - 4 if (i, j) == (g, t) else n) for j, n in enumerate(row)] for i, row in enumerate(floors)]
        with pytest.raises(TinyCodecError, match="not a file any encoder writes"):
            container.read_header(container.pack(header, short), limits=unlimited)


@FAST
@given(st.integers(0, 2**35 - 1))
def test_varint_round_trip(n):
    code = container._varint(n)
    reader = container._Reader(code, 0, len(code))
    assert reader.varint() == n and reader.pos == len(code)


@FAST
@given(st.integers(1, 2**28), st.integers(1, 3))
def test_overlong_varints_are_refused(n, extra):
    code = bytearray(container._varint(n))
    code[-1] |= 0x80
    code += b"\x80" * (extra - 1) + b"\x00"  # the same value with needless zero groups
    reader = container._Reader(bytes(code), 0, len(code))
    try:
        reader.varint()
    except TinyCodecError:
        return
    raise AssertionError("an overlong varint was accepted")


@FAST
@given(headers(), st.sampled_from(["width", "height", "color_channels", "depth", "planes", "tile", "lo", "model",
                                   "weights_id", "coder_id"]), st.data())
def test_pack_refuses_what_a_reader_would_refuse(header, name, data):
    bad = {"width": [0, container.MAX_DIMENSION + 1], "height": [0, container.MAX_DIMENSION + 1],
           "color_channels": [0, 2, 4], "depth": [0, 5], "planes": [0, 9], "tile": [7, 0x10000],
           "lo": [(math.nan, 0.0, 0.0), (math.inf, 0.0, 0.0), header.hi], "model": ["é", "x" * 256],
           "weights_id": [b"", bytes(9)], "coder_id": [-1, 256]}[name]
    setattr(header, name, data.draw(st.sampled_from(bad)))
    rows, cols = (1, 1) if name in ("width", "height", "depth", "tile") else header.tiles
    groups = [[b"\0" * 4] * (rows * cols) for _ in range(header.n_groups)]
    try:
        container.pack(header, groups)
    except ValueError as exc:
        assert "cannot write this .tcz header" in str(exc) or "groups do not match" in str(exc)
    else:
        raise AssertionError(f"pack wrote a header with {name}={getattr(header, name)!r}")
