"""Where every latent of the pyramid lives, and in which order it is coded.

A pyramid of ``len(LEVEL_CHANNELS)`` levels: level ``l`` holds ``LEVEL_CHANNELS[l]`` grids of
``ceil(H / 2^l) x ceil(W / 2^l)`` integers (the image is padded to a multiple of ``2^(levels-1)`` first,
so every grid is exactly half its finer neighbour). Grids are coded from the coarsest level to the
finest, channel by channel; each grid in four polyphase passes over its 2x2 phases, in the order
(0,0), (1,1), (0,1), (1,0) (the scheme of JPEG AI's 4-stage context model): within a pass no element
depends on another, so a pass is one vectorised step, never a per-element loop.

An element's context (:data:`CONTEXT_FEATURES` integers) is

- its 8 neighbours in the same grid, each zero unless its phase was coded in an earlier pass;
- 5 values of the grid coded just before (its "parent": the previous channel of the same level, or the
  last grid of the next coarser level): the co-located element and its 4 direct neighbours;
- a one-hot of the pass (4) and the quality index (1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL_CHANNELS: tuple[int, ...] = (1, 2, 2, 1, 1, 1, 1)  # full resolution ... 1/64
LEVELS = len(LEVEL_CHANNELS)
ALIGN = 1 << (LEVELS - 1)  # images are padded to a multiple of this

# Polyphase passes: the (row, column) phase coded by each pass, in coding order.
PASS_PHASES: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (0, 1), (1, 0))
NEIGHBOURS: tuple[tuple[int, int], ...] = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
PARENT_TAPS: tuple[tuple[int, int], ...] = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
CONTEXT_FEATURES = len(NEIGHBOURS) + len(PARENT_TAPS) + len(PASS_PHASES) + 1

MAX_QUALITY = 100


@dataclass(frozen=True)
class Grid:
    level: int
    channel: int
    index: int  # position in coding order

    @property
    def stride(self) -> int:
        return 1 << self.level


def grids() -> list[Grid]:
    """Every grid, in coding order (coarsest level first)."""
    out: list[Grid] = []
    for level in reversed(range(LEVELS)):
        for c in range(LEVEL_CHANNELS[level]):
            out.append(Grid(level, c, len(out)))
    return out


GRIDS = grids()
LATENT_CHANNELS = sum(LEVEL_CHANNELS)


def parent_of(grid: Grid) -> Grid | None:
    return None if grid.index == 0 else GRIDS[grid.index - 1]


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN


def grid_shape(grid: Grid, height: int, width: int) -> tuple[int, int]:
    """Shape of a grid for an image of this size (padded as the codec pads it)."""
    ph, pw = padded_size(height, width)
    return ph >> grid.level, pw >> grid.level


def pass_of_phase() -> np.ndarray:
    """2x2 table: the pass that codes each phase."""
    table = np.zeros((2, 2), dtype=np.int64)
    for p, (a, b) in enumerate(PASS_PHASES):
        table[a, b] = p
    return table


def neighbour_available() -> np.ndarray:
    """(4 passes, 8 neighbours) bool: is that neighbour already decoded when the pass runs?"""
    order = pass_of_phase()
    out = np.zeros((len(PASS_PHASES), len(NEIGHBOURS)), dtype=bool)
    for p, (a, b) in enumerate(PASS_PHASES):
        for k, (di, dj) in enumerate(NEIGHBOURS):
            out[p, k] = order[(a + di) % 2, (b + dj) % 2] < p
    return out


def grid_shapes(height: int, width: int) -> list[tuple[int, int]]:
    return [grid_shape(g, height, width) for g in GRIDS]


def segment_elements(height: int, width: int, model: str | None = None) -> list[int]:
    """Latents in each segment of a file (one segment per grid), for the container's checks; the same for
    every model of the family."""
    return [gh * gw for gh, gw in grid_shapes(height, width)]
