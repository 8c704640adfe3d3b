"""The fuzzing harness (tools/fuzz_decoder.py) as part of the suite: a short seeded run,
every reproducer the campaigns found, and a bit-flip sweep over a whole file."""

import json
from pathlib import Path

import numpy as np
import pytest

from tinycodec import TinyCodecError, container, decode, decode_with_info, entropy

from .conftest import load_tool

REGRESSIONS = Path(__file__).resolve().parent / "fuzz_regressions"


@pytest.fixture(scope="module")
def fuzz():
    return load_tool("fuzz_decoder")


def test_short_seeded_campaign_finds_nothing(fuzz, tmp_path):
    """A prefix of seed 7's input sequence (about 12 s here): no crash, no hang, no memory blow-up."""
    result = fuzz.run_campaign(seed=7, max_inputs=2500, max_seconds=12, corpus="small", out_dir=tmp_path)
    findings = {**result.crashes, **result.hangs, **result.memory}
    assert result.clean, "\n".join(f"{f.kind} {f.signature}: {f.message} -> {tmp_path / f.example}"
                                   for f in findings.values())
    assert result.inputs >= 500
    assert set(result.targets) == {"decode", "container", "entropy", "bomb"}
    assert result.outcomes["decoded"] > 0 and result.outcomes["rejected"] > 0  # it gets past the checksums


def test_large_declared_sizes_with_tiny_payloads_are_refused_fast(fuzz):
    """The bomb target alone: files declaring up to the default pixel cap with segments of a few
    bytes, decoded with the default limits. Each is refused (payload floor, or a range decoder
    that runs past its data) within a fraction of a second, with no memory blow-up."""
    fuzzer = fuzz.Fuzzer(11, corpus="small", out_dir=None, log=lambda line: None)
    for _ in range(150):
        data, partial = fuzzer.make_bomb()
        fuzzer.execute("bomb", lambda: decode_with_info(data, partial=partial), data)
    result = fuzzer.result
    assert result.clean and result.outcomes["rejected"] == 150
    assert result.slowest_s < 1.0


@pytest.mark.parametrize("path", sorted(REGRESSIONS.iterdir()), ids=lambda p: p.name)
def test_fuzz_reproducers_raise_only_the_documented_error(path):
    """Every input a campaign ever flagged, replayed through the layer it crashed."""
    if path.suffix == ".json":  # an entropy-layer input: segments, planes, shape (and coder, since coder 2)
        case = json.loads(path.read_text())
        segments = [bytes.fromhex(s) for s in case["segments"]]
        for coder in [case["coder"]] if "coder" in case else sorted(entropy.CODERS):
            given = segments[:1] if coder in container.WHOLE_SYMBOL_CODERS else segments  # one segment per tile
            try:
                entropy.decode_tile(given, case["planes"], tuple(case["shape"]), None, coder)
            except TinyCodecError:
                pass
    else:
        for partial in (False, True):
            try:
                decode(path.read_bytes(), partial=partial)
            except TinyCodecError:
                pass


def test_regression_invalid_range_coder_stream_is_a_tinycodec_error():
    """Found by the first campaign: constriction's AssertionError escaped entropy.decode_tile
    (tinycodec.decode hid it behind a catch-all that also hid every other bug)."""
    with pytest.raises(TinyCodecError, match="corrupt .tcz payload"):
        entropy.decode_tile([b"\xff" * 8], 1, (1, 1, 1))


def test_regression_segment_of_partial_words():
    """Found by the first campaign: a segment of 5 bytes raised ValueError from the entropy layer.
    The container now refuses such a table before any payload is sliced."""
    with pytest.raises(TinyCodecError, match="multiple of 4"):
        entropy.decode_tile([b"\x00" * 5], 1, (1, 4, 4))
    tcz = _small_file()
    header, table, header_len = container.read_header(tcz)
    groups = [[b"\x00" * 5] for _ in table]
    with pytest.raises(TinyCodecError, match="32-bit words"):
        container.unpack(container.pack(header, groups))


def test_entropy_layer_argument_errors_stay_value_errors():
    with pytest.raises(ValueError):
        entropy.decode_tile([b"\0" * 4] * 3, 2, (3, 4, 4))
    with pytest.raises(ValueError):
        entropy.decode_tile([], 1, (3, 0, 4))


def _small_file() -> bytes:
    import tinycodec

    return tinycodec.encode(np.full((8, 8, 3), 100, np.uint8), scale=16, planes=2)


def test_every_bit_flip_of_a_whole_file_is_detected(fuzz):
    """RGBA, scale 16, 5 planes, two tiles: all 8 x 786 single-bit flips, each decoded normally and
    progressively. None decodes: a flipped bit is never turned into a silently different image."""
    data = fuzz.sweep_file()
    for partial in (False, True):
        r = fuzz.bit_flip_sweep(data, partial=partial)
        assert (r.flips, r.detected, r.identical, r.silent) == (8 * len(data), 8 * len(data), 0, 0)


def test_flips_in_a_group_that_did_not_arrive_whole_change_nothing(fuzz):
    """Progressive decoding of a cut file ignores its incomplete last group, flipped or not;
    every other flip is still detected."""
    data = fuzz.sweep_file()
    complete = len(data) - sum(len(s) for s in container.unpack(data).groups[-1])
    cut = data[: complete + 3]  # 3 bytes of the last group arrived
    r = fuzz.bit_flip_sweep(cut, partial=True)
    assert (r.silent, r.identical, r.detected) == (0, 8 * 3, r.flips - 8 * 3)
    with pytest.warns(Warning):  # and it says the alpha is missing
        assert decode_with_info(cut, partial=True)[1].planes_decoded == 5
