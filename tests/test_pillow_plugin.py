"""The Pillow plugin, exercised through Pillow's own API only."""

import io

import numpy as np
import pytest
from PIL import Image, ImageFile, UnidentifiedImageError

import tinycodec  # noqa: F401 - registers the plugin
from tinycodec import codec
from tinycodec.container import read_header

from .conftest import photo_like, psnr


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "photo.tcz"
    Image.fromarray(photo_like(48, 64)).save(path, scale=16, planes=6)
    return path


def test_registered_extension_and_mime():
    assert Image.registered_extensions()[".tcz"] == "TCZ"
    assert Image.MIME["TCZ"] == "image/x-tcz"
    assert "TCZ" in Image.SAVE and "TCZ" in Image.OPEN


def test_save_with_options_and_open(saved):
    header, _, _ = read_header(saved.read_bytes())
    assert (header.scale, header.planes) == (16, 6)
    with Image.open(saved) as im:
        assert im.format == "TCZ" and im.get_format_mimetype() == "image/x-tcz"
        assert im.size == (64, 48) and im.mode == "RGB"
        assert im.info["tcz_scale"] == 16 and im.info["tcz_planes"] == 6
        arr = np.asarray(im)
    assert arr.shape == (48, 64, 3)
    assert psnr(photo_like(48, 64), arr) > 20


def test_size_and_mode_before_any_pixel_is_decoded(saved, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded on open")

    monkeypatch.setattr(codec, "decode", no_decoding)
    im = Image.open(saved)
    assert im.size == (64, 48) and im.mode == "RGB"
    im.close()


def test_open_a_file_object_and_convert(saved):
    with open(saved, "rb") as f:
        im = Image.open(f)
        im.load()
    assert im.convert("L").size == (64, 48)
    with Image.open(io.BytesIO(saved.read_bytes())) as im:
        assert im.resize((32, 24)).size == (32, 24)


def test_verify(saved):
    with open(saved, "rb") as f:
        Image.open(f).verify()
    data = bytearray(saved.read_bytes())
    data[-2] ^= 0x01
    im = Image.open(io.BytesIO(bytes(data)))  # the header is intact: opening works
    with pytest.raises(SyntaxError, match="checksum"):
        im.verify()
    with pytest.raises(OSError, match="checksum"):
        Image.open(io.BytesIO(bytes(data))).load()


def test_truncated_file_follows_pillow_flag(saved, tmp_path, monkeypatch):
    # Saved progressive (coder 3, one segment group per plane): a prefix decodes to the planes that arrived.
    path = tmp_path / "progressive.tcz"
    Image.fromarray(photo_like(48, 64)).save(path, scale=16, planes=6, progressive=True)
    cut = path.read_bytes()[: int(path.stat().st_size * 0.7)]
    with pytest.raises(OSError, match="truncated"):
        Image.open(io.BytesIO(cut)).load()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    im = Image.open(io.BytesIO(cut))
    im.load()
    assert 1 <= im.info["tcz_planes_decoded"] < 6 and im.size == (64, 48)
    # A default file's one tile holds every plane: cut, nothing of it arrived whole.
    with pytest.raises(OSError, match="no tile arrived whole"):
        Image.open(io.BytesIO(saved.read_bytes()[: int(saved.stat().st_size * 0.7)])).load()


def test_modes_round_trip_through_pillow(tmp_path):
    rgba = Image.fromarray(np.dstack([photo_like(20, 30), np.full((20, 30), 200, np.uint8)]), "RGBA")
    for mode in ("L", "LA", "RGBA"):
        path = tmp_path / f"{mode}.tcz"
        rgba.convert(mode).save(path)
        with Image.open(path) as im:
            assert im.mode == mode
            im.load()
            assert im.mode == mode and im.size == (30, 20)


def test_bad_save_option_and_not_a_tcz(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        Image.new("RGB", (8, 8)).save(tmp_path / "x.tcz", scale=5)
    (tmp_path / "fake.tcz").write_bytes(b"\x89TCZ\r\n\x1a\n" + bytes(40))
    with pytest.raises(UnidentifiedImageError):
        Image.open(tmp_path / "fake.tcz")


def test_downscale_file_opens_at_the_size_decoding_produces(tmp_path):
    """A --downscale file: Image.open reports the original size (as tcdec and tinycodec.decode give)."""
    path = tmp_path / "down.tcz"
    path.write_bytes(tinycodec.encode(photo_like(48, 64), scale=16, downscale=2))
    assert read_header(path.read_bytes())[0].width == 32
    with Image.open(path) as im:
        assert im.size == (64, 48)
        im.load()
        assert im.size == (64, 48)
        assert np.array_equal(np.asarray(im), np.asarray(tinycodec.decode(path.read_bytes())))
    with Image.open(path) as im:
        im.verify()


class _CountingReader(io.BytesIO):
    def read(self, n=-1):
        out = super().read(n)
        self.furthest = max(getattr(self, "furthest", 0), self.tell())
        return out


def test_load_and_verify_read_only_what_the_header_declares(saved):
    """A valid file followed by 50 MB: refused after reading one byte past the file, not all of it."""
    data = saved.read_bytes()
    for action in ("load", "verify"):
        stream = _CountingReader(data + bytes(50_000_000))
        im = Image.open(stream)
        with pytest.raises((OSError, SyntaxError), match="trailing"):
            im.load() if action == "load" else im.verify()
        assert stream.furthest <= len(data) + 1, action
