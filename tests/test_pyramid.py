"""The pyramid family: fixed-point context model, integer tables, bitstream, container, codec, CLI."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinycodec
from tinycodec import zoo
from tinycodec.errors import TinyCodecError
from tinycodec import container_v2 as container
from tinycodec import laplace
from tinycodec.pyramid import bitstream, codec, fixedpoint, layout
from tinycodec.pyramid.weights import MODEL, load_decoder

from .conftest import photo_like, psnr


@pytest.fixture(scope="module")
def dec():
    return load_decoder(zoo.current_entry(MODEL))


def random_grids(height: int, width: int, seed: int, spread: float = 2.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(np.round(rng.laplace(0, spread, layout.grid_shape(g, height, width))), -127, 127).astype(np.int64)
            for g in layout.GRIDS]


# --- fixed point ---------------------------------------------------------------------------------------------

def _reference_evaluate(tensors, features):
    """The same arithmetic in exact Python integers (no floats at all)."""
    n = len([k for k in tensors if k.endswith(".weight")])
    h = [[int(v) for v in row] for row in features]
    for i in range(n):
        w, b = tensors[f"context.{i}.weight"].tolist(), tensors[f"context.{i}.bias"].tolist()
        acc = [[sum(wi * hi for wi, hi in zip(wr, row)) + bi for wr, bi in zip(w, b)] for row in h]
        if i == 0:
            h = [[min(max(a >> (fixedpoint.FIRST_BITS - fixedpoint.ACT_BITS), 0), fixedpoint.ACT_LIMIT) for a in r]
                 for r in acc]
        elif i < n - 1:
            h = [[min(max(a >> fixedpoint.WEIGHT_BITS, 0), fixedpoint.ACT_LIMIT) for a in r] for r in acc]
    shift = fixedpoint.WEIGHT_BITS + fixedpoint.ACT_BITS
    out = [[(a + (1 << (shift - 1))) >> shift for a in r] for r in acc]
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_fixed_point_context_is_exact_integer_arithmetic(dec, seed):
    rng = np.random.default_rng(seed)
    n = 40
    feats = np.zeros((n, layout.CONTEXT_FEATURES), dtype=np.int64)
    feats[:, :13] = rng.integers(-127, 128, (n, 13))
    feats[np.arange(n), 13 + rng.integers(0, 4, n)] = 1
    feats[:, -1] = rng.integers(0, 101, n)
    mean, scale = fixedpoint.evaluate(dec.context, feats)
    ref = _reference_evaluate(dec.context, feats.tolist())
    ref_mean = np.clip([r[0] for r in ref], -127 * 8, 127 * 8)
    ref_scale = np.clip([r[1] for r in ref], 0, 63)
    assert mean.tolist() == ref_mean.tolist()
    assert scale.tolist() == ref_scale.tolist()


def test_large_and_small_batches_compute_the_same_integers(dec, monkeypatch):
    """Large passes go through torch, small ones through numpy: both must give the same integers."""
    rng = np.random.default_rng(1)
    n = 2 * fixedpoint.TORCH_FROM
    feats = np.zeros((n, layout.CONTEXT_FEATURES), dtype=np.float32)
    feats[:, :13] = rng.integers(-127, 128, (n, 13))
    feats[np.arange(n), 13 + rng.integers(0, 4, n)] = 1
    feats[:, -1] = rng.integers(0, 101, n)
    big = fixedpoint.evaluate(dec.context, feats)
    monkeypatch.setattr(fixedpoint, "TORCH_FROM", 10**9)
    small = fixedpoint.evaluate(dec.context, feats)
    assert all((a == b).all() for a, b in zip(big, small))


def test_table_index_splits_mean_into_integer_and_eighths():
    mean = np.array([-9, -5, -4, -1, 0, 3, 4, 12])
    m, t = laplace.table_index(mean, np.zeros_like(mean))
    assert (m * 8 + t - 4 == mean).all()
    assert ((t >= 0) & (t < 8)).all()


# --- tables ----------------------------------------------------------------------------------------------------

def test_tables_are_integer_built_capped_and_golden(dec):
    tables = dec.coder.tables
    assert tables.shape == (laplace.N_TABLES, laplace.ALPHABET) and tables.dtype == np.int64
    assert (tables >= 1).all()
    peak = tables.max(axis=1)
    assert (peak * 2**laplace.MAX_PROBABILITY_LOG2_GAP <= (2**laplace.MAX_PROBABILITY_LOG2_GAP - 1)
            * tables.sum(axis=1)).all()
    # Symmetric around a mean on an integer: the frac bin 4 (offset 0) tables are palindromes.
    mid = tables.reshape(64, 8, -1)[:, 4]
    assert (mid == mid[:, ::-1]).all()
    assert hashlib.sha256(tables.tobytes()).hexdigest()[:16] == "79bdccc7d8df30ae"


def test_table_probabilities_match_the_laplace_they_stand_for():
    t = laplace.build_tables(**{k.split(".")[1]: v for k, v in laplace.table_constants().items()})
    p = t / t.sum(axis=1, keepdims=True)
    from math import exp
    b = laplace.SCALE_MIN * exp(30 * laplace.LOG_SCALE_STEP)  # scale bin 30, frac bin 4 (mean on 0)
    expect0 = 1 - exp(-0.5 / b)
    assert abs(p[30 * 8 + 4, laplace.RESIDUAL_LIMIT] - expect0) < 1e-6


# --- bitstream -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(64, 64), (128, 192), (70, 130)])
def test_bitstream_round_trip_is_exact(dec, size):
    h, w = layout.padded_size(*size)
    grids = random_grids(h, w, seed=h + w)
    segments = bitstream.encode_grids(grids, 37, dec.context, dec.coder)
    out = bitstream.decode_grids(segments, [g.shape for g in grids], 37, dec.context, dec.coder)
    assert all((a == b).all() for a, b in zip(grids, out))


def test_bitstream_golden_hash(dec):
    """Any change to contexts, fixed point, tables or coder order changes these bytes: a format change."""
    grids = random_grids(128, 128, seed=7, spread=1.5)
    segments = bitstream.encode_grids(grids, 60, dec.context, dec.coder)
    digest = hashlib.sha256(b"".join(segments)).hexdigest()[:16]
    assert digest == GOLDEN_BITSTREAM


def test_extreme_latents_round_trip(dec):
    grids = [np.full(layout.grid_shape(g, 64, 128), 127 if g.index % 2 else -127, dtype=np.int64)
             for g in layout.GRIDS]
    segments = bitstream.encode_grids(grids, 0, dec.context, dec.coder)
    out = bitstream.decode_grids(segments, [g.shape for g in grids], 0, dec.context, dec.coder)
    assert all((a == b).all() for a, b in zip(grids, out))


def test_segments_respect_the_payload_floor(dec):
    """All-zero latents at the lowest quality: the cheapest file there is still meets min_segment_bytes."""
    h, w = 1024, 1024
    grids = [np.zeros(layout.grid_shape(g, h, w), dtype=np.int64) for g in layout.GRIDS]
    for q in (0, 100):
        segments = bitstream.encode_grids(grids, q, dec.context, dec.coder)
        for seg, g in zip(segments, grids):
            assert len(seg) >= container.min_segment_bytes(g.size)


# --- container -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_file():
    return codec.encode(photo_like(48, 80), quality=50)


def test_container_refuses_damage_and_truncation(small_file):
    with pytest.raises(TinyCodecError, match="truncated"):
        tinycodec.decode(small_file[:-5])
    with pytest.raises(TinyCodecError, match="trailing"):
        tinycodec.decode(small_file + b"\0")
    flipped = bytearray(small_file)
    flipped[-3] ^= 0x10
    with pytest.raises(TinyCodecError, match="checksum"):
        tinycodec.decode(bytes(flipped))


def _rewrite_header(data: bytes, **fields) -> bytes:
    """A copy of a file with header fields replaced and the header CRC recomputed."""
    header_len = struct.unpack_from("<H", data, 10)[0]
    head = bytearray(data[:header_len])
    for offset, fmt, value in fields.values():
        struct.pack_into(fmt, head, offset, value)
    struct.pack_into("<I", head, header_len - 4, zlib.crc32(bytes(head[: header_len - 4])))
    return bytes(head) + data[header_len:]


def test_a_tiny_file_cannot_declare_a_huge_image(small_file):
    bomb = _rewrite_header(small_file, w=(12, "<I", 13377), h=(16, "<I", 13377))
    start = time.perf_counter()
    with pytest.raises(TinyCodecError, match="cannot code|decompression bomb"):
        tinycodec.decode(bomb)
    assert time.perf_counter() - start < 1.0


def test_model_name_outside_the_safe_set_is_refused(small_file):
    i = small_file.index(b"pyramid-v1")
    evil = bytearray(small_file)
    evil[i : i + 3] = b"\x1b[2"
    header_len = struct.unpack_from("<H", evil, 10)[0]
    struct.pack_into("<I", evil, header_len - 4, zlib.crc32(bytes(evil[: header_len - 4])))
    with pytest.raises(TinyCodecError, match="model name"):
        tinycodec.decode(bytes(evil))


def test_partial_file_decodes_the_coarse_grids(small_file):
    header_len = struct.unpack_from("<H", small_file, 10)[0]
    image, info = tinycodec.decode_with_info(small_file[: header_len + (len(small_file) - header_len) // 3],
                                             partial=True)
    assert info.family == "pyramid" and 0 < info.grids_decoded < info.grids and not info.complete
    assert image.size == (80, 48)


def test_unknown_family_and_version_are_refused(small_file):
    with pytest.raises(TinyCodecError, match="family 7"):
        tinycodec.decode(small_file[:9] + b"\x07" + small_file[10:])
    with pytest.raises(TinyCodecError, match="version 9"):
        tinycodec.decode(small_file[:8] + b"\x09" + small_file[9:])


# --- codec -----------------------------------------------------------------------------------------------------

def test_decode_equals_synthesis_of_the_coded_latents(dec):
    img = photo_like(70, 100, seed=3)
    x = codec._pad(img)
    grids = codec.quantise(codec.predict_latents(x, 40), dec, 40)
    data = codec.encode(img, quality=40)
    out = np.asarray(tinycodec.decode(data))
    assert (out == codec.reconstruct(grids, 40, 70, 100)).all()


def test_band_synthesis_has_no_seams(dec, monkeypatch):
    grids = random_grids(192, 128, seed=1, spread=3)
    whole = codec.synthesise(grids, dec, 50, 190, 128)
    monkeypatch.setattr(codec, "BAND_ROWS", 24)
    banded = codec.synthesise(grids, dec, 50, 190, 128)
    assert np.abs(whole.astype(int) - banded.astype(int)).max() <= 1


def test_grey_images_stay_grey_and_alpha_is_refused():
    grey = photo_like(40, 60)[:, :, 0]
    assert tinycodec.decode(tinycodec.encode(grey, quality=50, family="pyramid")).mode == "L"
    with pytest.raises(TinyCodecError, match="alpha"):
        tinycodec.encode(np.dstack([photo_like(40, 60), np.full((40, 60), 9, np.uint8)]), quality=50,
                         family="pyramid")


@pytest.mark.parametrize("quality", [-1, 101, 2.5, True])
def test_quality_out_of_range_is_an_error(quality):
    with pytest.raises(TinyCodecError, match="quality"):
        tinycodec.encode(photo_like(16, 16), quality=quality, family="pyramid")


def test_higher_quality_costs_more_bits_and_gives_higher_psnr():
    img = photo_like(96, 128, seed=5)
    sizes, psnrs = [], []
    for q in (5, 50, 95):
        data = tinycodec.encode(img, quality=q, family="pyramid")
        sizes.append(len(data))
        psnrs.append(psnr(img, np.asarray(tinycodec.decode(data))))
    assert sizes == sorted(sizes) and psnrs == sorted(psnrs)


def test_refinement_lowers_the_rate_distortion_cost():
    from tinycodec.pyramid.model import quality_lambda

    img = photo_like(64, 64, seed=11)

    def cost(data):
        mse = np.mean((np.asarray(tinycodec.decode(data)).astype(float) - img) ** 2) / 255.0**2
        return 8 * len(data) / img[..., 0].size + quality_lambda(50.0) * mse

    fast = tinycodec.encode(img, quality=50, family="pyramid")
    refined = tinycodec.encode(img, quality=50, family="pyramid", effort="refine", refine=40)
    assert cost(refined) < cost(fast)


# --- command line ----------------------------------------------------------------------------------------------

def test_cli_quality_round_trip_and_option_conflicts(tmp_path):
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(photo_like(40, 56)).save(src)
    r = subprocess.run(["tcenc", str(src), "-Q", "30", "--family", "pyramid", "-o", str(tmp_path / "a.tcz")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pyramid, quality 30" in r.stderr
    r = subprocess.run(["tcdec", str(tmp_path / "a.tcz"), "-o", str(tmp_path / "b.png")], capture_output=True,
                       text=True)
    assert r.returncode == 0 and Image.open(tmp_path / "b.png").size == (56, 40)
    r = subprocess.run(["tcenc", str(src), "-Q", "30", "-s", "4", "-o", str(tmp_path / "c.tcz")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--scale" in r.stderr


GOLDEN_BITSTREAM = "3726069f08f75a86"  # pyramid-v1 weights; a new context model is a new model id


def test_short_seeded_fuzz_campaign_finds_nothing(tmp_path):
    """tools/fuzz_v2.py, a prefix of seed 7: every mutant decodes or raises TinyCodecError, none hangs."""
    from .conftest import load_tool

    fuzz = load_tool("fuzz_v2")
    result = fuzz.run_campaign(seed=7, max_inputs=1500, max_seconds=20, out_dir=tmp_path)
    assert result.clean, [(f["kind"], f["target"], f.get("error")) for f in result.findings]
    assert result.inputs >= 300
    assert result.outcomes["decoded"] > 0 and result.outcomes["rejected"] > 0
    assert all(n > 0 for n in result.per_target.values())


def test_regression_invalid_range_coded_grid_is_a_tinycodec_error(dec):
    """Found by the first pyramid campaign: constriction's AssertionError escaped decode_grids."""
    shapes = [layout.grid_shape(g, 64, 64) for g in layout.GRIDS]
    with pytest.raises(TinyCodecError, match="corrupt"):
        bitstream.decode_grids([b"\xff" * 8] * len(shapes), shapes, 50, dec.context, dec.coder)


def test_overfit_file_carries_its_synthesis_and_decodes_with_it(dec):
    """A file with a weights segment decodes with the network it carries, not the shared one."""
    from tinycodec.container_v2 import HeaderV2, pack
    from tinycodec.pyramid.overfit import overfit

    img = photo_like(64, 64, seed=13)
    x = codec._pad(img)
    latents, weights, own = overfit(codec.predict_latents(x, 60), x, dec, 60, 8)
    grids = codec.quantise(latents, dec, 60)
    segments = bitstream.encode_grids(grids, 60, dec.context, dec.coder)
    header = HeaderV2(codec.FAMILY, 64, 64, 3, 60, "pyramid-v1", zoo.current_entry(MODEL).short_id, has_weights=True)
    data = pack(header, [weights, *segments])
    assert container.read_header(data)[0].has_weights
    decoded = np.asarray(tinycodec.decode(data))
    assert (decoded == codec.synthesise(grids, dec, 60, 64, 64, synthesis=own)).all()
    assert not (decoded == codec.synthesise(grids, dec, 60, 64, 64)).all()
    with pytest.raises(TinyCodecError, match="weights did not arrive"):
        tinycodec.decode(data[: len(data) - sum(map(len, segments)) - 4], partial=True)


def test_every_effort_is_at_least_as_good_as_fast():
    """Refine and overfit keep the candidate file with the lowest real rate-distortion cost, fast included."""
    from tinycodec.pyramid.model import quality_lambda

    img = photo_like(48, 48, seed=13)

    def cost(data):
        mse = np.mean((np.asarray(tinycodec.decode(data)).astype(float) - img) ** 2) / 255.0**2
        return 8 * len(data) / img[..., 0].size + quality_lambda(60.0) * mse

    fast = cost(tinycodec.encode(img, quality=60, family="pyramid"))
    assert cost(tinycodec.encode(img, quality=60, family="pyramid", effort="refine", refine=12)) <= fast
    assert cost(tinycodec.encode(img, quality=60, family="pyramid", effort="overfit", refine=12)) <= fast


def test_a_damaged_weights_segment_is_refused(dec):
    from tinycodec.pyramid.overfit import decode_weights, encode_weights

    segment, rebuilt = encode_weights(dec.network.synthesis, dec.network.synthesis)
    same = decode_weights(segment, dec.network.synthesis)
    assert all(torch_equal(a, b) for a, b in zip(same.state_dict().values(), rebuilt.state_dict().values()))
    for bad in (b"\0" * 8, segment[:-8] + b"\1" * 8, segment + b"\1\0\0\0", b"x\x9c" + bytes(range(200))):
        with pytest.raises(TinyCodecError, match="weights segment"):
            decode_weights(bad, dec.network.synthesis)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_batch_mode_codes_a_folder_with_the_pyramid_family(tmp_path):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(photo_like(40, 48, seed=i)).save(src / f"{i}.png")
    r = subprocess.run(["tcenc", str(src), "-Q", "50", "--family", "pyramid", "-o", str(tmp_path / "out") + "/", "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["tcdec", str(tmp_path / "out"), "-o", str(tmp_path / "dec") + "/", "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["0.png", "1.png"]


def test_windowed_encoder_matches_the_whole_image_closely(monkeypatch):
    """Large images are encoded in overlapping windows: no seams, within a fraction of a dB of one pass."""
    img = photo_like(256, 320, seed=4)
    whole = np.asarray(tinycodec.decode(tinycodec.encode(img, quality=60, family="pyramid")))
    monkeypatch.setattr(codec, "ENCODE_WINDOW", 128)
    monkeypatch.setattr(codec, "ENCODE_MARGIN", 64)
    windowed = np.asarray(tinycodec.decode(tinycodec.encode(img, quality=60, family="pyramid")))
    assert abs(psnr(img, whole) - psnr(img, windowed)) < 0.3
