"""Running the networks window by window, so that no full-resolution float tensor ever exists.

A 100-megapixel image as float32 with the encoder's 15 feature channels would
take 6 GB; window by window the codec needs a few hundred MB whatever the
image size. Each window carries a *halo*: enough extra input around the part
it is responsible for that every output value in that part sees exactly the
inputs it sees in untiled inference (the networks' receptive field). Windows
at the image border touch the border, so the convolutions' edge padding falls
where it falls in untiled inference too. Tiled and untiled results are then
the same computation; they differ only where the convolution routines sum in
a different order (float rounding, about 1e-6; see tests/test_tiling.py).

Geometry only here (plus the two loops); the networks are run by runtime.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import runtime
from .zoo import WeightsEntry

# Pixels per window side, halo excluded. Measured on 1 CPU thread, 512 is as fast as any size (smaller
# windows stay in cache; 2048 was 1.5x slower) with at most about 100 MB of activations. The encoder's
# halo grows to 96 pixels at scale 256, so its windows are widened to 8 halos, keeping the recomputed
# border below 60% of a window.
DEFAULT_WINDOW = 512
_ENCODER_WINDOW_PER_HALO = 8


@dataclass(frozen=True)
class Span:
    """One window along one axis: it produces [start, stop) and reads [outer_start, outer_stop)."""

    start: int
    stop: int
    outer_start: int
    outer_stop: int


def spans(length: int, core: int, halo: int) -> list[Span]:
    """Cut [0, length) into windows of ``core`` units, each widened by ``halo`` on both sides (clipped)."""
    if core < 1 or halo < 0:
        raise ValueError("window core must be >= 1 and halo >= 0")
    return [Span(a, min(a + core, length), max(a - halo, 0), min(a + core + halo, length))
            for a in range(0, length, core)]


def encoder_halo(depth: int) -> int:
    """Input pixels a window needs on each side for exact encoder outputs, a multiple of 2**depth.

    One encoding block maps input rows [2a - 6, 2b + 6) to output rows [a, b):
    the 3x3 convolution after the 2x2 unshuffle reaches one output row (two
    input rows) further, the 9x9 convolution four input rows more.
    """
    halo = 0
    for _ in range(depth):
        halo = 2 * halo + 6
    step = 1 << depth
    return -(-halo // step) * step


def decoder_halo(depth: int) -> int:
    """Latent elements a window needs on each side for exact decoder outputs.

    One decoding block maps input rows [floor((a - 2) / 2) - 1, ...) to output
    rows [a, ...): the 5x5 convolution after the 2x shuffle reaches two output
    rows (one input row) further, the 3x3 convolution before it one more.
    """
    offset = 0  # first input row needed, relative to an output window starting at 0
    for _ in range(depth):
        offset = (offset - 2) // 2 - 1
    return -offset


def crop_replicated(rgb: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """rgb[rows, cols] of the image extended below and right by edge replication (the codec's padding).

    The window must start inside the image (windows start at multiples of
    2**k, and the padding is less than 2**k).
    """
    (y0, y1), (x0, x1) = rows, cols
    h, w = rgb.shape[:2]
    if not (0 <= y0 < h and 0 <= x0 < w):
        raise ValueError("window starts outside the image")
    crop = rgb[y0:y1, x0:x1]
    pad_h, pad_w = y1 - y0 - crop.shape[0], x1 - x0 - crop.shape[1]
    if pad_h or pad_w:
        crop = np.pad(crop, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return crop


def encode_latent(entry: WeightsEntry, scale: int, depth: int, rgb: np.ndarray,
                  window: int | None = None, **run: str) -> np.ndarray:
    """(H, W, 3) uint8 image -> (3, ceil(H / 2**k), ceil(W / 2**k)) float32 latent, window by window.

    The image is treated as padded to a multiple of 2**k by edge replication,
    without making that padded copy. ``window`` None: the default size.
    ``run``: backend, device, precision for :func:`tinycodec.runtime.run_encoder`.
    """
    step = 1 << depth
    height, width = rgb.shape[:2]
    lh, lw = -(-height // step), -(-width // step)
    halo = encoder_halo(depth)
    if window is None:
        window = max(DEFAULT_WINDOW, _ENCODER_WINDOW_PER_HALO * halo)
    core = max(step, window // step * step)
    latent = np.empty((3, lh, lw), dtype=np.float32)
    for rs in spans(lh * step, core, halo):
        for cs in spans(lw * step, core, halo):
            crop = crop_replicated(rgb, (rs.outer_start, rs.outer_stop), (cs.outer_start, cs.outer_stop))
            out = runtime.run_encoder(entry, scale, crop, **run)
            oy, ox = (rs.start - rs.outer_start) // step, (cs.start - cs.outer_start) // step
            ny, nx = (rs.stop - rs.start) // step, (cs.stop - cs.start) // step
            latent[:, rs.start // step : rs.stop // step, cs.start // step : cs.stop // step] = \
                out[:, oy : oy + ny, ox : ox + nx]
    return latent


def decode_windows(entry: WeightsEntry, scale: int, depth: int, latent_of, latent_size: tuple[int, int],
                   window: int | None = None, **run: str) -> Iterator[tuple[int, int, np.ndarray]]:
    """Run the decoder window by window; yields (y, x, uint8 RGB block) in pixels of the padded image.

    ``latent_of(rows, cols)`` returns the float32 latent of a window (rows and
    cols are (start, stop) in latent elements): the caller dequantises only
    what a window needs.
    """
    step = 1 << depth
    lh, lw = latent_size
    core = max(1, (window or DEFAULT_WINDOW) // step)
    halo = decoder_halo(depth)
    for rs in spans(lh, core, halo):
        for cs in spans(lw, core, halo):
            latent = latent_of((rs.outer_start, rs.outer_stop), (cs.outer_start, cs.outer_stop))
            rgb = runtime.run_decoder(entry, scale, np.ascontiguousarray(latent), **run)
            oy, ox = (rs.start - rs.outer_start) * step, (cs.start - cs.outer_start) * step
            ny, nx = (rs.stop - rs.start) * step, (cs.stop - cs.start) * step
            yield rs.start * step, cs.start * step, rgb[oy : oy + ny, ox : ox + nx]
