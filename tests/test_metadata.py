"""ICC profile and EXIF orientation: carried into the .tcz, restored on decode, droppable."""

import os
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tinycodec import TinyCodecError, decode, decode_with_info, encode
from tinycodec.cli import tcdec, tcenc
from tinycodec.container import EXT_CRITICAL, EXT_ICC_PROFILE, EXT_ORIENTATION, pack, read_header
from tinycodec.metadata import MetadataWarning

from .conftest import photo_like

ICC = b"fake-icc-profile " * 40  # the codec carries the bytes; it does not interpret them


def tagged(orientation=6, icc=ICC) -> Image.Image:
    im = Image.fromarray(photo_like(24, 40))
    if icc:
        im.info["icc_profile"] = icc
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    return im


def test_carried_and_restored():
    data = encode(tagged(), scale=64)
    header, _, _ = read_header(data)
    types = [t for t, _ in header.extensions]
    assert types == [EXT_ICC_PROFILE, EXT_ORIENTATION]
    assert not any(t & EXT_CRITICAL for t in types)  # decoders that predate them still read the file
    out, info = decode_with_info(data)
    assert out.info["icc_profile"] == ICC and out.getexif()[0x0112] == 6
    assert info.metadata.icc_profile == ICC and info.metadata.orientation == 6


def test_dropped_on_request_and_absent_for_arrays():
    out = decode(encode(tagged(), scale=64, keep_metadata=False))
    assert "icc_profile" not in out.info and "exif" not in out.info
    header, _, _ = read_header(encode(photo_like(8, 8)))
    assert header.extensions == []


def test_oversized_profile_is_dropped_with_a_warning():
    huge = os.urandom(40_000)  # incompressible: above the 32 KiB record limit
    with pytest.warns(MetadataWarning, match="too large"):
        data = encode(tagged(icc=huge), scale=64)
    out = decode(data)
    assert "icc_profile" not in out.info and out.getexif()[0x0112] == 6


def _with_extensions(data: bytes, extensions) -> bytes:
    header, table, header_len = read_header(data)
    header.extensions = extensions
    payload = data[header_len:]
    groups, pos = [], 0
    for _, lengths in table:
        group = []
        for n in lengths:
            group.append(payload[pos : pos + n])
            pos += n
        groups.append(group)
    return pack(header, groups)


def test_malformed_and_unknown_records():
    data = encode(photo_like(16, 16), scale=64)
    odd = _with_extensions(data, [(EXT_ICC_PROFILE, b"not zlib"), (EXT_ORIENTATION, b"\x09"), (0x33, b"future")])
    out = decode(odd)  # non-critical records a reader cannot use are skipped
    assert "icc_profile" not in out.info and "exif" not in out.info
    bomb = _with_extensions(data, [(EXT_ICC_PROFILE, zlib.compress(bytes(20 << 20)))])
    assert "icc_profile" not in decode(bomb).info  # inflated size is capped
    with pytest.raises(TinyCodecError, match="extension"):
        decode(_with_extensions(data, [(0x80 | 0x33, b"")]))


def test_command_line_keeps_and_strips(tmp_path):
    src = tmp_path / "in.png"
    tagged().save(src, icc_profile=ICC, exif=tagged().info["exif"])
    run = CliRunner().invoke
    assert run(tcenc, [str(src), "-o", str(tmp_path / "a.tcz")]).exit_code == 0
    assert run(tcdec, [str(tmp_path / "a.tcz"), "-o", str(tmp_path / "a.jpg")]).exit_code == 0
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.info["icc_profile"] == ICC and im.getexif()[0x0112] == 6
    assert run(tcdec, [str(tmp_path / "a.tcz"), "--strip", "-o", str(tmp_path / "b.png")]).exit_code == 0
    assert run(tcenc, [str(src), "--strip", "-o", str(tmp_path / "c.tcz")]).exit_code == 0
    assert run(tcdec, [str(tmp_path / "c.tcz"), "-o", str(tmp_path / "c.png")]).exit_code == 0
    for name in ("b.png", "c.png"):
        with Image.open(tmp_path / name) as im:
            assert "icc_profile" not in im.info and 0x0112 not in im.getexif()


def test_pillow_save_takes_icc_and_exif_options(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.tcz", icc_profile=ICC, exif=exif)
    with Image.open(tmp_path / "x.tcz") as im:
        assert im.info["icc_profile"] == ICC and im.getexif()[0x0112] == 3
