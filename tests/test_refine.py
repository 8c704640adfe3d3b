"""Latent refinement: better files for the same decoder, never a different format."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import tinycodec
from tinycodec import quantize, refine, tiling
from tinycodec.cli import tcenc
from tinycodec.container import read_header
from tinycodec.models import SCALE_DEPTHS
from tinycodec.zoo import current_entry, model_name

from .conftest import photo_like, psnr


@pytest.fixture(scope="module")
def textured() -> np.ndarray:
    """Smooth regions, an edge and fine texture: something the one-shot encoder gets wrong."""
    rgb = photo_like(64, 80, seed=3).astype(np.int16)
    rgb += (np.random.default_rng(1).integers(-12, 13, rgb.shape[:2]))[:, :, None]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _latent(rgb, scale):
    entry = current_entry(model_name(scale))
    latent = tiling.encode_latent(entry, scale, SCALE_DEPTHS[scale], rgb, backend="torch")
    return entry, latent, *quantize.latent_range(latent)


def _decoded(data):
    return np.asarray(tinycodec.decode(data))


def _decoded_latent(entry, scale, latent, lo, hi, shape, planes=8):
    """What a file carrying this latent decodes to (quantised with the product's quantiser), cropped."""
    symbols = quantize.quantize(latent, lo, hi, planes)
    out = tinycodec.runtime.run_decoder(entry, scale, quantize.dequantize(symbols, lo, hi, planes), backend="torch")
    return out[: shape[0], : shape[1]]


@pytest.mark.parametrize("scale", [4, 16])
def test_refining_for_distortion_alone_lifts_psnr(textured, scale):
    entry, latent, lo, hi = _latent(textured, scale)
    refined = refine.refine_latent(entry, scale, textured, latent, lo, hi, 8, 20, rate_weight=0.0)
    before = psnr(textured, _decoded_latent(entry, scale, latent, lo, hi, textured.shape))
    after = psnr(textured, _decoded_latent(entry, scale, refined, lo, hi, textured.shape))
    assert after > before + 0.2, (before, after)


def test_refined_latent_lies_on_codes_inside_the_range(textured):
    entry, latent, lo, hi = _latent(textured, 4)
    refined = refine.refine_latent(entry, 4, textured, latent, lo, hi, 6, 5)
    codes = (refined - lo[:, None, None]) / (hi - lo)[:, None, None] * quantize.LEVELS
    assert np.abs(codes - np.rint(codes)).max() < 1e-3  # quantize() gives exactly the refined symbols
    assert codes.min() > -1e-3 and codes.max() < quantize.LEVELS + 1e-3
    assert refined.shape == latent.shape and refined.dtype == np.float32


def test_zero_steps_changes_nothing(textured):
    assert tinycodec.encode(textured, scale=16, refine=0) == tinycodec.encode(textured, scale=16)
    entry, latent, lo, hi = _latent(textured, 16)
    assert refine.refine_latent(entry, 16, textured, latent, lo, hi, 8, 0) is latent


def test_default_objective_at_scale_4_gives_a_better_file(textured):
    """The product's own setting gives a file that beats the plain one on both axes: PSNR up by 0.2 dB at
    no more than 3% more bits, or at least 10% fewer bits at no lower PSNR (which of the two depends on how
    good the one-shot encoder already is on the image; on photos both rise: see the model card)."""
    plain = tinycodec.encode(textured, scale=4)
    refined = tinycodec.encode(textured, scale=4, refine=refine.DEFAULT_STEPS)
    assert read_header(refined)[0].weights_id == read_header(plain)[0].weights_id
    gain = psnr(textured, _decoded(refined)) - psnr(textured, _decoded(plain))
    size = len(refined) / len(plain)
    assert (gain > 0.2 and size < 1.03) or (gain > -0.02 and size < 0.9), (gain, size)


def test_windows_cover_the_latent_and_still_help(textured):
    """Windows far smaller than the image (Gauss-Seidel over 20 of them) refine every part of it."""
    entry, latent, lo, hi = _latent(textured, 4)
    whole = refine.refine_latent(entry, 4, textured, latent, lo, hi, 8, 10, rate_weight=0.0)
    windowed = refine.refine_latent(entry, 4, textured, latent, lo, hi, 8, 10, rate_weight=0.0, window=16)

    def error(lat):
        return (_decoded_latent(entry, 4, lat, lo, hi, textured.shape).astype(np.float64) - textured) ** 2

    base, win = error(latent), error(windowed)
    assert 10 * np.log10(base.mean() / win.mean()) > 0.5 * 10 * np.log10(base.mean() / error(whole).mean())
    # Every 16-pixel block of the image was improved or left alone, not only the first windows.
    blocks = lambda e: e.reshape(4, 16, 5, 16, 3).mean(axis=(1, 3, 4))  # noqa: E731
    assert (blocks(win) < blocks(base) * 1.05).all()


def test_refine_with_fewer_planes_and_other_encoder_backends(textured):
    """Refined files lie on or above the plain rate-quality curve (planes 1..P, joined by straight lines):
    PSNR given up only for bits saved, at no worse an exchange than dropping bit-planes gives. At the
    default effort: with 10 steps, a search still under way, the v9 TC-4 landed 0.05 dB under it here."""
    plain = [tinycodec.encode(textured, scale=4, planes=p) for p in range(1, 7)]
    all_sizes = [len(d) for d in plain]
    all_qualities = [psnr(textured, _decoded(d)) for d in plain]
    assert all_sizes == sorted(all_sizes)
    for planes in (3, 6):
        sizes, qualities = all_sizes[:planes], all_qualities[:planes]
        refined = tinycodec.encode(textured, scale=4, planes=planes, refine=refine.DEFAULT_STEPS, backend="onnx")
        assert _decoded(refined).shape == textured.shape
        assert len(refined) < 1.03 * sizes[-1]
        q_refined = psnr(textured, _decoded(refined))
        assert q_refined > np.interp(len(refined), sizes, qualities) - 0.05, (planes, len(refined), q_refined, sizes, qualities)


def test_bad_refine_values_are_refused(textured):
    for bad in (-1, refine.MAX_STEPS + 1):
        with pytest.raises(ValueError, match="refine"):
            tinycodec.encode(textured, refine=bad)


def test_cli_refine(tmp_path, textured):
    src = tmp_path / "in.png"
    Image.fromarray(textured).save(src)
    r = CliRunner().invoke(tcenc, [str(src), "-s", "4", "--refine", "8", "-o", str(tmp_path / "r.tcz")])
    assert r.exit_code == 0, r.output
    assert "refined (8 steps)" in r.output
    assert _decoded((tmp_path / "r.tcz").read_bytes()).shape == textured.shape
    r = CliRunner().invoke(tcenc, [str(src), "--refine", "-3", "-o", str(tmp_path / "x.tcz")])
    assert r.exit_code != 0 and not (tmp_path / "x.tcz").exists()


def test_pillow_save_takes_refine(tmp_path, textured):
    path = tmp_path / "p.tcz"
    Image.fromarray(textured).save(path, scale=4, refine=5)
    assert path.read_bytes() == tinycodec.encode(Image.fromarray(textured), scale=4, refine=5)
    assert path.read_bytes() != tinycodec.encode(textured, scale=4)
