import numpy as np
import pytest
from PIL import Image

import tinycodec
from tinycodec import TinyCodecError, decode, decode_with_info, encode
from tinycodec.image import HighBitDepthWarning

from .conftest import photo_like, psnr


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (7, 1), (13, 5), (33, 17), (64, 48)])
@pytest.mark.parametrize("scale", [4, 256])
def test_exact_size_restored(size, scale):
    w, h = size
    data = encode(photo_like(h, w), scale=scale)
    out = decode(data)
    assert out.size == (w, h) and out.mode == "RGB"


@pytest.mark.parametrize("scale", tinycodec.SCALES)
def test_quality_and_rate_order(photo, scale):
    """Fewer planes: fewer bytes and no better quality; larger scale: fewer bytes."""
    sizes, qualities = [], []
    for planes in (8, 5, 2):
        data = encode(photo, scale=scale, planes=planes)
        sizes.append(len(data))
        qualities.append(psnr(photo, np.asarray(decode(data))))
    assert sizes[0] > sizes[1] > sizes[2]
    assert qualities[0] >= qualities[2] - 0.1


def test_trained_weights_beat_a_flat_image(photo):
    # A trained TC-4 reconstructs far better than the image's mean colour (about 15 dB here).
    flat = np.broadcast_to(photo.mean(axis=(0, 1)).round(), photo.shape)
    out = np.asarray(decode(encode(photo, scale=4)))
    assert psnr(photo, out) > psnr(photo, flat) + 8


def test_larger_scale_is_smaller(photo):
    sizes = [len(encode(photo, scale=s)) for s in tinycodec.SCALES]
    assert sizes == sorted(sizes, reverse=True)


def test_grey_stays_grey():
    grey = photo_like(40, 30)[:, :, 1]
    out = decode(encode(Image.fromarray(grey, "L"), scale=4))
    assert out.mode == "L" and out.size == (30, 40)
    assert psnr(grey, np.asarray(out)) > 20


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_lossless(mode):
    rgb = photo_like(37, 29)
    alpha = np.random.default_rng(0).integers(0, 256, (37, 29), dtype=np.uint8)
    alpha[:10] = 255
    im = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    if mode == "LA":
        im = im.convert("LA")
        alpha = np.asarray(im.getchannel("A"))
    out = decode(encode(im, scale=16))
    assert out.mode == mode
    assert np.array_equal(np.asarray(out.getchannel("A")), alpha)


def test_palette_and_bilevel_inputs():
    rgb = Image.fromarray(photo_like(20, 24))
    assert decode(encode(rgb.convert("P"))).mode == "RGB"
    assert decode(encode(rgb.convert("1"))).mode == "L"
    pal = rgb.convert("P")
    pal.info["transparency"] = 0
    assert decode(encode(pal)).mode == "RGBA"


def test_premultiplied_and_colour_key_transparency():
    rgba = np.dstack([photo_like(12, 10), np.full((12, 10), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    im = Image.fromarray(rgba, "RGBA")
    assert decode(encode(im.convert("RGBa"))).mode == "RGBA"
    assert decode(encode(im.convert("LA").convert("La"))).mode == "LA"
    keyed = Image.fromarray(photo_like(12, 10))
    keyed.info["transparency"] = tuple(int(v) for v in np.asarray(keyed)[0, 0])
    out = decode(encode(keyed))
    assert out.mode == "RGBA" and np.asarray(out)[0, 0, 3] == 0
    quantized = im.quantize()  # RGBA palette, no "transparency" key
    assert decode(encode(quantized)).mode == "RGBA"


def test_sixteen_bit_is_converted_with_a_warning():
    arr = (photo_like(16, 16)[:, :, 0].astype(np.uint16) * 257)
    im = Image.fromarray(arr)
    assert im.mode.startswith("I;16")
    with pytest.warns(HighBitDepthWarning):
        out = decode(encode(im, scale=4))
    assert out.mode == "L"
    assert psnr(arr / 257, np.asarray(out)) > 20


def test_array_mode_mapping():
    assert decode(encode(np.zeros((4, 4), np.uint8))).mode == "L"
    assert decode(encode(np.zeros((4, 4, 2), np.uint8))).mode == "LA"
    assert decode(encode(np.zeros((4, 4, 3), np.uint8))).mode == "RGB"
    assert decode(encode(np.zeros((4, 4, 4), np.uint8))).mode == "RGBA"


def test_bad_arguments():
    img = photo_like(8, 8)
    with pytest.raises(ValueError):
        encode(img, scale=8)
    with pytest.raises(ValueError):
        encode(img, planes=0)
    with pytest.raises(TinyCodecError):
        encode(np.zeros((4, 4), np.float32))
    with pytest.raises(TypeError):
        encode("not an image")
    with pytest.raises(TinyCodecError):
        encode(np.zeros((0, 4, 3), np.uint8))


def test_decode_info(photo):
    _, info = decode_with_info(encode(photo, scale=64, planes=5))
    assert (info.scale, info.planes, info.planes_decoded, info.width, info.height) == (64, 5, 5, 128, 96)
    assert info.model == "tinycompress-s64"


def test_tiles_are_independent_and_lossless_in_layout(photo):
    """Small tiles give the same latents as one tile: tiling changes only the coding."""
    one = decode(encode(photo, scale=4, tile=256))
    many = decode(encode(photo, scale=4, tile=8))
    assert np.array_equal(np.asarray(one), np.asarray(many))


def test_files_of_every_entropy_coder_decode(monkeypatch):
    """Files written by earlier coders (1, 2, 3) still decode, to the same image; an unknown coder is refused."""
    import dataclasses

    from tinycodec import container, entropy

    rgba = np.dstack([photo_like(40, 56, seed=21), np.random.default_rng(2).integers(0, 256, (40, 56), np.uint8)])
    current = encode(rgba, scale=16, planes=6)
    assert container.unpack(current).header.coder_id == entropy.CODER_ID == max(entropy.CODERS)
    for coder in sorted(entropy.CODERS)[:-1]:
        monkeypatch.setattr(entropy, "CODER_ID", coder)
        old = encode(rgba, scale=16, planes=6)
        assert container.unpack(old).header.coder_id == coder
        assert old != current
        assert np.array_equal(np.asarray(decode(old)), np.asarray(decode(current)))
    unknown = max(entropy.CODERS) + 1
    # A reader lays out the groups of a coder it does not know one per plane (container.group_planes).
    unpacked = container.unpack(encode(rgba, scale=16, planes=6, progressive=True))
    future = container.pack(dataclasses.replace(unpacked.header, coder_id=unknown), unpacked.groups)
    with pytest.raises(TinyCodecError, match=f"entropy coder {unknown}, unknown to this tinycodec"):
        decode(future)


def test_encoder_pixel_cap(monkeypatch):
    from tinycodec import codec

    monkeypatch.setattr(codec, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(TinyCodecError, match="exceeds the limit"):
        encode(np.zeros((11, 10, 3), np.uint8))


def test_file_helpers(tmp_path, photo):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    n = tinycodec.encode_file(src, tmp_path / "out.tcz", scale=16, planes=6)
    assert n == (tmp_path / "out.tcz").stat().st_size
    im = tinycodec.decode_file(tmp_path / "out.tcz", tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").size == im.size == (128, 96)
    with pytest.raises(TinyCodecError, match="unknown output image format"):
        tinycodec.decode_file(tmp_path / "out.tcz", tmp_path / "out.nope")
    assert not (tmp_path / "out.nope").exists()
    with pytest.raises(TinyCodecError, match="no such file"):
        tinycodec.encode_file(tmp_path / "missing.png", tmp_path / "x.tcz")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(TinyCodecError, match="not an image"):
        tinycodec.encode_file(tmp_path / "text.png", tmp_path / "x.tcz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png", "out.tcz", "text.png"]


def test_default_coder_per_operating_point():
    """Coder 4 by default; coder 3 for progressive files and where coder 4 does not pay (entropy.FEW_PLANES)."""
    from tinycodec import container, entropy

    img = photo_like(24, 32)
    for scale, planes, progressive, coder in ((16, 3, False, 4), (4, 4, False, 4), (4, 3, False, 3), (4, 1, False, 3),
                                              (16, 8, True, 3)):
        data = encode(img, scale=scale, planes=planes, progressive=progressive)
        assert container.unpack(data).header.coder_id == coder == entropy.coder_for(scale, planes, progressive)
