"""The shallow family: integer hyperprior, two-segment bitstream, codec, efforts, guards."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import tinycodec
from tinycodec import container_v2, zoo
from tinycodec.errors import TinyCodecError
from tinycodec.laplace import LATENT_LIMIT, LOG_SCALE_STEP, MEAN_UNITS, SCALE_BINS
from tinycodec.shallow import bitstream, codec, fixedpoint, layout, model, synthesis
from tinycodec.shallow.weights import MODEL, load_decoder

from .conftest import photo_like


@pytest.fixture(scope="module")
def dec():
    return load_decoder(zoo.current_entry(MODEL))


@pytest.mark.parametrize("name", sorted(layout.ARCHITECTURES))
def test_decoder_stays_within_the_budget_of_2000_mac_per_pixel(name):
    macs = model.decoder_macs_per_pixel(layout.ARCHITECTURES[name])
    assert macs["total"] <= 2000
    assert macs["total"] == pytest.approx(sum(v for k, v in macs.items() if k != "total"))


def test_integer_hyper_synthesis_follows_its_float_twin(dec):
    """The integer path equals the float network up to its rounding: means within the 1/8 rounding plus the
    weights' 10-bit quantisation (a fraction of a step nearly everywhere), scale bins within one bin."""
    kz = np.random.default_rng(0).integers(-6, 7, size=(dec.arch.hyper_channels, 3, 5))
    for q in (0, 50, 100):
        mean8, scale = fixedpoint.entropy_parameters(dec.hyper, kz, q)
        with torch.no_grad():
            fm, fl = codec.float_networks(dec)[1](torch.from_numpy(kz).float()[None])
        ls = torch.log(torch.from_numpy(dec.step(q)))[:, None, None]
        fm8 = (fm[0] * torch.exp(-ls) * MEAN_UNITS).numpy()
        fbin = ((fl[0] - ls - np.log(0.04)) / LOG_SCALE_STEP).numpy()
        inside = np.abs(fm8) < LATENT_LIMIT * MEAN_UNITS
        err = np.abs(mean8 - fm8)[inside]
        assert np.percentile(err, 99) <= 1.0 and err.max() <= 3
        assert np.abs(scale - np.clip(np.round(fbin), 0, SCALE_BINS - 1)).max() <= 1


def test_integer_hyper_synthesis_is_exact_against_an_int64_reference(dec):
    """float64 transposed convolutions on integers give exactly what int64 arithmetic gives."""
    t = dec.tensors
    kz = np.random.default_rng(1).integers(-LATENT_LIMIT, LATENT_LIMIT + 1, size=(dec.arch.hyper_channels, 2, 3))

    def tconv_int(x, w, b):  # stride 2, kernel 4, padding 1, in int64 by scattering
        cin, h, wd = x.shape
        out = np.zeros((w.shape[1], 2 * h + 2, 2 * wd + 2), dtype=np.int64)
        for i in range(h):
            for j in range(wd):
                out[:, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4] += np.einsum("c,cokl->okl", x[:, i, j], w.astype(np.int64))
        return out[:, 1:-1, 1:-1] + b[:, None, None]

    s1 = int(t["hyper.up1.exponent"][0])
    acc = tconv_int(kz, t["hyper.up1.weight"], t["hyper.up1.bias"])
    shift = s1 - fixedpoint.ACT_BITS
    hidden = np.minimum(np.maximum(acc, 0) >> shift if shift >= 0 else np.maximum(acc, 0) << -shift,
                        fixedpoint.ACT_LIMIT)
    out = tconv_int(hidden, t["hyper.up2.weight"], t["hyper.up2.bias"])
    m = dec.arch.latent_channels
    mean = (out[:m] * t["quality.inv_step"][40][:, None, None] + (1 << (fixedpoint.MEAN_BITS - 1))) >> fixedpoint.MEAN_BITS
    mean8, _ = fixedpoint.entropy_parameters(dec.hyper, kz, 40)
    assert np.array_equal(np.clip(mean, -LATENT_LIMIT * MEAN_UNITS, LATENT_LIMIT * MEAN_UNITS), mean8)


def test_weights_that_could_overflow_the_exact_range_are_refused(dec):
    bad = dict(dec.tensors)
    bad["hyper.up2.weight"] = bad["hyper.up2.weight"].astype(np.int64) * 4
    with pytest.raises(ValueError, match="bit range"):
        fixedpoint.check_hyper(bad, dec.arch)
    bad = dict(dec.tensors)
    bad["quality.z_scale_bin"] = bad["quality.z_scale_bin"] + SCALE_BINS
    with pytest.raises(ValueError, match="z scale"):
        fixedpoint.check_hyper(bad, dec.arch)


def test_bitstream_round_trip_of_random_latents(dec):
    rng = np.random.default_rng(2)
    kz = rng.integers(-3, 4, size=(dec.arch.hyper_channels, 1, 2)).astype(np.int16)
    k = rng.integers(-20, 21, size=(dec.arch.latent_channels, 4, 8)).astype(np.int16)
    segments = bitstream.encode_latents(kz, k, 30, dec.hyper, dec.coder)
    kz2, k2, whole = bitstream.decode_latents(segments, kz.shape, k.shape, 30, dec.hyper, dec.coder)
    assert whole and np.array_equal(kz2, kz) and np.array_equal(k2, k)


def test_round_trip_is_deterministic_and_sized(tmp_path):
    img = photo_like(70, 130)
    a = tinycodec.encode(img, quality=50)
    assert a == tinycodec.encode(img, quality=50)
    assert container_v2.read_header(a)[0].family == codec.FAMILY
    out, info = tinycodec.decode_with_info(a)
    assert out.size == (130, 70) and info.family == "shallow" and info.quality == 50 and info.complete
    assert np.array_equal(np.asarray(out), np.asarray(tinycodec.decode(a)))


def test_grey_images_decode_grey_and_alpha_is_refused():
    grey = photo_like(40, 60)[..., 0]
    assert tinycodec.decode(tinycodec.encode(grey, quality=50)).mode == "L"
    with pytest.raises(TinyCodecError, match="alpha"):
        tinycodec.encode(np.dstack([photo_like(40, 60), np.full((40, 60), 9, np.uint8)]), quality=50)


def test_banded_synthesis_equals_whole_image_synthesis(dec, monkeypatch):
    rng = np.random.default_rng(3)
    k = rng.integers(-4, 5, size=(dec.arch.latent_channels, 40, 3)).astype(np.int16)
    s = dec.arch.latent_stride
    banded = synthesis.synthesise(k, dec.synthesis, 60, 40 * s, 3 * s)
    monkeypatch.setattr(synthesis, "BAND_LATENT_ROWS", 1000)
    whole = synthesis.synthesise(k, dec.synthesis, 60, 40 * s, 3 * s)
    assert np.array_equal(banded, whole)


def test_numpy_synthesis_matches_the_pytorch_network(dec):
    rng = np.random.default_rng(4)
    k = rng.integers(-6, 7, size=(dec.arch.latent_channels, 5, 7)).astype(np.int16)
    s = dec.arch.latent_stride
    ours = synthesis.synthesise(k, dec.synthesis, 30, 5 * s, 7 * s).astype(int)
    with torch.no_grad():
        y = torch.from_numpy(k.astype(np.float32) * dec.step(30)[:, None, None])[None]
        ref = (codec.float_networks(dec)[0](y)[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(ours - ref.astype(int)).max() <= 1


def test_decoding_does_not_import_pytorch(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "a.tcz"
    path.write_bytes(tinycodec.encode(photo_like(40, 72), quality=50))
    code = ("import sys; from tinycodec.shallow import decode; im = decode(open(sys.argv[1], 'rb').read()); "
            "assert im.size == (72, 40); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_a_file_cut_before_its_latents_decodes_to_a_preview():
    img = photo_like(64, 96)
    data = tinycodec.encode(img, quality=70)
    header, table, pos = container_v2.read_header(data)
    cut = data[: pos + table[0][1] + 8]
    with pytest.raises(TinyCodecError, match="truncated"):
        tinycodec.decode(cut)
    out, info = tinycodec.decode_with_info(cut, partial=True)
    assert out.size == (96, 64) and not info.complete and info.decoded_part == "1 of 2 latent segments"
    with pytest.raises(TinyCodecError, match="hyper-latents"):
        tinycodec.decode(data[: pos + 4], partial=True)


def test_refine_keeps_the_cheaper_file_and_is_deterministic():
    img = photo_like(64, 64)
    lam = model.quality_lambda(60.0)

    def cost(data):
        out = np.asarray(tinycodec.decode(data)).astype(np.float64)
        return 8 * len(data) / img[..., 0].size + lam * np.mean((out - img) ** 2) / 255.0**2

    fast = tinycodec.encode(img, quality=60)
    refined = tinycodec.encode(img, quality=60, effort="refine", refine=8)
    assert refined == tinycodec.encode(img, quality=60, effort="refine", refine=8)
    assert cost(refined) <= cost(fast) + 1e-12


def test_overfit_is_refused_with_the_family_named():
    with pytest.raises(TinyCodecError, match="shallow family"):
        tinycodec.encode(photo_like(16, 16), quality=50, effort="overfit")


@pytest.mark.parametrize("where", ["hyper", "latent"])
def test_damaged_segments_are_reported_not_crashed_on(where):
    data = bytearray(tinycodec.encode(photo_like(64, 64), quality=50))
    header, table, pos = container_v2.read_header(bytes(data))
    start = pos if where == "hyper" else pos + table[0][1]
    n = table[0 if where == "hyper" else 1][1]
    for i in range(start, start + n):
        data[i] ^= 0x5A
    with pytest.raises(TinyCodecError, match="checksum"):
        tinycodec.decode(bytes(data))


def test_quality_knob_is_monotone_in_rate():
    img = photo_like(96, 128)
    sizes = [len(tinycodec.encode(img, quality=q)) for q in (0, 25, 50, 75, 100)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_payload_floor_refuses_a_tiny_file_declaring_a_huge_image():
    data = bytearray(tinycodec.encode(photo_like(16, 16), quality=0))
    header, table, pos = container_v2.read_header(bytes(data))
    elements = container_v2.segment_elements(codec.FAMILY, 13377, 13377, header.model)
    assert container_v2.min_segment_bytes(elements[1]) > 1000
    hdr = container_v2.HeaderV2(codec.FAMILY, 13377, 13377, 3, 0, header.model, header.weights_id)
    with pytest.raises(ValueError, match="segment of"):
        container_v2.pack(hdr, [data[pos : pos + table[0][1]], data[pos + table[0][1] :]])


GOLDEN_BITSTREAM = "7317ac9fb32e61a6"  # shallow-v2 weights; retrained weights give a new hash


def test_bitstream_is_stable_for_the_installed_weights():
    """The same image and quality give the same bytes on every machine (entropy parameters are integers).

    Tied to the installed shallow weights: retraining is a new weights version and a new hash here."""
    img = photo_like(48, 80)
    assert hashlib.sha256(tinycodec.encode(img, quality=40)).hexdigest()[:16] == GOLDEN_BITSTREAM


def test_windowed_analysis_matches_the_whole_image(monkeypatch):
    from tinycodec.shallow.codec import load_encoder
    from tinycodec.shallow.weights import encoder_model

    arch = load_decoder(zoo.current_entry(MODEL)).arch
    encoder = load_encoder(zoo.current_entry(encoder_model(MODEL)), arch)
    x = torch.from_numpy(photo_like(192, 320).transpose(2, 0, 1).astype(np.float32) / 255)[None]
    whole = codec.analyse(encoder, x, arch)
    monkeypatch.setattr(codec, "ANALYSIS_WINDOW", 64)
    windowed = codec.analyse(encoder, x, arch)
    assert torch.allclose(whole, windowed, atol=1e-4)


@pytest.mark.parametrize("name", sorted(layout.ARCHITECTURES))
def test_every_architecture_runs_the_same_in_numpy_and_pytorch(name, monkeypatch):
    """Untrained networks of each architecture: the integer hyper-synthesis follows its float twin, the numpy
    synthesis follows PyTorch's, and banded synthesis equals the whole."""
    from tinycodec.laplace import table_constants

    arch = layout.ARCHITECTURES[name]
    torch.manual_seed(0)
    decoder = model.ShallowDecoder(arch)
    tensors = {f"synthesis.{k}": v.detach().numpy() for k, v in decoder.synthesis.state_dict().items()}
    tensors.update(fixedpoint.quantise_hyper(decoder.hyper, decoder.steps))
    tensors.update(table_constants())
    fixedpoint.check_hyper(tensors, arch)
    hyper, synth = fixedpoint.prepare(tensors), synthesis.prepare(tensors)
    kz = np.random.default_rng(5).integers(-4, 5, size=(arch.hyper_channels, 2, 3))
    mean8, _ = fixedpoint.entropy_parameters(hyper, kz, 70)
    with torch.no_grad():
        fm, _ = fixedpoint.dequantised_hyper(tensors, arch)(torch.from_numpy(kz).float()[None])
    fm8 = (fm[0] / torch.from_numpy(tensors["quality.step"][70])[:, None, None] * MEAN_UNITS).numpy()
    assert mean8.shape == (arch.latent_channels, 8, 12) and np.abs(mean8 - fm8).max() <= 1.5
    k = np.random.default_rng(6).integers(-3, 4, size=(arch.latent_channels, 20, 3)).astype(np.int16)
    s = arch.latent_stride
    ours = synthesis.synthesise(k, synth, 70, 20 * s, 3 * s)
    with torch.no_grad():
        y = torch.from_numpy(k.astype(np.float32) * tensors["quality.step"][70][:, None, None])[None]
        ref = (decoder.synthesis(y)[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    monkeypatch.setattr(synthesis, "BAND_LATENT_ROWS", 7)
    assert np.array_equal(synthesis.synthesise(k, synth, 70, 20 * s, 3 * s), ours)
