"""Discretised Laplace probability tables in integer arithmetic, and table-grouped range coding.

A latent ``y`` is coded as the residual ``r = y - m`` where ``m`` is the context model's mean rounded to an
integer; the table for ``r`` is chosen by (scale bin, eighth of the mean's fractional part): 64 x 8 tables over
``[-2 L, 2 L]`` (``L`` = LATENT_LIMIT). Tables are built from three Q30 integers per table (``rho = exp(-1/b)``,
and the two tail masses next to the mean), which the weights file carries, by integer multiplication and
shifts only: every machine builds the same tables, so encoder and decoder agree to the bit without trusting
any platform's ``exp``.

Within one polyphase pass every symbol's table is known before the pass is coded, so the pass is coded as one
constriction call per table that occurs (stable order by table index), not one call per element.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from .model import LATENT_LIMIT, LOG_SCALE_STEP, MEAN_UNITS, SCALE_BINS, SCALE_MIN

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


def build_tables(rho: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """(N_TABLES, ALPHABET) int64 masses; table index = scale_bin * MEAN_UNITS + frac_bin, symbol = r + 2L."""
    rho = rho.astype(np.int64)[:, None]  # (S, 1)
    powers = np.empty((SCALE_BINS, RESIDUAL_LIMIT), dtype=np.int64)  # rho^k, k = 0 .. 2L-1, Q30
    powers[:, 0] = ONE
    for k in range(1, RESIDUAL_LIMIT):
        powers[:, k] = (powers[:, k - 1] * rho[:, 0]) >> 30
    step = ONE - rho  # 1 - rho, Q30
    # P(r) for r >= 1: upper/2 * rho^(r-1) * (1 - rho); r <= -1: lower/2 * rho^(|r|-1) * (1 - rho).
    up = ((upper[:, :, None] * powers[:, None, :]) >> 30) * step[:, :, None] >> 31
    down = ((lower[:, :, None] * powers[:, None, :]) >> 30) * step[:, :, None] >> 31
    centre = ONE - (upper >> 1) - (lower >> 1)
    tables = np.concatenate([down[:, :, ::-1], centre[:, :, None], up], axis=2).reshape(N_TABLES, ALPHABET)
    tables = np.maximum(tables, 1)
    # Cap the largest mass so that it is at most (1 - 2^-GAP) of the total.
    peak = tables.max(axis=1)
    rest = tables.sum(axis=1) - peak
    cap = rest * ((1 << MAX_PROBABILITY_LOG2_GAP) - 1)
    where = np.argmax(tables, axis=1)
    tables[np.arange(N_TABLES), where] = np.minimum(peak, cap)
    return tables


class TableCoder:
    """Range-codes residuals with the tables; one constriction call per (pass, table that occurs)."""

    def __init__(self, tables: np.ndarray) -> None:
        self.tables = tables
        self._models: dict[int, object] = {}
        self._log2p: np.ndarray | None = None

    def model(self, t: int):
        m = self._models.get(t)
        if m is None:
            probs = self.tables[t].astype(np.float64)
            m = constriction.stream.model.Categorical(probs / probs.sum(), perfect=False)
            self._models[t] = m
        return m

    def information(self, residuals: np.ndarray, table: np.ndarray) -> float:
        """Bits of -log2 P of these residuals under their tables (the decoder's running-past-its-data check)."""
        if self._log2p is None:
            # constriction gives every symbol at least 2^-24, so no symbol costs more than 24 bits
            log2p = np.log2(self.tables) - np.log2(self.tables.sum(axis=1, keepdims=True))
            self._log2p = np.maximum(log2p, -float(CODER_PRECISION))
        return float(-self._log2p[table, residuals + RESIDUAL_LIMIT].sum())

    def encode(self, encoder, residuals: np.ndarray, table: np.ndarray) -> None:
        order = np.argsort(table, kind="stable")
        symbols = (residuals[order] + RESIDUAL_LIMIT).astype(np.int32)
        ts, starts = np.unique(table[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        for t, s, e in zip(ts.tolist(), starts.tolist(), ends.tolist()):
            encoder.encode(symbols[s:e], self.model(t))

    def decode(self, decoder, table: np.ndarray) -> np.ndarray:
        order = np.argsort(table, kind="stable")
        ts, starts = np.unique(table[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        out = np.empty(len(table), dtype=np.int64)
        for t, s, e in zip(ts.tolist(), starts.tolist(), ends.tolist()):
            out[order[s:e]] = decoder.decode(self.model(t), e - s)
        return out - RESIDUAL_LIMIT
