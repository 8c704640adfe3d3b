"""Where the shallow family's latents live: y (M channels at 1/16) and z (Z channels at 1/64), one segment each.

The image is padded (edge replication) to a multiple of :data:`ALIGN`; z is coded first (segment 0), then y
(segment 1), channel-major, row by row; every element of y is coded in one pass, since its probability depends
on z alone.
"""

from __future__ import annotations

LATENT_CHANNELS = 160  # M: y at 1/16 resolution
HYPER_CHANNELS = 64  # Z: z at 1/64
HYPER_HIDDEN = 80
SYNTHESIS_CHANNELS = 28  # C: the 1/4-resolution stage of the synthesis
ANALYSIS_CHANNELS = 128
ANCHOR_QUALITIES = (0.0, 25.0, 50.0, 75.0, 100.0)
MAX_QUALITY = 100
ALIGN = 64  # image sides are padded to a multiple of this (z is at 1/64)


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN


def latent_shape(height: int, width: int) -> tuple[int, int, int]:
    ph, pw = padded_size(height, width)
    return LATENT_CHANNELS, ph // 16, pw // 16


def hyper_shape(height: int, width: int) -> tuple[int, int, int]:
    ph, pw = padded_size(height, width)
    return HYPER_CHANNELS, ph // 64, pw // 64


def segment_elements(height: int, width: int) -> list[int]:
    """Latents in each segment: z, then y."""
    (c, h, w), (cz, hz, wz) = latent_shape(height, width), hyper_shape(height, width)
    return [cz * hz * wz, c * h * w]
