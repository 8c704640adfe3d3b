"""Entropy coder 4: each latent element's kept planes as one symbol, coded with table-grouped range coding.

A tile's symbols ``v`` (``(C, H, W)``, values < 2**P) form one segment. Channel by channel, the elements are
visited in coder 3's ten polyphase passes (``entropy._passes(3)``: a 1/64 grid first, then neighbours 4, 2, 1
away). Before a pass, everything that decides its probabilities is computed in numpy from elements already
coded, for all of the pass's elements at once:

* ``mu8``, eight times the weighted mean of the known neighbours (8 of them, edges 2, corners 1; elements
  outside the tile or not yet coded do not count), rounded; the middle of the range where none is known;
* a context: the pass class (7), an activity bin (8: the mean |a - b| over opposite pairs of known
  neighbours) and a hint (25: channel 0 none, channels 1 and 2 the sign and size of the previous channel's
  residual ``8 v - mu8`` at the same position, each channel its own 12);
* per context, adaptive integer statistics (count, sum of |residual|, sum of residual) with a back-off to the
  coarse context (class, activity), updated after each pass: they give the context a bias, added to
  ``mu8``, and a scale bin (the table whose mean |residual| is nearest to the context's);
* the table: the pyramid family's integer-built discretised Laplace tables (``tinycodec.laplace``), 64 scale
  bins x 8 eighths of the mean, over residuals -255 .. 255 of the rounded mean ``c``. Where the table's
  support reaches past 0 or 2**P - 1 its slice over the possible values ``[-c, 2**P - 1 - c]`` is used, so
  no probability is spent on impossible values (what makes few planes cheap).

Each pass is then coded with one constriction call per table that occurs (``laplace.encode_grouped``). To
keep those few, the mean's eighths are used only by narrow tables (K <= FRAC_MAX_K) and of the wider scale
bins only every SCALE_STRIDE-th: about 1,000-1,400 calls for a 256 x 256 tile at 5-8 planes, against
coder 3's hundreds of thousands of binary decisions in chunks. The
probabilities come from integers and exactly rounded float64 operations, and the tables from the Q30
constants stored in ``data/coder4_laplace.npz``: every machine writes the same bytes.

A segment that would not be shorter than the symbols stored as they are (``P`` bits each, packed) is stored
packed, as coder 2 does per plane; the length tells which.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import constriction
import numpy as np

from .errors import TinyCodecError
from . import laplace

CODER_ID = 4
LEVELS = 3  # coder 3's polyphase walk
PAD = 1 << (LEVELS - 1)  # farthest neighbour
LIMIT = 255  # residuals -255 .. 255 cover every pair of 8-bit values
N_CLASSES = 2 * LEVELS + 1
N_ACT = 8
HINT_BINS = 12  # 6 magnitudes x 2 signs
N_HINTS = 1 + 2 * HINT_BINS
N_COARSE = N_CLASSES * N_ACT
N_CONTEXTS = N_HINTS * N_COARSE
MEAN_UNITS = laplace.MEAN_UNITS
# Never change these: a file names its coder, and every coder ever written stays decodable.
BACKOFF = 32  # observations the coarse context's estimate counts as, at most
HALVE_AT = 1 << 14  # statistics are halved past this count (adaptivity)
TAIL_LOG2 = 8  # a table is sliced to the possible values where its mass outside [-K, K] exceeds 2^-8
EDGE_STEPS = 8  # within K of an end, the rounded mean is kept to K / 8 (fewer tables, each coded in one call)
# Fewer distinct tables per pass, so fewer constriction calls (about 60% fewer at 5-8 planes, for about 0.3%
# more bytes on validation latents): the mean's eighths only where K <= FRAC_MAX_K, and of the scale bins
# with K > STRIDE_FROM_K only every SCALE_STRIDE-th.
FRAC_MAX_K = 6
SCALE_STRIDE = 4
STRIDE_FROM_K = 4
_NEIGHBOURS = ((-1, 0, 2), (1, 0, 2), (0, -1, 2), (0, 1, 2), (-1, -1, 1), (-1, 1, 1), (1, -1, 1), (1, 1, 1))
_PAIRS = ((0, 1), (2, 3), (4, 7), (5, 6))  # opposite neighbours
_CONSTANTS = Path(__file__).resolve().parent / "data" / "coder4_laplace.npz"


@functools.lru_cache(maxsize=None)
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(masses (512, 511), boundaries of mean |residual| between the scale bins in use, support K per scale
    bin, the scale bins in use)."""
    with np.load(_CONSTANTS) as c:
        tables = laplace.build_tables(c["rho"], c["upper"], c["lower"], LIMIT)
    r = np.abs(np.arange(-LIMIT, LIMIT + 1, dtype=np.int64))
    centred = tables[MEAN_UNITS // 2 :: MEAN_UNITS]  # frac 0 of every scale bin
    mean_abs = (centred * r).sum(axis=1) / centred.sum(axis=1)  # integers, one exactly rounded division
    # The narrowest tables are capped (MAX_PROBABILITY_LOG2_GAP), which puts their mean |r| above the next
    # ones': made non-decreasing, every mean |r| below a bin's picks the narrowest table that reaches it.
    mean_abs = np.maximum.accumulate(mean_abs)
    # K: the smallest k with the mass beyond +-k at most 2^-TAIL_LOG2 of every frac bin's table.
    total = tables.sum(axis=1, keepdims=True)
    outside = total - np.stack([tables[:, LIMIT - k : LIMIT + k + 1].sum(axis=1) for k in range(LIMIT + 1)], axis=1)
    ok = (outside << TAIL_LOG2) <= total
    support = ok.argmax(axis=1).reshape(-1, MEAN_UNITS).max(axis=1)
    # The scale bins in use: all of the narrow ones, every SCALE_STRIDE-th wider one (their scales are ~12%
    # apart: a neighbour's table costs well under 1% of a symbol's bits, and each bin in use is a call per pass).
    used = np.flatnonzero((support <= STRIDE_FROM_K) | (np.arange(len(support)) % SCALE_STRIDE == 0))
    used = np.unique(np.append(used, len(support) - 1))
    # Boundaries halfway between neighbouring used bins' mean |residual| (in value units).
    bounds = (mean_abs[used[:-1]] + mean_abs[used[1:]]) * 0.5
    for a in (tables, bounds, support, used):
        a.flags.writeable = False
    return tables, bounds, support, used


class _Models:
    """constriction models by key: < 512 a whole table (residual + 255), else a table's slice (the value)."""

    def __init__(self, planes: int) -> None:
        self.width = 1 << planes
        self.cache: dict[int, object] = _MODEL_CACHE.setdefault(planes, {})

    def __call__(self, key: int):
        m = self.cache.get(key)
        if m is None:
            if len(self.cache) > 8192:  # bounded: a crafted file cannot grow it without end
                self.cache.clear()
            tables = _tables()[0]
            if key < laplace.N_TABLES:
                m = laplace.categorical(tables[key])
            else:
                table, c = divmod(key - laplace.N_TABLES, 256)
                m = laplace.categorical(tables[table, LIMIT - c : LIMIT - c + self.width])
            self.cache[key] = m
        return m


_MODEL_CACHE: dict[int, dict[int, object]] = {}


def _magnitude_bins(x: np.ndarray, top: int) -> np.ndarray:
    """0 for x < 1, 1 for x < 2, 2 for x < 4, ... at most ``top`` (x >= 0, int)."""
    # The bit length, from frexp's exponent: exact for integers below 2^53.
    return np.minimum(np.frexp(x.astype(np.float64))[1], top).astype(np.int64)


class _State:
    """What encoder and decoder both know while walking one tile."""

    def __init__(self, shape: tuple[int, int, int], planes: int) -> None:
        self.shape, self.planes = shape, planes
        c, h, w = shape
        # int32: every neighbour sum below is far below 2^31. Zero wherever not yet known (the frame too), so
        # weighted sums of values need no mask.
        self.values = np.zeros((c, h + 2 * PAD, w + 2 * PAD), dtype=np.int32)
        self.known = np.zeros(self.values.shape, dtype=np.int32)
        self.resid = np.zeros(shape, dtype=np.int64)  # 8 v - mu8 of every coded element (the next channel's hint)
        self.stats = np.zeros((3, N_CONTEXTS), dtype=np.int64)  # count, sum |8 v - m8|, sum (8 v - mu8)
        self.coarse = np.zeros((3, N_COARSE), dtype=np.int64)
        self.pooled = np.zeros((3, N_ACT), dtype=np.int64)  # activity bins over every pass class
        self.top8 = 8 * ((1 << planes) - 1)

    def walk(self, code: Callable[[np.ndarray, np.ndarray, np.ndarray, tuple], np.ndarray],
             checkpoint: Callable[[], None] | None) -> None:
        from .entropy import _passes

        for channel in range(self.shape[0]):
            for walk in _passes(LEVELS):
                where = (channel, slice(walk.dy, None, walk.stride), slice(walk.dx, None, walk.stride))
                if self.resid[where].size == 0:
                    continue
                if checkpoint is not None:
                    checkpoint()
                self._pass(channel, walk, where, code)

    def _pass(self, channel, walk, where, code) -> None:
        dy, dx, stride, step = walk.dy, walk.dx, walk.stride, walk.step
        ph, pw = self.resid[where].shape
        values, known = self.values[channel], self.known[channel]

        def nb(grid, oy, ox):
            y0, x0 = PAD + dy + oy * step, PAD + dx + ox * step
            return grid[y0 : y0 + stride * (ph - 1) + 1 : stride, x0 : x0 + stride * (pw - 1) + 1 : stride]

        vs = [nb(values, oy, ox) for oy, ox, _ in _NEIGHBOURS]
        ks = [nb(known, oy, ox) for oy, ox, _ in _NEIGHBOURS]
        num = (vs[0] + vs[1] + vs[2] + vs[3]) * 2 + (vs[4] + vs[5] + vs[6] + vs[7])  # _NEIGHBOURS' weights
        den = (ks[0] + ks[1] + ks[2] + ks[3]) * 2 + (ks[4] + ks[5] + ks[6] + ks[7])
        mu8 = np.where(den > 0, (16 * num + den) // np.maximum(2 * den, 1), self.top8 // 2).astype(np.int64)
        both = [ks[a] & ks[b] for a, b in _PAIRS]
        act = sum(np.abs(vs[a] - vs[b]) * m for (a, b), m in zip(_PAIRS, both))
        pairs = sum(both)
        act_bin = _magnitude_bins(act // np.maximum(pairs, 1), N_ACT - 1)
        coarse = walk.pass_class * N_ACT + act_bin
        ctx = coarse.copy()
        if channel:
            prev = self.resid[channel - 1][where[1:]]
            hint = _magnitude_bins(np.abs(prev) >> 3, HINT_BINS // 2 - 1) * 2 + (prev >= 0)
            ctx += (1 + hint + HINT_BINS * ((channel - 1) % 2)) * N_COARSE
        ctx, coarse, mu8 = ctx.ravel(), coarse.ravel(), mu8.ravel()

        bias, scale_bin = self._estimates()
        m8 = np.clip(mu8 + bias[ctx], 0, self.top8)
        c = (m8 + MEAN_UNITS // 2) // MEAN_UNITS
        k = _tables()[2][scale_bin[ctx]]
        # The mean's eighths matter for narrow tables only; a wider one is centred on the rounded mean c.
        frac = np.where(k <= FRAC_MAX_K, m8 - MEAN_UNITS * c + MEAN_UNITS // 2, MEAN_UNITS // 2)
        table = scale_bin[ctx] * MEAN_UNITS + frac
        top = (1 << self.planes) - 1
        edge = (c < k) | (c > top - k)
        # Near an end a table is sliced to the possible values, so it depends on c: c is kept exactly where K
        # is small (narrow tables, where the eighths of the mean matter), to K / EDGE_STEPS elsewhere (the
        # table's centre then stands for the mean), so that a pass needs few tables.
        q = np.maximum(k // EDGE_STEPS, 1)
        d = np.minimum(c, top - c)
        dq = np.where(q > 1, np.minimum(d // q * q + q // 2, top), d)
        cq = np.where(c <= top - c, dq, top - dq)
        tq = np.where(q > 1, scale_bin[ctx] * MEAN_UNITS + MEAN_UNITS // 2, table)
        keys = np.where(edge, laplace.N_TABLES + tq * 256 + cq, table)

        v = code(keys, edge, c, where)
        self.values[channel][PAD:-PAD, PAD:-PAD][where[1:]] = v.reshape(ph, pw)
        self.known[channel][PAD:-PAD, PAD:-PAD][where[1:]] = 1
        self.resid[where] = (8 * v - mu8).reshape(ph, pw)
        self._learn(ctx, coarse, np.abs(8 * v - m8), 8 * v - mu8)

    def _estimates(self) -> tuple[np.ndarray, np.ndarray]:
        """Per context: the bias (eighths, int64) and the scale bin, from the statistics so far."""
        # Three levels, each the prior of the next: an activity bin over all pass classes (from a mean |residual|
        # of a quarter of the range, weighing 1/16 observation), the coarse context (class, activity), the context.
        pn, pabs, psgn = (s.astype(np.float64) for s in self.pooled)
        est_abs = (pabs + 0.125 * (1 << self.planes)) / (pn + 0.0625)
        est_sgn = psgn / (pn + 0.0625)
        for level, size in ((self.coarse, N_COARSE), (self.stats, N_CONTEXTS)):
            n, sabs, ssgn = (s.astype(np.float64) for s in level)
            parent = np.arange(size) % (N_ACT if size == N_COARSE else N_COARSE)
            weight = (np.minimum(float(BACKOFF), prev_n) + 1.0)[parent] if size != N_COARSE else (
                np.minimum(float(BACKOFF), pn) + 0.0625)[parent]
            est_abs = (sabs + weight * est_abs[parent]) / (n + weight)
            est_sgn = (ssgn + weight * est_sgn[parent]) / (n + weight)
            prev_n = n
        bias = np.rint(est_sgn).astype(np.int64)
        _, bounds, _, used = _tables()
        scale_bin = used[np.searchsorted(bounds, est_abs / MEAN_UNITS)]
        return bias, scale_bin

    def _learn(self, ctx, coarse, abs8, sgn8) -> None:
        # The first pass (class 0, no neighbour known: residuals from the middle of the range) is not pooled.
        pooled = np.where(coarse >= N_ACT, coarse % N_ACT, N_ACT)
        for stats, index, size in ((self.stats, ctx, N_CONTEXTS), (self.coarse, coarse, N_COARSE),
                                   (self.pooled, pooled, N_ACT)):
            stats[0] += np.bincount(index, minlength=size)[:size]
            stats[1] += np.bincount(index, weights=abs8, minlength=size)[:size].astype(np.int64)  # exact below 2^53
            stats[2] += np.bincount(index, weights=sgn8, minlength=size)[:size].astype(np.int64)
            while stats[0].max() > HALVE_AT:
                big = stats[0] > HALVE_AT
                stats[:, big] >>= 1


# The reader's guard against a range decoder that runs past its data (constriction decodes on over zero
# words): a segment of n bytes cannot carry much more than 8 n bits. The information is counted with the
# integer masses, not constriction's 24-bit probabilities (within 1.3x of them either way), hence the 2.
BUDGET_MARGIN = 2.0
BUDGET_SLACK_BITS = 96.0


def min_segment_bytes(symbols: int) -> int:
    """The payload floor of a coder-4 segment: one word. Its likeliest symbol can be as likely as
    1 - 2^-24 (constriction's resolution), so no useful floor follows from the symbol count; the
    decoder's information budget (:class:`_Budget`) stops a segment that runs past its data."""
    return 4


@functools.lru_cache(maxsize=None)
def _information() -> tuple[np.ndarray, np.ndarray]:
    """log2(total / mass) of every whole table's symbols, (512, 511); prefix sums of the masses, (512, 512),
    for a slice's total in two look-ups."""
    tables = _tables()[0]
    cums = np.concatenate([np.zeros((len(tables), 1), np.int64), np.cumsum(tables, axis=1)], axis=1)
    return np.log2(cums[:, -1:] / tables), cums


class _Budget:
    """Bits a segment may still carry; :meth:`spend` raises once its decoded symbols carry more."""

    def __init__(self, length: int) -> None:
        self.left = BUDGET_MARGIN * (8.0 * length + BUDGET_SLACK_BITS)

    def spend(self, keys: np.ndarray, symbols: np.ndarray, width: int) -> None:
        info, cums = _information()
        full = keys < laplace.N_TABLES
        self.left -= float(info[keys[full], symbols[full]].sum())
        table, c = np.divmod(keys[~full] - laplace.N_TABLES, 256)  # sliced: the values LIMIT - c ...
        start = LIMIT - c
        mass = _tables()[0][table, start + symbols[~full]]
        self.left -= float(np.log2((cums[table, start + width] - cums[table, start]) / mass).sum())
        if self.left < 0:
            raise TinyCodecError("corrupt .tcz payload: a segment's range decoder ran past its data")


def raw_length(shape: tuple[int, int, int], planes: int) -> int:
    """Bytes of the symbols stored as they are: ``planes`` bits each, packed, padded to 32-bit words."""
    return 4 * -(-(planes * shape[0] * shape[1] * shape[2]) // 32)


def _pack(symbols: np.ndarray, planes: int) -> bytes:
    bits = (symbols.astype(np.uint8)[..., None] >> np.arange(planes - 1, -1, -1, dtype=np.uint8)) & 1
    return np.packbits(bits.ravel()).tobytes().ljust(raw_length(symbols.shape, planes), b"\0")


def _unpack(segment: bytes, shape: tuple[int, int, int], planes: int) -> np.ndarray:
    n = planes * shape[0] * shape[1] * shape[2]
    bits = np.unpackbits(np.frombuffer(segment, dtype=np.uint8))
    if bits[n:].any():  # one file, one encoding: padding is zero
        raise TinyCodecError("corrupt .tcz payload: raw segment has non-zero padding")
    weights = (1 << np.arange(planes - 1, -1, -1)).astype(np.int64)
    return (bits[:n].reshape(*shape, planes).astype(np.int64) @ weights).astype(np.uint8)


def encode_tile(symbols: np.ndarray, planes: int) -> list[bytes]:
    """A ``(C, H, W)`` uint8 array of values < 2**planes -> one segment."""
    state = _State(symbols.shape, planes)
    models = _Models(planes)
    encoder = constriction.stream.queue.RangeEncoder()
    values = symbols.astype(np.int64)

    def code(keys, edge, c, where):
        v = values[where].ravel()
        laplace.encode_grouped(encoder, np.where(edge, v, v - c + LIMIT).astype(np.int32), keys, models)
        return v

    state.walk(code, None)
    segment = encoder.get_compressed().tobytes()
    if len(segment) >= raw_length(symbols.shape, planes):
        segment = _pack(symbols, planes)
    return [segment]


def decode_tile(segments: Sequence[bytes], planes: int, shape: tuple[int, int, int],
                checkpoint: Callable[[], None] | None = None) -> np.ndarray:
    """Inverse of :func:`encode_tile`; no segment gives zeros (nothing known). Corrupt data: TinyCodecError."""
    if not segments:
        return np.zeros(shape, dtype=np.uint8)
    (segment,) = segments
    raw = raw_length(shape, planes)
    if len(segment) >= raw:
        if len(segment) > raw:
            raise TinyCodecError("corrupt .tcz payload: segment longer than its symbols stored raw")
        if checkpoint is not None:
            checkpoint()
        return _unpack(segment, shape, planes)
    state = _State(shape, planes)
    models = _Models(planes)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(segment, dtype=np.uint32))
    top = (1 << planes) - 1
    budget = _Budget(len(segment))

    def code(keys, edge, c, where):
        try:
            s = laplace.decode_grouped(decoder, keys, models).astype(np.int64)
        except AssertionError as exc:  # constriction's word for "not a stream this model wrote"
            raise TinyCodecError(f"corrupt .tcz payload: {exc}") from None
        budget.spend(keys, s, top + 1)
        v = np.where(edge, s, s + c - LIMIT)
        if v.size and (v.min() < 0 or v.max() > top):
            raise TinyCodecError("corrupt .tcz payload: a symbol decodes out of range")
        return v

    state.walk(code, checkpoint)
    if not decoder.maybe_exhausted():
        raise TinyCodecError("corrupt .tcz payload: data left after the tile's last symbol")
    return (state.values[:, PAD:-PAD, PAD:-PAD]).astype(np.uint8)
