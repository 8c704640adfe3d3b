"""The rate-distortion tools: Bjontegaard deltas, metrics, Pareto frontier and one quick CLI run."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tinycodec import TinyCodecError
from tinycodec.cli import main
from tinycodec.rd import (CODECS, _pchip_integral, bd_quality, bd_rate, ms_ssim_db, ms_ssim_rgb, pareto_front,
                          psnr, psnr_y, select_codecs, ssim_rgb)

from .conftest import photo_like

# A JPEG-like curve: bpp and PSNR-RGB of Kodak means.
RATES = [0.25, 0.45, 0.7, 1.0, 1.5, 2.3, 3.5]
PSNRS = [26.3, 29.1, 31.0, 32.9, 35.0, 38.0, 40.6]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_of_a_curve_against_itself_is_zero(method):
    assert bd_rate(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0, abs=1e-9)
    assert bd_quality(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_half_the_rate_at_equal_quality_is_minus_50_percent(method):
    half = [r / 2 for r in RATES]
    assert bd_rate(RATES, PSNRS, half, PSNRS, method) == pytest.approx(-50, abs=1e-6)
    assert bd_rate(half, PSNRS, RATES, PSNRS, method) == pytest.approx(100, abs=1e-6)
    assert bd_quality(RATES, PSNRS, half, PSNRS, method) > 1  # better quality at equal rate


def test_bd_is_nan_without_overlap_and_ignores_dominated_points():
    assert math.isnan(bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS]))
    assert math.isnan(bd_rate(RATES[:1], PSNRS[:1], RATES, PSNRS))
    # An extra point that a cheaper one beats changes nothing.
    assert bd_rate(RATES, PSNRS, RATES + [3.0], PSNRS + [30.0]) == pytest.approx(0, abs=1e-9)


def test_pchip_integral_matches_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.uniform(0.2, 2, 9))
    y = np.cumsum(rng.normal(0, 1, 9))  # not monotone: exercises the extremum and end-slope rules
    lo, hi = x[0] + 0.3, x[-1] - 0.7
    assert _pchip_integral(x, y, lo, hi) == pytest.approx(interpolate.PchipInterpolator(x, y).integrate(lo, hi))


def test_pareto_front_on_a_hand_made_example():
    rates = [1.0, 0.5, 2.0, 1.5, 3.0, 0.5, 2.5]
    quality = [30.0, 28.0, 33.0, 29.0, 32.0, 27.0, 34.0]
    # 3 (1.5, 29) is beaten by 0 (1.0, 30); 4 (3.0, 32) by 2; 5 ties 1 in rate with lower quality.
    assert pareto_front(rates, quality) == [1, 0, 2, 6]
    assert pareto_front([1.0, 2.0], [30.0, float("inf")]) == [0]


def test_metrics_of_identical_and_known_images():
    img = photo_like(192, 200)
    assert psnr(img, img) == math.inf and psnr_y(img, img) == math.inf
    assert ms_ssim_rgb(img, img) == pytest.approx(1, abs=1e-6)
    assert ssim_rgb(img, img) == pytest.approx(1, abs=1e-6)
    assert ms_ssim_db(1.0) == math.inf and ms_ssim_db(0.99) == pytest.approx(20)
    off = img.astype(np.int16)
    off[..., 0] += np.where(off[..., 0] < 255, 1, -1).astype(np.int16)  # red off by one everywhere
    off = off.astype(np.uint8)
    assert psnr(img, off) == pytest.approx(10 * math.log10(255**2 * 3))  # MSE 1/3 over R, G, B
    assert psnr_y(img, off) == pytest.approx(10 * math.log10(255**2 / (65.481 / 255) ** 2))
    assert 0.99 < ms_ssim_rgb(img, off) < 1


def test_ms_ssim_refuses_small_images():
    img = photo_like(160, 200)
    with pytest.raises(TinyCodecError, match="161"):
        ms_ssim_rgb(img, img)


def test_codec_selection():
    assert [c.key for c in select_codecs("tinycodec, JPEG")] == ["jpeg", "tinycodec"]
    with pytest.raises(TinyCodecError, match="unknown codec 'png'"):
        select_codecs("jpeg,png")


@pytest.mark.parametrize("key", [k for k in CODECS
                                 if k not in ("tinycodec", "shallow-refine", "pyramid-refine", "pyramid-overfit")])
def test_standard_codecs_round_trip(key):
    codec = CODECS[key]
    if codec.unavailable():
        pytest.skip(codec.unavailable())
    img = photo_like(40, 56)
    low, high = (codec.decode(codec.encode(img, s)) for s in (codec.quick_sweep[0], codec.quick_sweep[-1]))
    assert low.shape == img.shape and low.dtype == np.uint8
    assert psnr(img, high) > psnr(img, low)


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "tiny-set"
    data.mkdir()
    for i in range(2):
        Image.fromarray(photo_like(192, 208, seed=i)).save(data / f"img{i}.png")
    return data


def test_quick_cli_run_writes_every_output(folder, tmp_path):
    out = tmp_path / "results"
    # per-image optimisation: covered by tests/test_shallow.py and tests/test_pyramid.py
    slow = {"shallow-refine", "pyramid-refine", "pyramid-overfit"}
    available = [k for k, c in CODECS.items() if not c.unavailable() and k not in slow]
    r = CliRunner().invoke(main, ["rd", str(folder), "--out", str(out), "--quick", "--limit", "1",
                                  "--codecs", ",".join(available)])
    assert r.exit_code == 0, r.output
    for key in available:
        result = json.loads((out / f"rd_{key}.json").read_text())
        assert set(result) >= {"name", "description", "results"}
        assert set(result["results"]) == {"bpp", "psnr-rgb", "psnr-y", "ssim", "ms-ssim", "encode_ms", "decode_ms"}
        assert len({len(v) for v in result["results"].values()}) == 1
        assert result["results"]["bpp"] == sorted(result["results"]["bpp"])
    with open(out / "rd_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(CODECS[k].settings(quick=True)) for k in available)
    assert {row["image"] for row in rows} == {"img0.png"}
    for stem in ("rd_psnr", "rd_psnr_y", "rd_msssim"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "bd_table.md").read_text()
    assert "PCHIP" in table and "tiny-set (1 images)" in table
    assert "## Against JPEG" in table and "## tinycodec against each codec" in table
    assert "## tinycodec refined against each codec" in table  # both tinycodec curves get their frontier rows
    refined = json.loads((out / "rd_tinycodec-refined.json").read_text())
    assert "latent refinement" in refined["description"]


def test_cli_errors_are_one_line(folder, tmp_path):
    r = CliRunner().invoke(main, ["rd", str(folder), "--codecs", "jpeg,png", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0 and "unknown codec" in r.output
    Image.fromarray(photo_like(100, 100)).save(folder / "a-small.png")
    r = CliRunner().invoke(main, ["rd", str(folder), "--codecs", "jpeg", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "a-small.png is 100x100" in r.output


def test_default_output_is_a_new_folder_and_results_are_not_overwritten(folder, tmp_path, monkeypatch):
    """Issue 35: rd never writes into the current folder's docs/results unasked, nor over earlier results."""
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["rd", str(folder), "--codecs", "jpeg", "--quick", "--limit", "1"])
    assert r.exit_code == 0, r.output
    made = [p for p in tmp_path.iterdir() if p.name.startswith("rd-tiny-set-")]
    assert len(made) == 1 and (made[0] / "rd_jpeg.json").exists() and not (tmp_path / "docs").exists()
    assert "not comparable" in r.output
    r = CliRunner().invoke(main, ["rd", str(folder), "--codecs", "jpeg", "--quick", "--limit", "1", "--out", str(made[0])])
    assert r.exit_code == 1 and "-f" in r.output
    r = CliRunner().invoke(main, ["rd", str(folder), "--codecs", "jpeg", "--quick", "--limit", "1", "--out", str(made[0]),
                                  "-f"])
    assert r.exit_code == 0, r.output


def test_default_codecs_leave_out_what_cannot_run(monkeypatch):
    from tinycodec import rd

    monkeypatch.setattr(rd.JxlCodec, "unavailable", lambda self: "JPEG XL needs imagecodecs")
    skipped: list[str] = []
    keys = [c.key for c in rd.select_codecs(None, skipped)]
    assert "jxl" not in keys and "jpeg" in keys and any("JPEG XL needs imagecodecs" in s for s in skipped)
    with pytest.raises(TinyCodecError, match="imagecodecs"):
        rd.select_codecs("jpeg,jxl")
