"""Lossless coding of the kept bit-planes: context-adaptive binary range coding.

The quantised latent of one tile, ``(C, H, W)`` symbols with ``P`` kept planes,
is coded plane by plane, most significant first; each plane is one independent
range-coded segment (constriction's ``RangeEncoder``), so a prefix of the
segments decodes to the upper planes (progressive decoding).

Inside a plane, channel by channel, the elements are visited in polyphase
passes: in coders 1 and 2 four, positions (even, even), (odd, odd), (even, odd),
(odd, even); coder 3 splits the first of them again, twice (``_passes``). Each bit is coded with a
probability taken from adaptive counts of its context, and the context of a
bit is computed from what the decoder already knows:

* the weighted mean of the 8 neighbours' current reconstructions (their upper
  planes, plus this plane's bit for neighbours coded in earlier passes)
  compared with the midpoint of the element's own known interval: where the
  neighbours sit relative to the split point predicts the bit;
* the local activity ``|N - S| + |W - E|``, relative to the interval width:
  how far to trust that prediction;
* the pass class (first pass / diagonal pass / last two);
* for channels after the first, how the previous channel (already complete
  on this plane) deviated from its own neighbours at the same position.

Counts are adaptive: each plane starts from the previous plane's counts
scaled down to a weak prior (the first plane from nothing); they are updated
after each chunk of symbols (chunks grow from 16 to 4096 symbols so early
statistics are learnt fast while the loop stays vectorised), and halved when
they grow large so the model follows changing image content. Everything that decides a probability is
integer arithmetic plus exactly rounded float64 operations, so every machine and
every inference backend produces the same bitstream.

Coder 4 (the encoder's default, ``tinycodec/coder4.py``) codes each element's kept planes as one symbol
instead, one segment per tile, with this module's walk of three polyphase levels. Coders 1-3 share this walk; the file header names the one that wrote it
(``CODERS``). Coder 2 differs from coder 1 in two
ways, both for small tiles and low rates, where 1,980 contexts per plane
learn too slowly:

* a back-off prior: a context's estimate starts from the estimate of its
  coarse context (prediction and activity bins only, 60 per plane; counted
  after each pass) with the weight of up to ``BACKOFF_WEIGHT`` observations,
  instead of from 1/2;
* raw planes: a plane whose coded segment would not be shorter than the
  plane's bits packed as they are is stored packed (the segment's length
  says which), and leaves the statistics as they were. The low planes of a
  scale-64/256 latent are nearly random, and an adaptive coder that learnt
  skewed statistics on the planes above spends more than one bit per bit on them.

Coder 3, which ``tcenc --progressive`` writes, is coder 2 with three polyphase levels: the
first pass, a quarter of the plane coded with no neighbour known on its own
plane, becomes 1/64 of it, the rest coded from neighbours 4, 2 and 1 away. Its
chunk sizes carry over from pass to pass within a channel's plane, so that its ten
passes make fewer chunks (Python-level steps) than coder 2's four: 0.5-0.65x as many.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

import constriction

from .errors import TinyCodecError

BITS = 8
_N_PRED_BINS = 12  # 6 magnitudes x 2 signs
_N_ACT_BINS = 5
_N_HINTS = 11  # channel 0: none; channels 1, 2: 5 bins of the previous channel's residual
_N_COARSE = _N_PRED_BINS * _N_ACT_BINS  # coder 2's back-off context: context index % 60


@dataclass(frozen=True)
class _Pass:
    """One polyphase pass: positions (dy + stride * i, dx + stride * j), neighbours ``step`` away."""

    dy: int
    dx: int
    stride: int
    step: int
    pass_class: int  # part of the context: passes with different neighbour knowledge learn apart


@functools.lru_cache(maxsize=None)
def _passes(levels: int) -> tuple[_Pass, ...]:
    """The passes of one channel's plane, for ``levels`` polyphase levels.

    One level (coders 1 and 2): (even, even), (odd, odd), (even, odd), (odd, even),
    neighbours 1 away; classes 0 / 1 / 2 / 2. With more levels the first pass is split
    again, coarsest first: at level l (stride 2^(l+1), neighbours 2^l away) the
    positions (0, 0) of the coarsest level only, then the diagonal and the last two
    phases of every level, with classes 2l + 1 and 2l + 2. Why: the first pass has no
    neighbour on its own plane yet and cost twice the bits per bit of the others on the
    upper planes; split, only 1/4^levels of the plane is coded that blind.
    """
    out = [_Pass(0, 0, 2 ** levels, 2 ** (levels - 1), 0)]
    for level in range(levels - 1, -1, -1):
        stride, step = 2 ** (level + 1), 2 ** level
        out += [_Pass(step, step, stride, step, 2 * level + 1),
                _Pass(0, step, stride, step, 2 * level + 2), _Pass(step, 0, stride, step, 2 * level + 2)]
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _coarse_of(n_contexts: int) -> np.ndarray:
    """Each context's coarse (back-off) context: its index mod 60, its pred_bin and act_bin only."""
    coarse = np.arange(n_contexts, dtype=np.intp) % _N_COARSE
    coarse.flags.writeable = False  # shared by every tile coded with this many contexts
    return coarse

# Entropy-coder parameters shared by every coder. A file names its coder in the header, and
# every coder ever written stays decodable: never change a value here, add a coder instead.
PRIOR_COUNT = 0.4  # Krichevsky-Trofimov-like estimator: p1 = (n1 + a) / (n + 2a)
HALVE_AT = 1024.0  # counts are halved past this total (adaptivity)
FIRST_CHUNK = 16
CARRY_COUNT = 16.0  # prior weight a plane inherits from the plane above
MAX_CHUNK = 4096
BACKOFF_WEIGHT = 24.0  # coder 2: observations the coarse context's estimate counts as
_SMALL_CHUNK = 1024  # below this, probabilities and counts are gathered per symbol (speed only)

# What a range-coded segment of n bytes can carry: 8n bits of information plus the decoder's
# 64-bit state and a margin for the coder's 24-bit quantisation of the probabilities (an
# encoder's output is never shorter than the information it codes, less those). A segment
# whose decoded decisions carry more ran past its data: no encoder wrote it.
SEGMENT_SLACK_BITS = 96.0
SEGMENT_INFORMATION_MARGIN = 1.01


@dataclass(frozen=True)
class Coder:
    """What distinguishes one coder id from another (``format_spec.md``, "Entropy coder N")."""

    coder_id: int
    backoff: bool  # a context's estimate starts from its coarse context's, not from 1/2
    raw_planes: bool  # a plane that coding would not shrink is stored packed
    levels: int = 1  # polyphase levels of a plane's walk (_passes)
    carry_chunks: bool = False  # a pass's chunks start at the size the channel's previous pass reached

    @property
    def passes(self) -> tuple[_Pass, ...]:
        return _passes(self.levels)

    @property
    def pad(self) -> int:
        """Width of the edge-replicated frame around the grid: the farthest neighbour."""
        return 2 ** (self.levels - 1)

    @property
    def contexts_per_plane(self) -> int:
        return _N_HINTS * (1 + 2 * self.levels) * _N_COARSE

    @property
    def min_bits_per_decision(self) -> float:
        """The least information any one decision can carry: the cost of the likeliest outcome
        at its most skewed estimate.

        Before each chunk a context's count n is below max(HALVE_AT, MAX_CHUNK) (a chunk adds
        at most MAX_CHUNK, then anything over HALVE_AT is halved), and each outcome keeps the
        prior PRIOR_COUNT (plus at most BACKOFF_WEIGHT pseudo-counts with back-off), so neither
        outcome's probability falls below PRIOR_COUNT / (n + BACKOFF_WEIGHT + 2 PRIOR_COUNT).
        """
        n = max(HALVE_AT, MAX_CHUNK) + (BACKOFF_WEIGHT if self.backoff else 0.0) + 2 * PRIOR_COUNT
        return -math.log2(1.0 - PRIOR_COUNT / n)

    def min_segment_bytes(self, decisions: int) -> int:
        """The payload floor: the fewest bytes a segment coding ``decisions`` decisions can take.

        Half of the bound from :attr:`min_bits_per_decision`, so that a file refused by it is
        one no encoder can write, with room to spare; a raw plane is always longer.
        """
        bits = decisions * self.min_bits_per_decision / 2 / SEGMENT_INFORMATION_MARGIN - SEGMENT_SLACK_BITS
        return max(4, 4 * math.ceil(bits / 32))


# Coder 2's design and BACKOFF_WEIGHT were chosen on the latents of six training images (never
# Kodak): against coder 1 its segments are 0.5 / 1.6 / 3.6 / 6.7% shorter at scales 4 / 16 / 64 /
# 256 with 8 planes, 0.8 / 2.5 / 5.3 / 9.2% with 5, for about the same time.
# Coder 3 walks each plane in three polyphase levels instead of one (_passes); chosen on ideal code
# lengths of the same six training images' latents: 4.6 / 4.2 / 3.0 / 1.8% below coder 2 at scales 4 /
# 16 / 64 / 256 with two levels, 5.6 / 4.9 / 3.6 / 2.3% with three. Restarting the chunks at 16 in each
# of its 10 passes made decoding 1.4-2x slower than coder 2; carried over, 2.5-3.6x fewer chunks for
# 0.4-0.9% more bits (same latents), and about coder 2's speed (Kodak latents, coder alone: 1.06-1.08x).
CODERS = {1: Coder(1, backoff=False, raw_planes=False), 2: Coder(2, backoff=True, raw_planes=True),
          3: Coder(3, backoff=True, raw_planes=True, levels=3, carry_chunks=True),
          4: Coder(4, backoff=False, raw_planes=True, levels=3)}  # whole symbols: tinycodec/coder4.py
CODER_ID = 4  # what the encoder writes
WHOLE_SYMBOL_CODER_ID = 4  # tinycodec/coder4.py (its CODER_ID)
PROGRESSIVE_CODER_ID = 3  # what it writes when asked for a file that decodes plane by plane (tcenc --progressive)
# Scale levels and plane counts where coder 4's Laplace tables fit the few-valued symbols worse than coder 3's
# binary contexts (TC-4 latents at 3 planes: 3.7% more bytes on validation images, 2 planes: 4.3%); there the
# encoder writes coder 3, which is also no slower at so few planes.
FEW_PLANES = {4: 3}


def coder_for(scale: int, planes: int, progressive: bool = False) -> int:
    """The coder the encoder writes at this operating point: :data:`CODER_ID`, or coder 3 for progressive
    files and, while the default is coder 4, where coder 4 does not pay (:data:`FEW_PLANES`)."""
    if progressive:
        return PROGRESSIVE_CODER_ID
    if CODER_ID == WHOLE_SYMBOL_CODER_ID and planes <= FEW_PLANES.get(scale, 0):
        return PROGRESSIVE_CODER_ID
    return CODER_ID

_MODEL = constriction.stream.model.Categorical(perfect=False)


def _chunks(n: int, first: int = FIRST_CHUNK) -> tuple[list[slice], int]:
    """A pass of n decisions cut into chunks of first, 2 first, 4 first, ... (at most MAX_CHUNK).

    Also returns the size the next chunk would have had: the last chunk's if it was cut short,
    the doubled size otherwise (where a coder that carries chunk sizes starts its next pass).
    """
    out, start, size = [], 0, first
    while start < n:
        end = min(n, start + size)
        out.append(slice(start, end))
        if end - start < size:
            break
        start, size = end, min(2 * size, MAX_CHUNK)
    return out, size


def _magnitude_bin(x: np.ndarray) -> np.ndarray:
    """0 for x<1, 1 for x<2, 2 for x<4, 3 for x<8, 4 for x<16, 5 beyond (x >= 0, int)."""
    return (x >= 1).astype(np.int32) + (x >= 2) + (x >= 4) + (x >= 8) + (x >= 16)


def _neighbour_prediction(nb: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """12 x the weighted mean of the 8 neighbours (edges 2, corners 1); ``nb(dy, dx)`` gives a shifted view."""
    return 2 * (nb(-1, 0) + nb(1, 0) + nb(0, -1) + nb(0, 1)) + nb(-1, -1) + nb(-1, 1) + nb(1, -1) + nb(1, 1)


# Every quantity a context is binned from is a bounded integer (``mid2`` lies in
# 1..511), so the bins are read from tables made once per plane by the formulas
# they replace: one gather per element instead of a dozen comparisons.
_MAX_DIFF = 12 * 512  # |12 x own - prediction| < 12 x 512
_MAX_ACTIVITY = 2 * 512  # |N - S| + |W - E| < 2 x 512


@functools.lru_cache(maxsize=None)
def _bin_tables(plane: int) -> tuple[np.ndarray, np.ndarray]:
    """(prediction bin x _N_ACT_BINS, indexed by diff + _MAX_DIFF; activity bin, indexed by activity)."""
    half = 1 << (plane + 1)  # half the known interval, in the units of mid2
    diff = np.arange(-_MAX_DIFF, _MAX_DIFF + 1)
    # |diff| / (12 * half) in eighths; the bit splits the interval at the element's own midpoint.
    pred_bin = _magnitude_bin((np.abs(diff) * 8) // (12 * half)) * 2 + (diff >= 0)
    activity = np.arange(_MAX_ACTIVITY + 1)
    act_bin = np.minimum(_magnitude_bin(activity // half), _N_ACT_BINS - 1)
    return (pred_bin * _N_ACT_BINS).astype(np.intp), act_bin.astype(np.intp)  # intp: no casts when indexing


@functools.lru_cache(maxsize=None)
def _hint_table(plane: int) -> np.ndarray:
    """channel_hint's bin (1..5) of a residual, indexed by residual + _MAX_DIFF."""
    resid = np.arange(-_MAX_DIFF, _MAX_DIFF + 1)
    near = 12 * (1 << plane)  # half of the now-known interval, x12
    quarter = near // 4
    return (1 + (resid >= -near).astype(np.int32) + (resid >= -quarter) + (resid > quarter) + (resid > near)).astype(np.intp)


def _halve_large(total: np.ndarray, ones: np.ndarray) -> None:
    """Halve the counts of the contexts seen more than HALVE_AT times (in place): adaptivity."""
    big = total > HALVE_AT
    total[big] *= 0.5
    ones[big] *= 0.5


class _PlaneCoderState:
    """What encoder and decoder both know while walking the planes of one tile.

    ``mid2`` holds, per element, twice the midpoint of the value interval
    known so far (an integer at every stage, 256 before anything is known).
    Counts belong to the current plane; a new plane inherits them scaled down.
    """

    def __init__(self, shape: tuple[int, int, int], coder: Coder) -> None:
        self.shape = shape
        self.coder = coder
        # mid2 lives inside an edge-replicated frame (np.pad's "edge" mode), kept
        # current by refine, so that neighbour views need no copy of the grid.
        p = self.pad = coder.pad
        self.n_contexts = coder.contexts_per_plane
        self.coarse_of = _coarse_of(self.n_contexts)
        self.padded = np.full((shape[0], shape[1] + 2 * p, shape[2] + 2 * p), 256, dtype=np.int32)
        self.mid2 = self.padded[:, p:-p, p:-p]
        self.total = np.zeros(self.n_contexts)  # observations per context
        self.ones = np.zeros(self.n_contexts)
        # Coder 2's coarse contexts: counted once per pass, so that a chunk's probabilities cost
        # two gathers more than coder 1's (prior_ones / prior_total: the pseudo-counts a context's
        # own counts are added to, per context, made from its coarse context's at the start of a pass).
        self.coarse_total = np.zeros(_N_COARSE)
        self.coarse_ones = np.zeros(_N_COARSE)
        self.prior_ones = self.prior_total = None

    def save_counts(self) -> tuple[np.ndarray, ...]:
        return tuple(c.copy() for c in (self.total, self.ones, self.coarse_total, self.coarse_ones))

    def restore_counts(self, saved: tuple[np.ndarray, ...]) -> None:
        self.total, self.ones, self.coarse_total, self.coarse_ones = saved

    def start_plane(self) -> None:
        # Contexts mean the same on every plane (where the neighbours sit relative
        # to the split point), so a plane starts from the previous plane's
        # statistics, scaled down to a weak prior of at most CARRY_COUNT.
        for total, ones in ((self.total, self.ones), (self.coarse_total, self.coarse_ones)):
            factor = np.minimum(1.0, CARRY_COUNT / np.maximum(total, 1.0))
            total *= factor
            ones *= factor

    def channel_hint(self, plane: int, channel: int) -> np.ndarray:
        """Per position of ``channel``, the hint its next channel's bits are coded with.

        Latent channels are strongly correlated (|r| of 0.7 to 0.9 measured on
        Kodak), so where this channel came out above or below what its
        neighbours predicted, the next channel tends to as well (or the
        opposite way; the counts learn which). Called once the channel's
        plane is complete.
        """
        padded, p = self.padded[channel], self.pad
        h, w = self.shape[1:]
        resid = 12 * self.mid2[channel] - _neighbour_prediction(
            lambda oy, ox: padded[p + oy : p + oy + h, p + ox : p + ox + w])
        hint = _hint_table(plane)[resid + _MAX_DIFF]
        return hint + 5 * (channel % 2)  # channel 0 gives hints 1..5, channel 1 gives 6..10

    def contexts(self, plane: int, walk: _Pass, channel: int,
                 hint: np.ndarray | None) -> tuple[tuple[int, slice, slice], np.ndarray]:
        """Positions of one pass of one channel and the context index of each of its bits."""
        dy, dx, stride, step = walk.dy, walk.dx, walk.stride, walk.step
        where = (channel, slice(dy, None, stride), slice(dx, None, stride))
        own = self.mid2[where]
        ph, pw = own.shape
        padded = self.padded[channel]

        def nb(oy: int, ox: int) -> np.ndarray:  # the neighbours ``step`` away in direction (oy, ox)
            y0, x0 = self.pad + dy + oy * step, self.pad + dx + ox * step
            return padded[y0 : y0 + stride * (ph - 1) + 1 : stride, x0 : x0 + stride * (pw - 1) + 1 : stride]

        pred_table, act_table = _bin_tables(plane)
        diff = _neighbour_prediction(nb) - 12 * own
        activity = np.abs(nb(-1, 0) - nb(1, 0)) + np.abs(nb(0, -1) - nb(0, 1))
        ctx = pred_table[diff + _MAX_DIFF] + act_table[activity]
        ctx += walk.pass_class * _N_COARSE
        if hint is not None:
            ctx += hint[where[1:]] * (self.n_contexts // _N_HINTS)
        return where, ctx.ravel()

    def start_pass(self) -> None:
        if self.coder.backoff:
            # The coarse estimate weighs as much as the evidence behind it, at most BACKOFF_WEIGHT
            # observations: with none yet (a tile's first pass) this is coder 1's prior.
            coarse_p1 = (self.coarse_ones + PRIOR_COUNT) / (self.coarse_total + 2 * PRIOR_COUNT)
            weight = np.minimum(BACKOFF_WEIGHT, self.coarse_total)
            self.prior_ones = (weight * coarse_p1 + PRIOR_COUNT)[self.coarse_of]
            self.prior_total = (weight + 2 * PRIOR_COUNT)[self.coarse_of]

    def end_pass(self, ctx: np.ndarray, bits: np.ndarray) -> None:
        if self.coder.backoff:
            coarse = self.coarse_of[ctx]
            self.coarse_total += np.bincount(coarse, minlength=_N_COARSE)
            self.coarse_ones += np.bincount(coarse, weights=bits, minlength=_N_COARSE)
            while self.coarse_total.max() > HALVE_AT:  # a pass can add many times HALVE_AT
                _halve_large(self.coarse_total, self.coarse_ones)

    def probabilities(self, ctx: np.ndarray) -> np.ndarray:
        """(n, 2) table of P(0), P(1) for each context in ``ctx``."""
        # The same float64 operations per element either way (so the same bits): a small
        # chunk gathers its contexts' counts, a large one gathers from the table of all contexts.
        small = ctx.size < _SMALL_CHUNK
        ones, total = (self.ones[ctx], self.total[ctx]) if small else (self.ones, self.total)
        if self.coder.backoff:  # p1 = (n1 + w q + a) / (n + w + 2a), q: the coarse context's p1
            prior_ones, prior_total = ((self.prior_ones[ctx], self.prior_total[ctx]) if small
                                       else (self.prior_ones, self.prior_total))
        else:  # p1 = (n1 + a) / (n + 2a)
            prior_ones, prior_total = PRIOR_COUNT, 2 * PRIOR_COUNT
        probs = np.empty((ones.size, 2), dtype=np.float64)
        probs[:, 1] = (ones + prior_ones) / (total + prior_total)
        np.subtract(1.0, probs[:, 1], out=probs[:, 0])
        return probs if small else np.take(probs, ctx, axis=0)

    def learn(self, ctx: np.ndarray, bits: np.ndarray) -> None:
        if ctx.size < _SMALL_CHUNK:
            self.total += np.bincount(ctx, minlength=self.n_contexts)
            self.ones += np.bincount(ctx, weights=bits, minlength=self.n_contexts)
        else:
            counts = np.bincount(ctx * 2 + bits, minlength=2 * self.n_contexts).reshape(-1, 2)
            self.total += counts[:, 0] + counts[:, 1]
            self.ones += counts[:, 1]
        if self.total.max() > HALVE_AT:  # once per chunk: a chunk adds at most MAX_CHUNK
            _halve_large(self.total, self.ones)

    def refine(self, where: tuple[int, slice, slice], plane: int, bits: np.ndarray) -> None:
        quarter = 1 << plane  # the interval halves: the midpoint moves by a quarter of it
        view = self.mid2[where]
        view += (bits.reshape(view.shape) * (2 * quarter) - quarter).astype(np.int32)
        frame, p = self.padded[where[0]], self.pad  # replicate the new edge values into the frame
        frame[:p, p:-p] = frame[p, p:-p]
        frame[-p:, p:-p] = frame[-p - 1, p:-p]
        frame[:, :p] = frame[:, p : p + 1]
        frame[:, -p:] = frame[:, -p - 1 : -p]


def min_segment_bytes(coder_id: int, decisions: int) -> int:
    """The payload floor of coder ``coder_id`` (4, a word, for a coder this tinycodec does not know)."""
    if coder_id == WHOLE_SYMBOL_CODER_ID:
        from . import coder4

        return coder4.min_segment_bytes(decisions)
    return CODERS[coder_id].min_segment_bytes(decisions) if coder_id in CODERS else 4


class SegmentBudget:
    """The information a segment can carry; :meth:`spend` raises once its decisions carry more.

    Catches a range decoder that runs past its data (constriction pads the data with zero words
    and decodes on): a 4-byte segment declared for millions of decisions is refused in its
    first chunks instead of being decoded to the end.
    """

    def __init__(self, length: int) -> None:
        self.left = (8.0 * length + SEGMENT_SLACK_BITS) * SEGMENT_INFORMATION_MARGIN

    def spend(self, probs: np.ndarray, bits: np.ndarray) -> None:
        """Charge -log2 P(decoded outcome) for each row of ``probs`` (P(0), P(1))."""
        self.left += float(np.log2(np.where(bits, probs[:, 1], probs[:, 0])).sum())
        if self.left < 0:
            raise TinyCodecError("corrupt .tcz payload: a segment's range decoder ran past its data")


def _raw_length(shape: tuple[int, int, int]) -> int:
    """Bytes of a raw plane: one bit per element, packed, padded with zero bits to 32-bit words."""
    return 4 * -(-(shape[0] * shape[1] * shape[2]) // 32)


def _pack_plane(plane_bits: np.ndarray) -> bytes:
    packed = np.packbits(plane_bits.astype(np.uint8).ravel())  # C order, most significant bit first
    return packed.tobytes().ljust(_raw_length(plane_bits.shape), b"\0")


def _unpack_plane(segment: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    n = shape[0] * shape[1] * shape[2]
    bits = np.unpackbits(np.frombuffer(segment, dtype=np.uint8))
    if bits[n:].any():  # one file, one encoding: padding is zero
        raise TinyCodecError("corrupt .tcz payload: raw bit-plane has non-zero padding")
    return bits[:n].reshape(shape).astype(np.int32)


def _refine_plane(state: _PlaneCoderState, plane: int, plane_bits: np.ndarray) -> None:
    """What coding a whole plane does to ``mid2``, for a raw plane (its counts stay as they were)."""
    for channel in range(state.shape[0]):
        state.refine((channel, slice(None), slice(None)), plane, plane_bits[channel])


def _walk_plane(state: _PlaneCoderState, plane: int,
                code: Callable[[np.ndarray, tuple[int, slice, slice], slice], np.ndarray]) -> None:
    """Visit every bit of one plane in coding order; ``code`` returns the bits of a chunk."""
    state.start_plane()
    hint = None
    for channel in range(state.shape[0]):
        first = FIRST_CHUNK
        for walk in state.coder.passes:
            where, ctx = state.contexts(plane, walk, channel, hint)
            state.start_pass()
            bits = np.empty(ctx.size, dtype=np.int32)
            chunks, reached = _chunks(ctx.size, first)
            if state.coder.carry_chunks:
                first = reached
            for chunk in chunks:
                c = ctx[chunk]
                bits[chunk] = code(state.probabilities(c), where, chunk)
                state.learn(c, bits[chunk])
            state.end_pass(ctx, bits)
            state.refine(where, plane, bits)
        if channel + 1 < state.shape[0]:
            hint = state.channel_hint(plane, channel)


def _coder(coder_id: int) -> Coder:
    if coder_id not in CODERS:
        raise ValueError(f"unknown entropy coder {coder_id}")
    return CODERS[coder_id]


def encode_tile(symbols: np.ndarray, planes: int, coder_id: int | None = None) -> list[bytes]:
    """Code a ``(C, H, W)`` uint8 array of values < 2**planes; one segment per plane, MSB first (coder 4: one
    segment). ``coder_id`` None: :data:`CODER_ID` as it is at the call."""
    if symbols.ndim != 3 or symbols.dtype != np.uint8:
        raise ValueError("symbols must be a (C, H, W) uint8 array")
    coder_id = CODER_ID if coder_id is None else coder_id
    if _coder(coder_id).coder_id == WHOLE_SYMBOL_CODER_ID:
        from . import coder4

        return coder4.encode_tile(symbols, planes)
    full = symbols.astype(np.int32) << (BITS - planes)
    state = _PlaneCoderState(symbols.shape, _coder(coder_id))
    raw_length = _raw_length(symbols.shape)
    segments = []
    for plane in range(BITS - 1, BITS - 1 - planes, -1):
        encoder = constriction.stream.queue.RangeEncoder()
        plane_bits = (full >> plane) & 1
        saved = state.save_counts() if state.coder.raw_planes else None
        pass_bits: dict[tuple, np.ndarray] = {}

        def code(probs, where, chunk):
            key = (where[0], where[1].start, where[2].start, where[1].step)
            if key not in pass_bits:
                pass_bits[key] = plane_bits[where].ravel()
            bits = pass_bits[key][chunk]
            encoder.encode(bits, _MODEL, probs)
            return bits

        _walk_plane(state, plane, code)
        segment = encoder.get_compressed().tobytes()
        if saved is not None and len(segment) >= raw_length:
            segment = _pack_plane(plane_bits)
            state.restore_counts(saved)  # mid2 is as the walk left it: the same bits
        segments.append(segment)
    return segments


def decode_tile(segments: Sequence[bytes], planes: int, shape: tuple[int, int, int],
                checkpoint: Callable[[], None] | None = None, coder_id: int | None = None) -> np.ndarray:
    """Inverse of :func:`encode_tile` for the first ``len(segments)`` planes.

    Returns uint8 values of the decoded planes only: ``symbols >> (planes - len(segments))``.
    ``checkpoint`` is called before every chunk of decisions (a time limit raises from it).
    Raises TinyCodecError for data that no encoder wrote (a segment that is not a whole
    number of 32-bit words, that the range decoder finds invalid, or, with coder 2, that is
    longer than its plane stored raw or a raw plane with non-zero padding); ValueError for
    arguments that do not fit together (and for an unknown coder id).
    """
    if not 1 <= planes <= BITS or not 0 <= len(segments) <= planes:
        raise ValueError(f"{len(segments)} segments for {planes} planes")
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"tile shape must be (C, H, W) with each >= 1, not {shape}")
    coder_id = CODER_ID if coder_id is None else coder_id
    if _coder(coder_id).coder_id == WHOLE_SYMBOL_CODER_ID:
        from . import coder4

        if len(segments) > 1:
            raise ValueError(f"{len(segments)} segments for one coder-4 tile")
        for segment in segments:
            if len(segment) % 4:
                raise TinyCodecError("corrupt .tcz payload: segment length is not a multiple of 4")
        return coder4.decode_tile(segments, planes, shape, checkpoint)
    state = _PlaneCoderState(shape, _coder(coder_id))
    raw_length = _raw_length(shape)
    for plane, segment in zip(range(BITS - 1, -1, -1), segments):
        if len(segment) % 4:
            raise TinyCodecError("corrupt .tcz payload: segment length is not a multiple of 4")
        if state.coder.raw_planes and len(segment) >= raw_length:
            if len(segment) > raw_length:
                raise TinyCodecError("corrupt .tcz payload: segment longer than its bit-plane stored raw")
            if checkpoint is not None:
                checkpoint()
            _refine_plane(state, plane, _unpack_plane(segment, shape))
            continue
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(segment, dtype=np.uint32))
        budget = SegmentBudget(len(segment))

        def code(probs, where, chunk):
            if checkpoint is not None:
                checkpoint()
            try:
                bits = decoder.decode(_MODEL, probs)
            except AssertionError as exc:  # constriction's word for "not a stream this model wrote"
                raise TinyCodecError(f"corrupt .tcz payload: {exc}") from None
            budget.spend(probs, bits)
            return bits

        _walk_plane(state, plane, code)
    decoded = len(segments)
    # mid2 = 2 * (value << (8 - decoded)) + 2**(8 - decoded) once ``decoded`` planes are known
    return ((state.mid2 >> (BITS + 1 - decoded)) if decoded else np.zeros(shape, np.int32)).astype(np.uint8)
