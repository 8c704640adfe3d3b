"""Limits a user can rely on: pixels, payload size relative to the image, time per pixel;
the first two checked on the header, before anything is allocated or read for the image."""

import dataclasses
import io
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import tinycodec
from tinycodec import DEFAULT_LIMITS, Limits, TinyCodecError, container, decode, read_tcz
from tinycodec.cli import tcdec

from .conftest import photo_like


@pytest.fixture(scope="module")
def tcz() -> bytes:
    return tinycodec.encode(photo_like(40, 48), scale=16, planes=6)


def reseal(data: bytes, patch) -> bytes:
    """Change header bytes and recompute the header CRC: a crafted file that passes its checksum."""
    end = struct.unpack_from("<H", data, 10)[0]
    head = bytearray(data[: end - 4])
    patch(head)
    return bytes(head) + struct.pack("<I", zlib.crc32(head)) + data[end:]


class CountingReader(io.BytesIO):
    """A stream that remembers how far it was read."""

    def read(self, n=-1):
        out = super().read(n)
        self.furthest = self.tell()
        return out


def test_default_pixel_cap_is_where_pillow_refuses():
    assert DEFAULT_LIMITS.max_pixels == 2 * Image.MAX_IMAGE_PIXELS == 178_956_970  # DecompressionBombError above
    assert container.DEFAULT_MAX_PIXELS == DEFAULT_LIMITS.max_pixels


def test_pixel_cap_refuses_on_the_header(tcz):
    big = reseal(tcz, lambda h: struct.pack_into("<II", h, 12, 20_000, 9_000))  # 180 Mpx, just over the cap
    with pytest.raises(TinyCodecError, match=r"20000x9000 pixels exceeds the limit of 178956970 .*max-pixels"):
        decode(big)
    with pytest.raises(TinyCodecError, match="exceeds the limit of 1000 pixels"):
        decode(tcz, limits=Limits(max_pixels=1000))
    with pytest.raises(TinyCodecError, match="exceeds the limit of 1000 pixels"):
        decode(tcz, max_pixels=1000)  # the shorthand
    assert decode(tcz, limits=Limits(max_pixels=48 * 40)).size == (48, 40)  # the cap is inclusive
    assert decode(tcz, limits=Limits(max_pixels=None)).size == (48, 40)


def test_payload_far_beyond_what_the_image_can_need_is_refused(tcz):
    """The same payload under a header that says 1x1 pixel: refused before any of it is used."""
    tiny = reseal(tcz, lambda h: struct.pack_into("<II", h, 12, 1, 1))
    with pytest.raises(TinyCodecError, match=r"payload of \d+ bytes is implausibly large for a 1x1 image"):
        decode(tiny)
    header, table, _ = container.read_header(tiny, limits=Limits(max_payload_ratio=None))
    assert header.width == 1  # only the payload limit refused it
    with pytest.raises(TinyCodecError, match="implausibly large"):
        decode(tcz, limits=Limits(max_payload_ratio=0.01))


def test_payload_limit_holds_for_incompressible_content():
    """Noise in every channel and in alpha, at the rate-hungriest setting: well inside the limit."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (37, 29, 4), dtype=np.uint8)
    data = tinycodec.encode(noise, scale=4, planes=8, tile=8)
    header, table, header_len = container.read_header(data)
    payload = len(data) - header_len
    assert payload < 0.25 * DEFAULT_LIMITS.max_payload_bytes(header.raw_bits, sum(len(t) for _, t in table))


def test_time_limit_stops_a_decode():
    data = tinycodec.encode(photo_like(64, 64), scale=4)
    with pytest.raises(TinyCodecError, match="time limit of 0.0 s"):
        decode(data, limits=Limits(max_seconds_per_megapixel=1e-9, min_seconds=0))
    assert decode(data, limits=Limits(max_seconds_per_megapixel=None)).size == (64, 64)


def test_limits_are_validated():
    for bad in ({"max_pixels": 0}, {"max_payload_ratio": -1.0}, {"max_seconds_per_megapixel": 0.0},
                {"min_seconds": -1.0}):
        with pytest.raises(ValueError, match="Limits"):
            Limits(**bad)
    with pytest.raises(TypeError, match="Limits"):
        decode(b"", limits={"max_pixels": 10})


def test_read_tcz_reads_no_further_than_the_verified_header_allows(tcz):
    not_tcz = CountingReader(b"\x89PNG\r\n\x1a\n" + bytes(10_000_000))
    with pytest.raises(TinyCodecError, match="not a .tcz file"):
        read_tcz(not_tcz)
    assert not_tcz.furthest <= 12

    inflated = reseal(tcz, lambda h: struct.pack_into("<II", h, 12, 1, 1))  # payload too large for its image
    stream = CountingReader(inflated + bytes(10_000_000))
    with pytest.raises(TinyCodecError, match="implausibly large"):
        read_tcz(stream)
    assert stream.furthest == struct.unpack_from("<H", tcz, 10)[0]  # the header and nothing more

    stream = CountingReader(tcz + bytes(10_000_000))  # trailing data: one byte of it is read, then refused
    data = read_tcz(stream)
    assert len(data) == len(tcz) + 1 and stream.furthest == len(tcz) + 1
    with pytest.raises(TinyCodecError, match="trailing"):
        decode(data)
    assert read_tcz(io.BytesIO(tcz)) == tcz
    assert read_tcz(io.BytesIO(tcz[:-7])) == tcz[:-7]  # a truncated file comes back short


def test_tcdec_max_pixels(tmp_path, tcz):
    (tmp_path / "a.tcz").write_bytes(tcz)
    r = CliRunner().invoke(tcdec, [str(tmp_path / "a.tcz"), "-o", str(tmp_path / "a.png"), "--max-pixels", "100"])
    assert r.exit_code == 1 and r.output.startswith("tcdec: error: image of 48x40 pixels exceeds the limit of 100")
    assert not (tmp_path / "a.png").exists()
    r = CliRunner().invoke(tcdec, [str(tmp_path / "a.tcz"), "-o", str(tmp_path / "a.png"), "--max-pixels", "0"])
    assert r.exit_code == 0 and (tmp_path / "a.png").exists()


def test_decode_file_applies_limits(tmp_path, tcz):
    (tmp_path / "a.tcz").write_bytes(tcz)
    with pytest.raises(TinyCodecError, match="exceeds the limit"):
        tinycodec.decode_file(tmp_path / "a.tcz", tmp_path / "a.png", limits=Limits(max_pixels=10))
    assert not (tmp_path / "a.png").exists()


def test_encoder_never_writes_what_the_default_reader_refuses():
    from tinycodec import codec

    assert codec.MAX_IMAGE_PIXELS == DEFAULT_LIMITS.max_pixels
    assert dataclasses.replace(DEFAULT_LIMITS).max_payload_ratio >= 13.4  # the coder's worst case, limits.py


def _bomb(alpha: bool = False) -> bytes:
    """A file of about 100 bytes that declares 13377x13377 pixels (under the pixel cap) with one
    4-byte segment per plane: the range decoder used to decode it, for minutes, from zero padding."""
    from tinycodec.zoo import current_entry, model_name

    entry = current_entry(model_name(16))
    header = container.Header(13377, 13377, 3, alpha, 2, 1, 3, 65535, (-1.0,) * 3, (1.0,) * 3, entry.model,
                              entry.short_id)
    return container.pack(header, [[b"\0\0\0\x80"]] * header.n_groups)


@pytest.mark.parametrize("alpha", [False, True], ids=["rgb-93-bytes", "rgba-165-bytes"])
def test_tiny_file_declaring_a_huge_image_is_refused_on_its_header(alpha):
    import time

    bomb = _bomb(alpha)
    assert len(bomb) == (165 if alpha else 93)
    start = time.perf_counter()
    with pytest.raises(TinyCodecError, match="not a file any encoder writes"):
        read_tcz(io.BytesIO(bomb))  # on the header: before the payload is read
    with pytest.raises(TinyCodecError, match="not a file any encoder writes"):
        decode(bomb)
    assert time.perf_counter() - start < 1.0


def test_payload_floor_is_below_every_real_segment():
    """The floor is derived from the coder (format_spec.md); real segments are far above it."""
    from tinycodec import entropy

    for coder in entropy.CODERS.values():
        assert 1.3e-4 < coder.min_bits_per_decision < 1.5e-4
        assert coder.min_segment_bytes(3 * 8 * 8) == 4
    # a flat 1024x1024 image at scale 4: 3 x 256 x 256 decisions per segment in as little as 156 bytes
    flat = tinycodec.encode(np.full((1024, 1024, 3), 77, np.uint8), scale=4, planes=8)
    header, table, _ = container.read_header(flat)
    floor = entropy.min_segment_bytes(3, 3 * 256 * 256)
    assert floor == 4 and min(min(lengths) for _, lengths in table) >= 10 * floor
    assert entropy.min_segment_bytes(3, 3 * 3345 * 3345) == 280  # the one tile of the bomb above needs 280 bytes


def test_a_segment_whose_range_decoder_runs_past_its_data_is_an_error():
    """A segment may pass the floor and still decode far more than its bytes can carry: the
    decoder stops as soon as the decoded decisions carry more information than the segment."""
    import time

    from tinycodec import entropy

    start = time.perf_counter()
    with pytest.raises(TinyCodecError, match="ran past its data"):
        entropy.decode_tile([b"\0\0\0\x80"], 1, (3, 512, 512))  # 786,432 decisions in 4 bytes
    assert time.perf_counter() - start < 1.0
