import numpy as np
import pytest

from tinycodec import TinyCodecError
from tinycodec import coder4
from tinycodec.entropy import CODER_ID, CODERS, _raw_length, decode_tile, encode_tile

from .conftest import photo_like

# sha256 of each coder's output for smooth_symbols(24, 20, seed=11) at 8 planes: coder 1 frozen with
# format version 1, coder 2 when it was added (its last two planes are raw, the rest use the back-off prior),
# coder 3 when it was added (three polyphase levels, chunk sizes carried across a channel's passes;
# 884 bytes against coder 2's 932), coder 4 when it was added (one segment of 828 bytes).
GOLDEN_SHA256 = {
    1: "66a02310630683d3e51f1eddd03b0b4695faba3684edd0fc0f2f65a3f5441e9e",
    2: "e27ae55405362ce0c1365c6bdc0e27b9db22e472949072596a1cd4e258a76185",
    3: "074fc6b714054b7ac0f738c5aba948fc2797ef9e90acb47aff250762a80516b7",
    4: "c6e5bd0b55da9f6c3829fa0c0509593ee93390694eb9950ca8177183599fb91e",
}
PER_PLANE_CODERS = [c for c in sorted(CODERS) if c != coder4.CODER_ID]


def smooth_symbols(h, w, seed=0):
    return np.ascontiguousarray(photo_like(h, w, seed).transpose(2, 0, 1))


@pytest.mark.parametrize("coder", sorted(CODERS))
@pytest.mark.parametrize("shape", [(3, 1, 1), (3, 1, 9), (3, 7, 1), (3, 5, 8), (1, 17, 13), (3, 40, 33)])
@pytest.mark.parametrize("planes", [1, 3, 8])
def test_round_trip_any_shape(shape, planes, coder):
    symbols = np.random.default_rng(sum(shape) + planes).integers(0, 2**planes, shape, dtype=np.uint8)
    segments = encode_tile(symbols, planes, coder)
    assert np.array_equal(decode_tile(segments, planes, shape, None, coder), symbols)


@pytest.mark.parametrize("coder", PER_PLANE_CODERS)
def test_one_segment_per_plane_and_prefix_decodes_upper_planes(coder):
    symbols = smooth_symbols(48, 64) >> 2  # 6 planes
    segments = encode_tile(symbols, 6, coder)
    assert len(segments) == 6
    for m in range(1, 7):
        assert np.array_equal(decode_tile(segments[:m], 6, symbols.shape, None, coder), symbols >> (6 - m))


def test_structured_data_compresses_well_below_raw():
    symbols = smooth_symbols(64, 96)
    bits = 8 * sum(len(s) for s in encode_tile(symbols, 8))
    assert bits / symbols.size < 0.75 * 8  # at least 25% below the raw 8 bits


def test_noise_costs_about_raw():
    symbols = np.random.default_rng(3).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    bits = 8 * sum(len(s) for s in encode_tile(symbols, 8, 1))
    assert 7.9 < bits / symbols.size < 8.4  # coder 1: the price of learning 1,980 contexts per plane
    segments = encode_tile(symbols, 8, 2)
    assert [len(s) for s in segments] == [_raw_length(symbols.shape)] * 8  # coder 2 stores them raw
    assert np.array_equal(decode_tile(segments, 8, symbols.shape, None, 2), symbols)


def test_coder_2_is_never_longer_than_raw_and_falls_back_only_where_coding_does_not_pay():
    # smooth upper planes, noisy low ones: a latent at a coarse scale level
    rng = np.random.default_rng(8)
    symbols = ((smooth_symbols(40, 48, seed=2) & 0xF0) | rng.integers(0, 16, (3, 40, 48))).astype(np.uint8)
    raw = _raw_length(symbols.shape)
    coded = encode_tile(symbols, 8, 1)
    segments = encode_tile(symbols, 8, 2)
    assert all(len(s) <= raw for s in segments)
    assert [len(s) == raw for s in segments[:3]] == [False] * 3 and len(segments[-1]) == raw
    assert len(coded[-1]) > raw  # what the fallback saves
    assert sum(map(len, segments)) < sum(map(len, coded))
    for m in range(1, 9):
        assert np.array_equal(decode_tile(segments[:m], 8, symbols.shape, None, 2), symbols >> (8 - m))


def test_raw_plane_with_nonzero_padding_or_too_long_is_rejected():
    symbols = np.random.default_rng(4).integers(0, 2, (1, 3, 7), dtype=np.uint8)  # 21 bits: 11 of padding
    (segment,) = encode_tile(symbols, 1, 2)
    assert len(segment) == _raw_length(symbols.shape) == 4
    assert np.array_equal(decode_tile([segment], 1, symbols.shape, None, 2), symbols)
    with pytest.raises(TinyCodecError, match="padding"):
        decode_tile([segment[:3] + b"\x01"], 1, symbols.shape, None, 2)
    with pytest.raises(TinyCodecError, match="longer"):
        decode_tile([segment + bytes(4)], 1, symbols.shape, None, 2)


def test_unknown_coder_is_refused():
    with pytest.raises(ValueError, match="coder 5"):
        encode_tile(np.zeros((1, 2, 2), np.uint8), 1, 5)
    with pytest.raises(ValueError, match="coder 0"):
        decode_tile([bytes(4)], 1, (1, 2, 2), None, 0)


def test_deterministic():
    symbols = smooth_symbols(32, 32, seed=5)
    assert encode_tile(symbols, 8) == encode_tile(symbols.copy(), 8)


@pytest.mark.parametrize("coder", sorted(CODERS))
def test_bitstream_is_stable(coder):
    """Every coder's bytes for a fixed input never change: old files must stay decodable.

    If this fails after a dependency upgrade (constriction's probability
    quantisation), that upgrade breaks the format and must not be taken.
    """
    import hashlib

    assert set(GOLDEN_SHA256) == set(CODERS) and CODER_ID in CODERS  # a new coder needs its golden hash
    symbols = smooth_symbols(24, 20, seed=11)
    digest = hashlib.sha256(b"".join(encode_tile(symbols, 8, coder))).hexdigest()
    assert digest == GOLDEN_SHA256[coder]


def test_constant_tile_is_nearly_free():
    symbols = np.full((3, 64, 64), 77, dtype=np.uint8)
    assert 8 * sum(len(s) for s in encode_tile(symbols, 8)) < 0.4 * symbols.size


def test_chunk_plan():
    from tinycodec.entropy import _chunks

    chunks, reached = _chunks(384, 16)  # 16, 32, 64, 128, then 144 of 256: the next pass starts at 256
    assert [c.stop - c.start for c in chunks] == [16, 32, 64, 128, 144] and reached == 256
    chunks, reached = _chunks(240, 16)  # ends on a full chunk: the next would be twice as long
    assert [c.stop - c.start for c in chunks] == [16, 32, 64, 128] and reached == 256
    assert _chunks(0, 64) == ([], 64)
    assert _chunks(10000, 4096)[0][-1] == slice(8192, 10000)  # never longer than MAX_CHUNK


def test_coder_4_codes_a_tile_as_one_segment_and_nothing_as_zeros():
    symbols = smooth_symbols(48, 64) >> 2  # 6 planes
    (segment,) = encode_tile(symbols, 6, 4)
    assert np.array_equal(decode_tile([segment], 6, symbols.shape, None, 4), symbols)
    assert not decode_tile([], 6, symbols.shape, None, 4).any()
    with pytest.raises(ValueError, match="segments for one coder-4 tile"):
        decode_tile([segment, segment], 6, symbols.shape, None, 4)


@pytest.mark.parametrize("planes", [1, 2, 3, 5, 8])
def test_coder_4_is_within_a_few_percent_of_coder_3_on_smooth_data(planes):
    """Whole symbols with sliced tables near the ends of the range: few planes cost no more than bit-planes."""
    symbols = smooth_symbols(96, 128, seed=3) >> (8 - planes)
    b3 = sum(map(len, encode_tile(symbols, planes, 3)))
    b4 = sum(map(len, encode_tile(symbols, planes, 4)))
    assert b4 < 1.06 * b3


def test_coder_4_stores_noise_raw_and_checks_raw_segments():
    symbols = np.random.default_rng(3).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    (segment,) = encode_tile(symbols, 8, 4)
    assert len(segment) == coder4.raw_length(symbols.shape, 8) == 3 * 64 * 64
    assert np.array_equal(decode_tile([segment], 8, symbols.shape, None, 4), symbols)
    small = np.random.default_rng(4).integers(0, 8, (1, 3, 3), dtype=np.uint8)  # 27 bits: 5 of padding
    (raw,) = encode_tile(small, 3, 4)
    assert len(raw) == 4 and np.array_equal(decode_tile([raw], 3, small.shape, None, 4), small)
    with pytest.raises(TinyCodecError, match="padding"):
        decode_tile([raw[:3] + bytes([raw[3] | 1])], 3, small.shape, None, 4)
    with pytest.raises(TinyCodecError, match="longer"):
        decode_tile([raw + bytes(4)], 3, small.shape, None, 4)


def test_coder_4_refuses_streams_it_did_not_write():
    with pytest.raises(TinyCodecError, match="corrupt .tcz payload"):
        decode_tile([b"\xff" * 8], 8, (1, 1, 1), None, 4)  # not a stream any encoder wrote


@pytest.mark.parametrize("segment, planes", [(bytes(4), 8), (bytes(8), 1), (b"\xff" * 4, 5)])
def test_coder_4_refuses_a_segment_that_runs_past_its_data(segment, planes):
    # A few bytes declared for a whole tile: the information budget stops it after a pass, not at the end.
    with pytest.raises(TinyCodecError, match="ran past its data"):
        decode_tile([segment], planes, (3, 256, 256), None, 4)
