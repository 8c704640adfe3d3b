"""Progressive decoding: any prefix of a file decodes to what its whole segments allow."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tinycodec import TinyCodecError, decode, decode_with_info, encode
from tinycodec.cli import tcdec
from tinycodec.codec import INFO_PLANES_DECODED, PartialAlphaWarning
from tinycodec.container import group_ends, read_header

from .conftest import photo_like, psnr


@pytest.fixture(scope="module")
def image():
    return photo_like(64, 96, seed=4)


@pytest.fixture(scope="module")
def tiled(image):
    """Scale 4, 8x8-element tiles: a 32x48 latent in 4 x 6 tiles."""
    return encode(image, scale=4, planes=8, tile=8, progressive=True)  # coder 3: one group per plane


def test_group_ends(tiled):
    ends = group_ends(tiled)
    _, _, header_len = read_header(tiled)
    assert len(ends) == 8 and ends[-1] == len(tiled) and ends[0] > header_len
    assert ends == sorted(ends)


def test_more_bytes_never_decode_worse(image, tiled):
    qualities, planes = [], []
    for fraction in (0.3, 0.6, 0.9, 1.0):
        out, info = decode_with_info(tiled[: int(len(tiled) * fraction)], partial=True)
        assert out.size == (96, 64) and out.mode == "RGB"
        assert out.info[INFO_PLANES_DECODED] == info.planes_decoded
        qualities.append(psnr(image, np.asarray(out)))
        planes.append(info.planes_decoded + info.tiles_refined / info.tiles)
    assert planes == sorted(planes) and planes[-1] == 8
    assert all(b >= a - 0.05 for a, b in zip(qualities, qualities[1:])), qualities
    assert qualities[-1] > qualities[0] + 1


def test_segments_of_the_cut_plane_are_used_tile_by_tile(tiled):
    ends = group_ends(tiled)
    middle = (ends[2] + ends[3]) // 2  # half of plane 4's tiles arrived
    _, info = decode_with_info(tiled[:middle], partial=True)
    assert info.planes_decoded == 3 and info.tiles == 24 and 0 < info.tiles_refined < 24
    assert not info.complete
    _, info = decode_with_info(tiled[: ends[3]], partial=True)
    assert (info.planes_decoded, info.tiles_refined) == (4, 0)
    _, info = decode_with_info(tiled, partial=True)
    assert info.complete and info.planes_decoded == 8


def test_a_cut_file_is_still_an_error_without_partial(tiled):
    with pytest.raises(TinyCodecError, match="truncated"):
        decode(tiled[: len(tiled) // 2])


def test_before_the_first_segment_nothing_decodes(tiled):
    _, _, header_len = read_header(tiled)
    with pytest.raises(TinyCodecError, match="not even the first bit-plane"):
        decode(tiled[: header_len + 3], partial=True)


def test_partial_alpha_is_approximated():
    rgb = photo_like(24, 32)
    alpha = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    data = encode(np.dstack([rgb, alpha]), scale=16, planes=4, progressive=True)
    ends = group_ends(data)
    with pytest.warns(PartialAlphaWarning):
        out, info = decode_with_info(data[: ends[4 + 5]], partial=True)  # colour + 6 of 8 alpha planes
    assert info.planes_decoded == 4 and not info.complete
    error = np.abs(np.asarray(out.getchannel("A")).astype(int) - alpha)
    assert 0 < error.max() <= 2  # two planes missing: within half of a bin of 4 levels
    with pytest.warns(PartialAlphaWarning):
        out = decode(data[: ends[3]], partial=True)  # colour only: opaque
    assert np.asarray(out.getchannel("A")).min() == 255


def test_cli_partial_says_what_it_decoded(tmp_path, tiled):
    ends = group_ends(tiled)
    (tmp_path / "cut.tcz").write_bytes(tiled[: (ends[2] + ends[3]) // 2])
    r = CliRunner().invoke(tcdec, [str(tmp_path / "cut.tcz"), "--partial", "-o", str(tmp_path / "cut.png")])
    assert r.exit_code == 0, r.output
    assert "3 of 8 planes (plane 4 in" in r.output
    assert Image.open(tmp_path / "cut.png").size == (96, 64)
    r = CliRunner().invoke(tcdec, [str(tmp_path / "cut.tcz"), "-o", str(tmp_path / "cut2.png")])
    assert r.exit_code == 1 and "truncated" in r.output
