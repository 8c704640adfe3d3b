"""The .tcz container: checksums, truncation, hostile headers."""

import struct
import zlib

import numpy as np
import pytest

from tinycodec import TinyCodecError, decode, decode_with_info, encode
from tinycodec.container import MAGIC, read_header

from .conftest import photo_like


@pytest.fixture(scope="module")
def tcz() -> bytes:
    return encode(photo_like(40, 56), scale=16, planes=6)


def reseal(data: bytes, header_patch) -> bytes:
    """Apply a change to the header and recompute its CRC (a crafted, 'valid' file)."""
    hlen = struct.unpack_from("<H", data, 10)[0]
    head = bytearray(data[: hlen - 4])
    header_patch(head)
    return bytes(head) + struct.pack("<I", zlib.crc32(head)) + data[hlen:]


def test_magic_and_version(tcz):
    assert tcz.startswith(MAGIC) and tcz[8] == 1


def test_wrong_magic():
    with pytest.raises(TinyCodecError, match="not a .tcz file"):
        decode(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(TinyCodecError, match="not a .tcz file"):
        decode(b"")


def test_newer_version_is_refused_clearly(tcz):
    data = bytearray(tcz)
    data[8] = 3  # version 2 is the pyramid family (tests/test_pyramid.py)
    with pytest.raises(TinyCodecError, match="version 3.*upgrade"):
        decode(bytes(data))


@pytest.mark.parametrize("cut", [9, 30, 60, -1])
def test_truncated(tcz, cut):
    with pytest.raises(TinyCodecError, match="truncated"):
        decode(tcz[:cut])


def test_trailing_garbage(tcz):
    with pytest.raises(TinyCodecError, match="trailing"):
        decode(tcz + b"\0")


def test_every_single_bit_flip_is_detected(tcz):
    """No flipped bit anywhere in the file decodes silently to a different image."""
    reference = np.asarray(decode(tcz))
    step = max(1, len(tcz) * 8 // 400)  # about 400 positions spread over the whole file
    for bit in range(0, len(tcz) * 8, step):
        data = bytearray(tcz)
        data[bit // 8] ^= 1 << (bit % 8)
        try:
            out = decode(bytes(data))
        except TinyCodecError:
            continue
        # A flip that still decodes must not change the image (there is no such field today).
        assert np.array_equal(np.asarray(out), reference), f"bit {bit} changed the image silently"


def test_absurd_dimensions_refused_before_allocation(tcz):
    def huge(head):
        struct.pack_into("<II", head, 12, 1 << 20, 1 << 20)

    with pytest.raises(TinyCodecError, match="exceeds the limit"):
        decode(reseal(tcz, huge))


def test_pixel_cap_is_configurable(tcz):
    with pytest.raises(TinyCodecError, match="exceeds the limit"):
        decode(tcz, max_pixels=100)


@pytest.mark.parametrize("offset,value,message", [
    (20, 2, "colour channels"), (21, 0, "depth"), (21, 5, "depth"), (22, 0, "bit-planes"), (22, 9, "bit-planes"),
    (9, 0x80, "flags"),
])
def test_crafted_fields_rejected(tcz, offset, value, message):
    def patch(head):
        head[offset] = value

    with pytest.raises(TinyCodecError, match=message):
        decode(reseal(tcz, patch))


def test_unknown_weights_fail_clearly(tcz):
    hdr, _, _ = read_header(tcz)
    pos = tcz.index(hdr.model.encode()) + len(hdr.model)

    def other_weights(head):
        head[pos : pos + 8] = b"\x00" * 8

    with pytest.raises(TinyCodecError, match="weights 0000000000000000 of 'tinycompress-s16'.*version that wrote it"):
        decode(reseal(tcz, other_weights))


def test_unknown_model_fails_clearly(tcz):
    def rename(head):
        i = bytes(head).index(b"tinycompress-s16")
        head[i : i + 16] = b"tinycompress-x16"

    with pytest.raises(TinyCodecError, match="tinycompress-x16"):
        decode(reseal(tcz, rename))


def test_garbage_segments_with_valid_checksums(tcz):
    """Crafted payloads that pass every CRC still fail with TinyCodecError only."""
    hdr, table, header_len = read_header(tcz)
    rng = np.random.default_rng(0)
    for trial in range(40):
        lengths = [4 * int(rng.integers(1, 4)) for _ in table]
        groups = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) if trial % 2 else b"\xff" * n for n in lengths]
        from tinycodec.container import pack

        data = pack(hdr, [[g] for g in groups])
        try:
            decode(data)
        except TinyCodecError:
            pass


def test_empty_segment_rejected(tcz):
    hdr, _, _ = read_header(tcz)
    from tinycodec.container import pack

    with pytest.raises(TinyCodecError, match="empty segment"):
        decode(pack(hdr, [[b""] for _ in range(hdr.n_groups)]))


@pytest.fixture(scope="module")
def progressive_tcz() -> bytes:
    return encode(photo_like(40, 56), scale=16, planes=6, progressive=True)


def test_partial_decoding_of_a_prefix(progressive_tcz):
    # Progressive (coder 3) files: one segment group per plane, so every group boundary adds one plane.
    tcz = progressive_tcz
    hdr, table, header_len = read_header(tcz)
    assert len(table) == hdr.planes
    ends = np.cumsum([sum(lengths) for _, lengths in table]) + header_len
    decoded = []
    for end in ends:
        _, info = decode_with_info(tcz[: int(end) + 1 if end < len(tcz) else end], partial=True)
        decoded.append(info.planes_decoded)
    assert decoded == list(range(1, hdr.planes + 1))
    with pytest.raises(TinyCodecError, match="not even the first bit-plane"):
        decode(tcz[:header_len], partial=True)


def test_partial_decoding_of_a_default_file_needs_whole_tiles(tcz):
    # Coder 4 holds all planes of a tile in one segment: a cut file decodes only the tiles that arrived whole.
    hdr, table, header_len = read_header(tcz)
    assert hdr.coder_id == 4 and len(table) == 1 and len(table[0][1]) == 1
    with pytest.raises(TinyCodecError, match="no tile arrived whole.*--progressive"):
        decode(tcz[: len(tcz) - 1], partial=True)
    _, info = decode_with_info(tcz, partial=True)
    assert info.planes_decoded == hdr.planes


def test_partial_still_checks_what_arrived(tcz):
    _, table, header_len = read_header(tcz)
    data = bytearray(tcz[: header_len + sum(table[0][1]) + 3])
    data[header_len] ^= 0x10
    with pytest.raises(TinyCodecError, match="checksum"):
        decode(bytes(data), partial=True)


def test_model_name_is_restricted_to_a_safe_character_set(tcz):
    """A name with a newline and an escape sequence used to reach the terminal raw in the error."""
    forged = b"\n\x1b[2Jtcdec: note"  # 16 bytes, as long as tinycompress-s16

    def rename(head):
        i = bytes(head).index(b"tinycompress-s16")
        head[i : i + 16] = forged

    with pytest.raises(TinyCodecError, match="model name has characters outside") as caught:
        decode(reseal(tcz, rename))
    assert str(caught.value).isprintable()
    from tinycodec import container

    hdr, _, _ = read_header(tcz)
    for bad in ("", "a b", "x\n", "caf\u00e9", "m" * 256):
        with pytest.raises(ValueError, match="model name"):
            container.pack(container.Header(**{**hdr.__dict__, "model": bad}), [])


def test_writer_refuses_a_latent_range_its_reader_would_refuse(tcz):
    """lo/hi = -/+1e30 (the spec's bound) round to float32 values beyond it: pack used to write
    a file that unpack refuses. The writer checks the value it stores."""
    from tinycodec import container

    hdr, _, _ = read_header(tcz)
    groups = [list(g) for g in container.unpack(tcz).groups]
    for lo, hi in (((-1e30,) * 3, (1e30,) * 3), ((0.0,) * 3, (1e30,) * 3), ((0.0,) * 3, (1e39,) * 3)):
        with pytest.raises(ValueError, match="latent range"):
            container.pack(container.Header(**{**hdr.__dict__, "lo": lo, "hi": hi}), groups)
    edge = float(np.nextafter(np.float32(1e30), np.float32(0)))  # the largest float32 <= 1e30
    assert edge <= 1e30 < float(np.float32(1e30))
    data = container.pack(container.Header(**{**hdr.__dict__, "lo": (-edge,) * 3, "hi": (edge,) * 3}), groups)
    assert container.unpack(data).header.hi == (edge,) * 3
