"""Resource limits the decoder enforces, so that a file from a stranger cannot exhaust a machine.

Three limits, each checked as early as it can be:

* pixels: ``width x height`` at most ``max_pixels`` (by default twice Pillow's ``MAX_IMAGE_PIXELS``, where Pillow refuses),
  checked on the header, before anything is allocated for the image;
* payload: at most ``max_payload_ratio`` times the size of the kept bit-planes stored raw
  (plus a few bytes per segment), checked on the header, before the payload is read or sliced;
* time: at most ``min_seconds + max_seconds_per_megapixel x megapixels`` of wall-clock time,
  checked while decoding (between chunks of the entropy decoder and around the network).

``None`` switches a limit off. A decode that hits one raises :class:`TinyCodecError`
whose message names the limit and how to change it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import TinyCodecError

# Pillow's default (Image.MAX_IMAGE_PIXELS): 1024 * 1024 * 1024 // 4 // 3, a 250 MiB RGBA image.
# Copied rather than read from PIL so that a program that lowers Pillow's global does not
# silently change tinycodec's (say ``Limits(max_pixels=Image.MAX_IMAGE_PIXELS)`` to follow it).
PILLOW_MAX_IMAGE_PIXELS = 89_478_485
# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice it (DecompressionBombError); we refuse
# where Pillow refuses, so that a 100-megapixel photograph (which Pillow opens) can be coded.
DEFAULT_MAX_PIXELS = 2 * PILLOW_MAX_IMAGE_PIXELS

# Coder 1's probabilities come from counts n <= 4096 with a prior of 0.4, so no binary
# decision can cost more than -log2(0.4 / 4096.8) = 13.3 bits: an encoder never writes more
# than 13.3x the raw bits, whatever the image. 16 leaves room for the range coder's quantised
# probabilities; real files are 0.1x to 1.05x (coders 2 and 3, which store a plane raw where coding
# would not shrink it, never more than 1x plus the rounding of each segment to 32-bit words).
DEFAULT_MAX_PAYLOAD_RATIO = 16.0
SEGMENT_SLACK_BYTES = 16  # per segment: the range coder's final words and rounding to 32-bit words


@dataclass(frozen=True)
class Limits:
    """What one decode may cost. The defaults accept every file tinycodec's encoder can write
    for an image of up to ``max_pixels``, decoded on a slow core."""

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_payload_ratio: float | None = DEFAULT_MAX_PAYLOAD_RATIO
    # Normal files decode at 1-4 us per pixel on one core; files written with 8-element tiles
    # take up to ~200 us per pixel (the entropy coder's cost is mostly per tile and pass). The
    # default stops decodes that are broken, not merely slow: lower it where files come from
    # an encoder you control.
    max_seconds_per_megapixel: float | None = 500.0
    min_seconds: float = 5.0  # fixed costs of small files: loading and verifying the weights

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_payload_ratio", "max_seconds_per_megapixel"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Limits.{name} must be positive or None, not {value}")
        if not self.min_seconds >= 0:
            raise ValueError(f"Limits.min_seconds must be >= 0, not {self.min_seconds}")

    def check_pixels(self, width: int, height: int) -> None:
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise TinyCodecError(f"image of {width}x{height} pixels exceeds the limit of {self.max_pixels} pixels "
                                 "(Limits.max_pixels; tcdec --max-pixels)")

    def max_payload_bytes(self, raw_bits: int, segments: int) -> int | None:
        """Largest payload accepted for ``raw_bits`` kept bits coded in ``segments`` segments."""
        if self.max_payload_ratio is None:
            return None
        return int(self.max_payload_ratio * -(-raw_bits // 8)) + SEGMENT_SLACK_BYTES * segments

    def deadline(self, width: int, height: int) -> Deadline:
        if self.max_seconds_per_megapixel is None:
            return Deadline(None)
        return Deadline(self.min_seconds + self.max_seconds_per_megapixel * width * height / 1e6)


DEFAULT_LIMITS = Limits()


class Deadline:
    """A wall-clock budget; :meth:`check` raises once it is spent. ``Deadline(None)`` never expires."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._end = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self._end is not None and time.monotonic() > self._end:
            raise TinyCodecError(f"decoding stopped at the time limit of {self.seconds:.1f} s for this image "
                                 "(Limits.max_seconds_per_megapixel, Limits.min_seconds)")
