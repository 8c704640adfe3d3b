"""The codec families a ``.tcz`` file can hold, and which one a file is (format version and family bytes).

- ``tinycompress`` (format version 1): the iterative TinyCompress networks and bit-plane coders (``-s/--planes``).
- ``pyramid`` (format version 2, family 1): hierarchical latents under a learned context model
  (:mod:`tinycodec.pyramid`, ``-Q/--quality --family pyramid``).
- ``shallow`` (format version 2, family 2): a transform codec with a hyperprior and a two-layer synthesis
  (:mod:`tinycodec.shallow`, ``-Q/--quality``).

Both share the magic, the extension records and the checksum conventions (format_spec.md).
"""

from __future__ import annotations

import dataclasses

from .errors import TinyCodecError
from .limits import DEFAULT_LIMITS, Limits

_READ_CHUNK = 1 << 20

TINYCOMPRESS = "tinycompress"
PYRAMID = "pyramid"
SHALLOW = "shallow"
FAMILIES = (TINYCOMPRESS, PYRAMID, SHALLOW)
V2_FAMILIES = {1: PYRAMID, 2: SHALLOW}  # the family byte of format version 2 (container_v2.FAMILY_LAYOUTS)
# The families -Q/--quality selects (encode(..., quality=q, family=...)); the first is the default.
RD_FAMILIES = (SHALLOW, PYRAMID)
# their DEFAULT_REFINE_STEPS and DEFAULT_OVERFIT_STEPS, for callers that should not import them (tests check)
DEFAULT_RD_STEPS = {"refine": 100, "overfit": 300}


def rd_module(family: str):
    """The package of a rate-distortion family: ``encode_planar``, ``decode_with_info``, ``verify``, ``EFFORTS``."""
    import importlib

    if family not in RD_FAMILIES:
        raise TinyCodecError(f"unknown codec family '{family}' (choose from {', '.join(RD_FAMILIES)})")
    return importlib.import_module(f"tinycodec.{family}")


def identify(head: bytes) -> str:
    """The family of a file from its first 12 bytes (magic checked); refuses versions this tinycodec lacks."""
    from . import container, container_v2

    container.header_length(head)  # magic, and enough bytes
    version = head[8]
    if version == container.FORMAT_VERSION:
        return TINYCOMPRESS
    if version == container_v2.VERSION:
        if head[9] in V2_FAMILIES:
            return V2_FAMILIES[head[9]]
        raise TinyCodecError(f"file is a .tcz of codec family {head[9]}, unknown to this tinycodec: upgrade")
    if version == 0:
        raise TinyCodecError("corrupt .tcz header: format version 0")
    raise TinyCodecError(f"file is .tcz format version {version}; this tinycodec reads up to "
                         f"{container_v2.VERSION}: upgrade")


def min_header(head: bytes) -> int:
    """Bytes to read before the header length can be judged (the family's fixed fields)."""
    from . import container, container_v2

    return container.MIN_HEADER if identify(head) == TINYCOMPRESS else container_v2.MIN_HEADER


def payload_length(head: bytes, limits: Limits = DEFAULT_LIMITS) -> int:
    """Verify a whole header (either family, limits included) and return the payload bytes it declares."""
    from . import container, container_v2

    if identify(head) != TINYCOMPRESS:
        _, table, _ = container_v2.read_header(head, limits=limits)
        return sum(n for _, n in table)
    _, table, _ = container.read_header(head, limits=limits)
    return sum(sum(lengths) for _, lengths in table)


def read_declared(stream, *, limits: Limits = DEFAULT_LIMITS, max_pixels: int | None = None) -> bytes:
    """Read one .tcz file (either family) from a binary stream, no further than its verified header allows.

    The guard for every reader of streams (``tinycodec.read_tcz``, the Pillow plugin): the header is read
    and verified first (magic, checksum, pixel limit, payload floor and ceiling); then exactly the declared
    payload, plus one byte so that the decoder can report trailing data. Something that is not a .tcz file
    costs a 12-byte read; a valid file followed by gigabytes costs one byte more than the file.
    """
    if max_pixels is not None:
        limits = dataclasses.replace(limits, max_pixels=max_pixels)
    from . import container

    head = _read_up_to(stream, 12)
    header_len = container.header_length(head)
    # at least the fixed fields, so that a too-small header length is reported as such, not as truncation
    head += _read_up_to(stream, max(header_len, min_header(head)) - len(head))
    payload = _read_up_to(stream, payload_length(head, limits))
    return head + payload + _read_up_to(stream, 1)


def _read_up_to(stream, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream); memory grows with what arrives, not with n."""
    parts, got = [], 0
    while got < n:
        part = stream.read(min(n - got, _READ_CHUNK))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)
