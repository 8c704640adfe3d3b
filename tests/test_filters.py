"""Enhancement filters: architectures, folding, tiling, names, and the shipped weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tinycodec
from tinycodec import TinyCodecError
from tinycodec.enhance import filter_names, parse_filter
from tinycodec.filters import FILTERS, TinyPSSR, UNet, local_mean, remove_local_mean, reparameterise, run_filter
from tinycodec.runtime import run_filter_tiled

from .conftest import photo_like, psnr


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_tinypssr_parameter_counts():
    assert _count(TinyPSSR(2)) == 1356  # the seed's table
    assert _count(FILTERS["tinypssr-x4"].build()) <= 2716  # no more than the seed's x4 model


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("upscale", [1, 2])
def test_reparameterised_unet_computes_the_same(upscale):
    model = _randomised(UNet(8, upscale))
    x = torch.rand(2, 3, 24, 32)
    with torch.no_grad():
        before = model(x)
        after = reparameterise(model)(x)
    assert after.shape == (2, 3, 24 * upscale, 32 * upscale)
    assert torch.allclose(before, after, atol=1e-5)
    assert not any(name.endswith(("conv1.weight", "conv3.weight")) for name, _ in model.named_parameters())


@pytest.mark.parametrize("shape", [(1, 3, 40, 57), (2, 1, 7, 5)])  # one smaller than the window
def test_local_mean_is_a_replicate_padded_box_average(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3)) - 0.5
    r, k = 15, 31
    pooled = F.avg_pool2d(F.avg_pool2d(F.pad(x, (r,) * 4, mode="replicate"), (1, k), 1), (k, 1), 1)
    assert torch.allclose(local_mean(x, r), pooled, atol=1e-6)
    assert torch.allclose(local_mean(x, 1)[0, 0, 1:-1, 1:-1], F.avg_pool2d(x, 3, 1)[0, 0], atol=1e-6)


def test_local_mean_removal_in_phase_space_is_a_30_pixel_box_of_the_image():
    # The UNets remove their correction's local mean before the pixel shuffle (4x cheaper): over the four
    # phases of a colour and 15x15 positions, i.e. a 30x30 box of output pixels on the 2-pixel grid.
    y = torch.rand(1, 3, 80, 96, dtype=torch.float64)
    out = F.pixel_shuffle(remove_local_mean(F.pixel_unshuffle(y, 2), 2), 2)
    box = F.avg_pool2d(y, 30, stride=2)  # windows starting at output rows/cols 0, 2, 4, ...
    expected = y[:, :, 14:-14, 14:-14] - F.interpolate(box, scale_factor=2.0, mode="nearest")
    assert torch.allclose(out[:, :, 14:-14, 14:-14], expected, atol=1e-12)


@pytest.mark.parametrize("name", ["tinypssr-x2", "unet", "srunet"])
def test_tiled_filtering_matches_whole_image(name):
    spec = FILTERS[name]
    model = reparameterise(_randomised(spec.build()))
    # Large enough against the UNets' 64-pixel halo that tiles see only part of the image.
    h, w = (70, 90) if spec.per_channel else (250, 330)
    rgb = photo_like(h, w, seed=3)
    whole = run_filter_tiled(model, spec, rgb, tile=4096)
    tiled = run_filter_tiled(model, spec, rgb, tile=32 if spec.per_channel else 64)
    assert whole.shape == (h * spec.upscale, w * spec.upscale, 3)
    # Halo = receptive field for TinyPSSR (exact); the UNets' halo leaves rounding-level differences.
    assert np.abs(whole.astype(int) - tiled).max() <= (0 if spec.per_channel else 2)


def test_run_filter_pads_odd_sizes():
    spec = FILTERS["srunet"]
    model = _randomised(spec.build())
    with torch.no_grad():
        y = run_filter(model, spec, torch.rand(1, 3, 13, 7))
    assert y.shape == (1, 3, 26, 14) and float(y.min()) >= 0 and float(y.max()) <= 1


def test_filter_names():
    assert parse_filter("none") is None
    assert parse_filter("unet").spec.name == "unet"
    assert parse_filter("TinyPSSR-x2").spec.upscale == 2
    assert "srunet-int8" in filter_names()
    with pytest.raises(TinyCodecError, match="unknown enhancement filter 'sharpen'"):
        parse_filter("sharpen")
    assert parse_filter("srunet-int8").precision == "int8" and parse_filter("srunet-int8").name == "srunet-int8"
    with pytest.raises(TinyCodecError, match="has no fp16 on cpu"):
        tinycodec.enhance(photo_like(8, 8), "srunet-fp16", backend="torch")


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_enhance_any_image_sizes_and_modes(name):
    r = FILTERS[name].upscale
    rgba = np.dstack([photo_like(21, 30, seed=1), np.full((21, 30), 200, np.uint8)])
    out = tinycodec.enhance(rgba, name)
    assert out.mode == "RGBA" and out.size == (30 * r, 21 * r)
    assert np.all(np.asarray(out)[..., 3] > 190)
    grey = tinycodec.enhance(photo_like(17, 9, seed=2)[..., 0], name)
    assert grey.mode == "L" and grey.size == (9 * r, 17 * r)


def test_tinypssr_beats_bicubic_on_a_photo_like_image():
    from PIL import Image

    hr = photo_like(96, 128, seed=5)
    lr = np.asarray(Image.fromarray(hr).resize((64, 48), Image.BICUBIC))
    bicubic = np.asarray(Image.fromarray(lr).resize((128, 96), Image.BICUBIC))
    sr = np.asarray(tinycodec.enhance(lr, "tinypssr-x2"))
    assert psnr(sr[2:-2, 2:-2], hr[2:-2, 2:-2]) > psnr(bicubic[2:-2, 2:-2], hr[2:-2, 2:-2])


def test_unet_improves_a_decoded_image():
    # Scale 64, where its gain is largest (Kodak: +0.14 dB). At scales 4 and 16 its Kodak gain is
    # only +0.05 / +0.06 dB (v6 codec), and on these synthetic images it ranged from -0.17 to +0.08 dB
    # there (v5 codec): that is eval_sr.py's to report, not a test's.
    img = photo_like(96, 128, seed=6)
    data = tinycodec.encode(img, scale=64)
    plain = np.asarray(tinycodec.decode(data))
    cleaned, info = tinycodec.decode_with_info(data, enhance="unet")
    assert info.enhance == "unet" and cleaned.size == (128, 96)
    assert psnr(np.asarray(cleaned), img) > psnr(plain, img)


@pytest.mark.parametrize("name", ["unet", "srunet"])
def test_no_stage_of_the_shipped_unets_is_dead(name):
    """Every ReLU of the shipped UNet/SRUNet passes a real share of a decoded image's pixels.

    The v2 UNet's last full-resolution stage had died (its first ReLU passed 0.5% of pixels here, 0.9%
    on a photograph): the correction had almost no capacity left, and fine-tunes collapsed it to
    exactly zero. Retrained weights that die again should not ship unnoticed.
    """
    from PIL import Image

    from tinycodec.networks import network

    spec = FILTERS[name]
    model = network(name).build()
    img = photo_like(96, 128, seed=6)
    if spec.upscale == 2:
        img = np.asarray(Image.fromarray(img).resize((64, 48), Image.BICUBIC))
    decoded = np.asarray(tinycodec.decode(tinycodec.encode(img, scale=16)))
    x = torch.from_numpy(decoded.transpose(2, 0, 1).copy())[None].float() / 255
    active: dict[str, float] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: active.__setitem__(n, float((o > 0).float().mean())))
             for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert len(active) == 10
    # v2 UNet: 0.005 at dec0.1; the first half-resolution UNet (not shipped): 0.07 at dec1.3, 16 of its 48
    # channels ever active on a photograph; shipped: UNet 0.15 to 0.53 per layer, SRUNet 0.18 to 0.41
    assert min(active.values()) > 0.1, active


def test_a_filter_is_skipped_on_levels_its_spec_excludes(monkeypatch):
    # A filter that makes some levels worse lists the others in FilterSpec.scales (the v2 UNet ran on
    # scale 4 only); files of an excluded level are decoded without it, with a warning.
    import dataclasses

    from tinycodec.codec import FilterSkippedWarning

    monkeypatch.setitem(FILTERS, "unet", dataclasses.replace(FILTERS["unet"], scales=(4,)))
    data = tinycodec.encode(photo_like(40, 48, seed=6), scale=64)
    with pytest.warns(FilterSkippedWarning, match="unet skipped"):
        out, info = tinycodec.decode_with_info(data, enhance="unet")
    assert info.enhance == "none"
    assert np.array_equal(np.asarray(out), np.asarray(tinycodec.decode(data)))


@pytest.mark.parametrize("size", [(50, 37), (64, 64)])
def test_downscale_restores_the_original_size(size):
    w, h = size
    img = photo_like(h, w, seed=7)
    full = tinycodec.encode(img, scale=4)
    small = tinycodec.encode(img, scale=4, downscale=2)
    assert len(small) < len(full)
    for enhance in ("none", "srunet", "tinypssr-x2"):
        out, info = tinycodec.decode_with_info(small, enhance=enhance)
        assert out.size == (w, h) and info.downscale == 2
    enlarged = tinycodec.decode(full, enhance="srunet")
    assert enlarged.size == (2 * w, 2 * h)


def test_downscale_record_is_checked():
    from tinycodec import container

    data = tinycodec.encode(photo_like(20, 20, seed=8), scale=4, downscale=2)
    header = container.unpack(data).header
    assert container.find_downscale(header) == (2, 20, 20)
    header.extensions = [container.downscale_record(2, 41, 20)]  # would need a 21-wide coded image
    with pytest.raises(TinyCodecError, match="downscale record"):
        container.find_downscale(header)
    with pytest.raises(ValueError, match="downscale"):
        tinycodec.encode(photo_like(20, 20, seed=8), downscale=3)


def test_enhanced_output_respects_the_pixel_limit():
    data = tinycodec.encode(photo_like(20, 20, seed=9), scale=4)
    with pytest.raises(TinyCodecError, match="exceeds the limit"):
        tinycodec.decode(data, enhance="tinypssr-x4", max_pixels=20 * 20 * 4)


def test_int8_filters_run_and_stay_close():
    """The shipped filters in int8 (ONNX Runtime QDQ) against fp32, and what ``auto`` runs for int8."""
    import onnx

    from tinycodec import backends, graphs
    from tinycodec.backends import get_runner
    from tinycodec.networks import network

    backends.clear_cache()
    rgb = photo_like(64, 96, seed=5)
    for name in ("unet", "srunet", "tinypssr-x2"):
        ref = np.asarray(tinycodec.enhance(rgb, name, backend="onnx"))
        out = np.asarray(tinycodec.enhance(rgb, f"{name}-int8", backend="onnx"))
        assert out.shape == ref.shape
        assert psnr(out, ref) > 28, name  # tools/bench_backends.py: 57.5 (UNet), 54.3 (SRUNet) dB on kodim23
    assert get_runner(network("unet"), "auto", "cpu", "int8").precision == "int8"  # auto: int8 pays off here
    assert get_runner(network("srunet"), "auto", "cpu", "int8").precision == "int8"  # 1.8x with onnxruntime 1.32
    assert get_runner(network("tinypssr-x2"), "auto", "cpu", "int8").precision == "fp32"  # int8 slower here
    ops = {n.op_type for n in onnx.load(str(graphs.int8_graph(network("srunet"), "ort"))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
