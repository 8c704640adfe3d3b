"""Integer latents <-> two range-coded segments: z under a per-channel Laplace, then y under the hyperprior.

Every element of a segment has its table before the segment is coded (z's from the quality, y's from the
decoded z through the integer hyper-synthesis), so each segment is one pass: one constriction call per
table in use, whatever the image size.
"""

from __future__ import annotations

import constriction
import numpy as np

from ..laplace import SegmentReader, TableCoder, table_index
from . import fixedpoint

LATENT_DTYPE = np.int16  # values lie in [-127, 127]


def z_tables(hyper: dict[str, np.ndarray], quality: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Table index of every element of z (zero mean, one scale per channel and quality)."""
    bins = hyper["quality.z_scale_bin"][quality]
    _, tables = table_index(np.zeros(shape[0], dtype=np.int64), bins)
    return np.broadcast_to(tables[:, None, None], shape).reshape(-1)


def y_model(hyper: dict[str, np.ndarray], kz: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """(rounded means, table indices) of every element of y, flattened channel-major."""
    mean, scale = fixedpoint.entropy_parameters(hyper, kz, quality)
    m, t = table_index(mean.reshape(-1), scale.reshape(-1))
    return m, t


def encode_latents(kz: np.ndarray, k: np.ndarray, quality: int, hyper: dict[str, np.ndarray],
                   coder: TableCoder) -> list[bytes]:
    """z (Z, h, w) and y (M, 4h, 4w) integers within +-LATENT_LIMIT -> [z segment, y segment]."""
    segments = []
    for values, (means, tables) in ((kz, (0, z_tables(hyper, quality, kz.shape))),
                                    (k, y_model(hyper, kz, quality))):
        enc = constriction.stream.queue.RangeEncoder()
        coder.encode(enc, values.reshape(-1).astype(np.int64) - means, tables)
        segments.append(enc.get_compressed().tobytes())
    return segments


def decode_latents(segments: list[bytes | None], z_shape: tuple[int, int, int], y_shape: tuple[int, int, int],
                   quality: int, hyper: dict[str, np.ndarray], coder: TableCoder) -> tuple[np.ndarray, np.ndarray, bool]:
    """Segments -> (z, y, y decoded). A file cut before y's segment gives y's predicted means: a preview."""
    reader = SegmentReader(segments[0], coder, "the hyper-latent segment")
    kz = reader.read(np.zeros(1, dtype=np.int64), z_tables(hyper, quality, z_shape)).reshape(z_shape)
    reader.finish()
    means, tables = y_model(hyper, kz, quality)
    if segments[1] is None:
        return kz, means.reshape(y_shape), False
    reader = SegmentReader(segments[1], coder, "the latent segment")
    k = reader.read(means, tables).reshape(y_shape)
    reader.finish()
    return kz, k, True

