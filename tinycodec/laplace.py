"""Discretised Laplace probability tables in integer arithmetic, and table-grouped range coding.

A latent ``y`` is coded as the residual ``r = y - m`` where ``m`` is the context model's mean rounded to an
integer; the table for ``r`` is chosen by (scale bin, eighth of the mean's fractional part): 64 x 8 tables over
``[-2 L, 2 L]`` (``L`` = LATENT_LIMIT). Tables are built from three Q30 integers per table (``rho = exp(-1/b)``,
and the two tail masses next to the mean), which the weights file carries, by integer multiplication and
shifts only: every machine builds the same tables, so encoder and decoder agree to the bit without trusting
any platform's ``exp``.

Within one polyphase pass every symbol's table is known before the pass is coded, so the pass is coded as one
constriction call per table that occurs (stable order by table index), not one call per element
(:func:`encode_grouped` / :func:`decode_grouped`, shared with TinyCompress's entropy coder 4, which builds the
same tables over a wider alphabet, ``limit`` 255).
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from .errors import TinyCodecError


# A latent's model: mean in units of 1/MEAN_UNITS, scale as an index into a log-spaced table.
MEAN_UNITS = 8
SCALE_BINS = 64
SCALE_MIN = 0.04
SCALE_MAX = 40.0
LOG_SCALE_STEP = math.log(SCALE_MAX / SCALE_MIN) / (SCALE_BINS - 1)
LATENT_LIMIT = 127  # integer latents are clipped to [-LATENT_LIMIT, LATENT_LIMIT]

ONE = 1 << 30
RESIDUAL_LIMIT = 2 * LATENT_LIMIT
ALPHABET = 2 * RESIDUAL_LIMIT + 1
N_TABLES = SCALE_BINS * MEAN_UNITS
CODER_PRECISION = 24  # bits of constriction's quantised probabilities (its Categorical default)
# No symbol gets more than 1 - 2^-10 of the probability: every coded element costs at least
# MIN_BITS_PER_ELEMENT bits, which gives the format a floor on payload bytes per declared pixel.
MAX_PROBABILITY_LOG2_GAP = 10
MIN_BITS_PER_ELEMENT = -math.log2(1 - 2.0**-MAX_PROBABILITY_LOG2_GAP)


def table_constants() -> dict[str, np.ndarray]:
    """The Q30 constants the tables are built from (computed once with float exp; stored in the weights file)."""
    scales = SCALE_MIN * np.exp(np.arange(SCALE_BINS) * LOG_SCALE_STEP)
    frac = (np.arange(MEAN_UNITS) - MEAN_UNITS // 2) / MEAN_UNITS  # -1/2 ... 3/8
    rho = np.round(ONE * np.exp(-1.0 / scales)).astype(np.int64)
    upper = np.round(ONE * np.exp(-(0.5 - frac[None, :]) / scales[:, None])).astype(np.int64)
    lower = np.round(ONE * np.exp(-(0.5 + frac[None, :]) / scales[:, None])).astype(np.int64)
    return {"entropy.rho": rho, "entropy.upper": upper, "entropy.lower": lower}


def build_tables(rho: np.ndarray, upper: np.ndarray, lower: np.ndarray, limit: int = RESIDUAL_LIMIT) -> np.ndarray:
    """(N_TABLES, 2 limit + 1) int64 masses; table index = scale_bin * MEAN_UNITS + frac_bin, symbol = r + limit.

    The pyramid family codes residuals within +-RESIDUAL_LIMIT (the default); masses do not depend on ``limit``
    except through the cap on the largest one, which is taken against the whole table's other masses.
    """
    rho = rho.astype(np.int64)[:, None]  # (S, 1)
    powers = np.empty((SCALE_BINS, limit), dtype=np.int64)  # rho^k, k = 0 .. limit-1, Q30
    powers[:, 0] = ONE
    for k in range(1, limit):
        powers[:, k] = (powers[:, k - 1] * rho[:, 0]) >> 30
    step = ONE - rho  # 1 - rho, Q30
    # P(r) for r >= 1: upper/2 * rho^(r-1) * (1 - rho); r <= -1: lower/2 * rho^(|r|-1) * (1 - rho).
    up = ((upper[:, :, None] * powers[:, None, :]) >> 30) * step[:, :, None] >> 31
    down = ((lower[:, :, None] * powers[:, None, :]) >> 30) * step[:, :, None] >> 31
    centre = ONE - (upper >> 1) - (lower >> 1)
    tables = np.concatenate([down[:, :, ::-1], centre[:, :, None], up], axis=2).reshape(N_TABLES, 2 * limit + 1)
    tables = np.maximum(tables, 1)
    # Cap the largest mass so that it is at most (1 - 2^-GAP) of the total.
    peak = tables.max(axis=1)
    rest = tables.sum(axis=1) - peak
    cap = rest * ((1 << MAX_PROBABILITY_LOG2_GAP) - 1)
    where = np.argmax(tables, axis=1)
    tables[np.arange(N_TABLES), where] = np.minimum(peak, cap)
    return tables


def table_index(mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rounded mean m, table index) from a fixed-point mean (1/MEAN_UNITS) and scale bin."""
    m = (mean + MEAN_UNITS // 2) // MEAN_UNITS
    frac = mean - MEAN_UNITS * m + MEAN_UNITS // 2  # 0 .. 7
    return m, scale * MEAN_UNITS + frac


def categorical(masses: np.ndarray):
    """constriction's lazy categorical model of integer masses (float64 division: exactly rounded everywhere)."""
    probs = masses.astype(np.float64)
    return constriction.stream.model.Categorical(probs / probs.sum(), perfect=False)


def _groups(keys: np.ndarray) -> tuple[np.ndarray, list[int], list[int], list[int]]:
    """Stable order by key, and each distinct key with the [start, end) of its run in that order."""
    small = len(keys) and -(1 << 15) <= keys.min() and keys.max() < (1 << 15)
    order = np.argsort(keys.astype(np.int16) if small else keys, kind="stable")  # int16: numpy's radix sort
    ordered = keys[order]
    # Runs of equal keys in the sorted keys (np.unique would sort them again).
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))) if len(ordered) else ordered[:0]
    ends = np.append(starts[1:], len(order))
    return order, ordered[starts].tolist(), starts.tolist(), ends.tolist()


def encode_grouped(encoder, symbols: np.ndarray, keys: np.ndarray, model) -> int:
    """Code ``symbols`` (int32 alphabet indices) with one constriction call per distinct key, keys in increasing
    order, symbols of one key in their given order; ``model(key)`` gives the key's model. Returns the calls made."""
    order, ts, starts, ends = _groups(keys)
    ordered = symbols[order]
    for t, s, e in zip(ts, starts, ends):
        encoder.encode(ordered[s:e], model(t))
    return len(ts)


def decode_grouped(decoder, keys: np.ndarray, model) -> np.ndarray:
    """Inverse of :func:`encode_grouped`: the alphabet indices (int32) in the order of ``keys``."""
    order, ts, starts, ends = _groups(keys)
    out = np.empty(len(keys), dtype=np.int32)
    for t, s, e in zip(ts, starts, ends):
        out[order[s:e]] = decoder.decode(model(t), e - s)
    return out


class TableCoder:
    """Range-codes residuals with the tables; one constriction call per (pass, table that occurs)."""

    def __init__(self, tables: np.ndarray) -> None:
        self.tables = tables
        self._models: dict[int, object] = {}
        self._log2p: np.ndarray | None = None

    def model(self, t: int):
        m = self._models.get(t)
        if m is None:
            m = self._models[t] = categorical(self.tables[t])
        return m

    def information(self, residuals: np.ndarray, table: np.ndarray) -> float:
        """Bits of -log2 P of these residuals under their tables (the decoder's running-past-its-data check)."""
        if self._log2p is None:
            # constriction's quantised probability of a symbol is at most p + 2^-24 (each symbol gets its share
            # of the leftover plus at least one unit): -log2(p + 2^-24) never exceeds what it really costs
            p = self.tables / self.tables.sum(axis=1, keepdims=True)
            self._log2p = np.log2(p + 2.0**-CODER_PRECISION)
        return float(-self._log2p[table, residuals + RESIDUAL_LIMIT].sum())

    def encode(self, encoder, residuals: np.ndarray, table: np.ndarray) -> None:
        encode_grouped(encoder, (residuals + RESIDUAL_LIMIT).astype(np.int32), table, self.model)

    def decode(self, decoder, table: np.ndarray) -> np.ndarray:
        return decode_grouped(decoder, table, self.model).astype(np.int64) - RESIDUAL_LIMIT


SEGMENT_SLACK_BITS = 96  # the coder's final state words
SEGMENT_INFORMATION_MARGIN = 1.01  # constriction's 24-bit probabilities differ slightly from the tables


class SegmentReader:
    """Decodes one range-coded segment pass by pass, refusing what no encoder could have written.

    The information decoded cannot exceed what the segment holds: a decoder that ran past its data
    (constriction pads with zero words and decodes on) is stopped at the pass where it happens.
    """

    def __init__(self, segment: bytes, coder: TableCoder, what: str) -> None:
        self.decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(segment, dtype=np.uint32))
        self.coder = coder
        self.what = what
        self.budget = (8.0 * len(segment) + SEGMENT_SLACK_BITS) * SEGMENT_INFORMATION_MARGIN

    def read(self, means: np.ndarray, tables: np.ndarray) -> np.ndarray:
        """The values (``means`` + decoded residuals, int64) of one pass, each within +-LATENT_LIMIT."""
        try:
            residuals = self.coder.decode(self.decoder, tables)
        except AssertionError:  # constriction's word for a stream no encoder could have written
            raise TinyCodecError(f"corrupt .tcz file: {self.what} is not a valid range-coded stream") from None
        self.budget -= self.coder.information(residuals, tables)
        if self.budget < 0:
            raise TinyCodecError(f"corrupt .tcz file: {self.what}'s range decoder ran past its data")
        values = means + residuals
        if np.abs(values).max(initial=0) > LATENT_LIMIT:
            raise TinyCodecError(f"corrupt .tcz file: {self.what} decodes out of range")
        return values

    def finish(self) -> None:
        if not self.decoder.maybe_exhausted():
            raise TinyCodecError(f"corrupt .tcz file: {self.what} has data left after its last element")

