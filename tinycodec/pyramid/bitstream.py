"""Integer grids <-> one range-coded segment per grid, four vectorised passes per grid.

Encoder and decoder run the same loop (:func:`_passes`): for each pass, gather every element's context
from the grid decoded so far and from its parent grid, evaluate the fixed-point context model on all of them
at once (in row chunks, to bound memory), and code the pass with one constriction call per table in use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import constriction
import numpy as np

from . import fixedpoint, layout
from ..laplace import SegmentReader, TableCoder, table_index


GRID_DTYPE = np.int16  # values lie in [-127, 127]: 2 bytes per latent, not 8, on a 100-megapixel image
CHUNK_ELEMENTS = 1 << 17  # context features of at most this many elements at once (~10 MB)


def _phase_view(padded: np.ndarray, a: int, b: int, di: int, dj: int, shape: tuple[int, int]) -> np.ndarray:
    """Values at (i + di, j + dj) for the phase-(a, b) positions (i, j), from a grid zero-padded by 1."""
    h2, w2 = shape
    return padded[1 + a + di :: 2, 1 + b + dj :: 2][:h2, :w2]


def _pass_features(padded: np.ndarray, ppad: np.ndarray | None, parent_stride: int, p: int, q: int,
                   rows: slice) -> np.ndarray:
    """Context features of pass ``p``'s elements in phase rows ``rows``, from the grid and its parent, each
    zero-padded by one element (the grid's padding and its not-yet-decoded elements are zeros)."""
    a, b = layout.PASS_PHASES[p]
    h, w = padded.shape[0] - 2, padded.shape[1] - 2
    shape = (len(range(a, h, 2)), len(range(b, w, 2)))
    nrows = len(range(*rows.indices(shape[0])))
    feats = np.zeros((nrows, shape[1], layout.CONTEXT_FEATURES), dtype=np.float32)
    k = 0
    for di, dj in layout.NEIGHBOURS:
        feats[:, :, k] = _phase_view(padded, a, b, di, dj, shape)[rows]
        k += 1
    if ppad is not None:
        hp, wp = ppad.shape[0] - 2, ppad.shape[1] - 2
        for di, dj in layout.PARENT_TAPS:
            if parent_stride == 2:
                tap = ppad[1 + di : 1 + di + hp, 1 + dj : 1 + dj + wp][: shape[0], : shape[1]]
            else:
                tap = _phase_view(ppad, a, b, di, dj, shape)
            feats[:, :, k] = tap[rows]
            k += 1
    else:
        k += len(layout.PARENT_TAPS)
    feats[:, :, k + p] = 1
    feats[:, :, -1] = q
    return feats.reshape(-1, layout.CONTEXT_FEATURES)


def _passes(padded: np.ndarray, parent: np.ndarray | None, parent_stride: int, q: int,
            context: dict[str, np.ndarray]) -> Iterator[tuple[tuple[slice, slice], np.ndarray, np.ndarray]]:
    """Yield (positions in the unpadded grid, rounded means, table indices) per pass; the caller fills those
    positions of ``padded`` (the grid with a border of one zero) before resuming."""
    h, w = padded.shape[0] - 2, padded.shape[1] - 2
    ppad = None if parent is None else np.pad(parent, 1)
    for p, (a, b) in enumerate(layout.PASS_PHASES):
        ph, pw = len(range(a, h, 2)), len(range(b, w, 2))
        if ph == 0 or pw == 0:
            continue
        step = max(1, CHUNK_ELEMENTS // pw)
        means, tables = [], []
        for r0 in range(0, ph, step):
            feats = _pass_features(padded, ppad, parent_stride, p, q, slice(r0, min(ph, r0 + step)))
            mean, scale = fixedpoint.evaluate(context, feats)
            m, t = table_index(mean, scale)
            means.append(m)
            tables.append(t)
        yield (slice(a, None, 2), slice(b, None, 2)), np.concatenate(means), np.concatenate(tables)


def _parent(grids: list[np.ndarray], g: layout.Grid) -> tuple[np.ndarray | None, int]:
    pg = layout.parent_of(g)
    if pg is None:
        return None, 1
    return grids[pg.index], (2 if pg.level > g.level else 1)


def encode_grids(grids: list[np.ndarray], q: int, context: dict[str, np.ndarray], coder: TableCoder) -> list[bytes]:
    """Integer grids (coding order, each within +-LATENT_LIMIT) -> one segment per grid."""
    segments = []
    for g, y in zip(layout.GRIDS, grids):
        parent, stride = _parent(grids, g)
        padded = np.zeros((y.shape[0] + 2, y.shape[1] + 2), dtype=GRID_DTYPE)
        buffer = padded[1:-1, 1:-1]
        enc = constriction.stream.queue.RangeEncoder()
        for where, m, t in _passes(padded, parent, stride, q, context):
            values = y[where].reshape(-1).astype(np.int64)
            coder.encode(enc, values - m, t)
            buffer[where] = y[where]
        segments.append(enc.get_compressed().tobytes())
    return segments


def decode_grids(segments: list[bytes | None], shapes: list[tuple[int, int]], q: int,
                 context: dict[str, np.ndarray], coder: TableCoder,
                 check: Callable[[], None] = lambda: None) -> list[np.ndarray]:
    """Segments -> integer grids, in coding order.

    Every grid is the context of the next, so decoding stops at the first missing (``None``) segment: the
    result is the coarse-to-fine prefix that arrived.
    """
    grids: list[np.ndarray] = []
    for g, seg, shape in zip(layout.GRIDS, segments, shapes):
        if seg is None:
            break
        parent, stride = _parent(grids, g)
        padded = np.zeros((shape[0] + 2, shape[1] + 2), dtype=GRID_DTYPE)
        y = padded[1:-1, 1:-1]
        reader = SegmentReader(seg, coder, f"grid {g.index}")
        for where, m, t in _passes(padded, parent, stride, q, context):
            check()
            y[where] = reader.read(m, t).reshape(y[where].shape)
        reader.finish()
        grids.append(np.ascontiguousarray(y))
    return grids
