"""The soft-count correlation matrix of the expressive loop detector, without the matrix.

The expressive detector (:mod:`mmmlib.data.expressive`) compares every pair of elements of
a track (note sets and barlines in time order) and counts, in cell ``(i, j)`` of an
``n x n`` matrix ``C``, how many similar pairs run backwards along the diagonal from it,
a run being allowed to *start* only on a barline row::

    C[i, j] = C[i-1, j-1] + 1   if similar(i, j) and (C[i-1, j-1] > 0 or element i is a barline)
    C[i, j] = 0                 otherwise                                   (i < j)

Along a diagonal ``j = i + d`` that is: in each maximal stretch of similar pairs, the
run starts at the first barline row of the stretch and counts up to the end of the
stretch. So one pass over the similarity values of each diagonal gives everything the
detector reads from ``C``: the runs (their first cell and length), ``max(C)`` (the
longest run) and ``sum(C)`` (``L (L + 1) / 2`` per run of length ``L``), with O(n) memory
per diagonal instead of the reference's O(n^2) integers. Diagonals are handled a block at
a time, as ``(positions, diagonals)`` arrays from a callback (each detector mode brings its
own similarity), kept thin so that few cells fall past the end of the matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Cells per block of diagonals: bounds the memory of one step (a few arrays of this size).
BLOCK_CELLS = 1 << 22
THIN_BLOCK_CELLS = 1 << 16  # above this many cells, a block covers at most width / 4 diagonals

# similar(lag, count) -> bool array (n - lag + 1, count): cell [i, k] says whether elements
# i and i + lag + k are similar; it must be False wherever i + lag + k >= n (so the last row
# always is). Element by element is the cache-friendly order to compute it in (the partners
# of one element are contiguous); the engine transposes it once, into runs along diagonals.
SimilarBlock = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class SoftRuns:
    """What the detector reads from the soft-count matrix of one track."""

    size: int  # n, the matrix side (elements of the track)
    total: int  # sum of every cell of C
    peak: int  # max of C (0 when no run)
    rows: np.ndarray  # first cell of each run: row (a barline) ...
    cols: np.ndarray  # ... and column; runs sorted by (row, col), as np.where lists C == 1
    lengths: np.ndarray  # cells in each run (the value of C at its last cell)

    def loopability(self, alpha: float = 0.7, beta: float = 0.3) -> float:
        """``alpha * max(C) / n + beta * sum(C) / (n (n - 1) / 2)`` (0.0 below two elements).

        The float operations are those of the reference, in its order, so the value is the same bits.
        """
        if self.size < 2:
            return 0.0
        return alpha * (self.peak / self.size) + beta * (self.total / (self.size * (self.size - 1) / 2))


def next_barline(is_barline: np.ndarray) -> np.ndarray:
    """For each position ``p``, the first barline position ``>= p`` (``n`` when there is none); length ``n + 1``."""
    size = len(is_barline)
    positions = np.where(is_barline, np.arange(size), size)
    return np.minimum.accumulate(np.append(positions, size)[::-1])[::-1]


def soft_runs(is_barline: np.ndarray, similar: SimilarBlock, block_cells: int | None = None) -> SoftRuns:
    """Runs, ``max`` and ``sum`` of the soft-count matrix of ``len(is_barline)`` elements.

    :param is_barline: which elements may start a run (the barlines), in sequence order.
    :param similar: the similarity of a block of diagonals (``SimilarBlock``, see the module notes).
    :param block_cells: cells per block (default :data:`BLOCK_CELLS`).
    :return: the matrix summary.
    """
    size = len(is_barline)
    starts_at = next_barline(np.asarray(is_barline, dtype=bool))
    budget = block_cells or BLOCK_CELLS
    total, peak = 0, 0
    found_rows, found_cols, found_lengths = [], [], []
    lag = 1
    while lag < size:
        width = size - lag + 1  # positions on the longest diagonal of the block, plus a False
        count = min(size - lag, max(1, budget // width))
        if count * width > THIN_BLOCK_CELLS:  # a block wastes count^2 / 2 cells past the end: keep it thin
            count = min(count, max(1, width // 4))
        # one diagonal per row, each ending with a False: stretches of similar cells never span two rows
        flat = np.ascontiguousarray(np.asarray(similar(lag, count), dtype=bool).T).reshape(-1)
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # rises and falls alternate
        if len(flat) and flat[0]:
            change = np.concatenate([[0], change])
        rise, fall = change[0::2], change[1::2]
        first = rise % width
        origin = starts_at[first]  # the run of a stretch starts at its first barline
        stop = fall - rise + first
        has_run = origin < stop
        length = (stop - origin)[has_run]
        if len(length):
            total += int(np.sum(length * (length + 1) // 2))
            peak = max(peak, int(length.max()))
            found_rows.append(origin[has_run])
            found_cols.append(origin[has_run] + lag + rise[has_run] // width)
            found_lengths.append(length)
        lag += count
    rows = np.concatenate(found_rows) if found_rows else np.zeros(0, np.int64)
    cols = np.concatenate(found_cols) if found_cols else np.zeros(0, np.int64)
    lengths = np.concatenate(found_lengths) if found_lengths else np.zeros(0, np.int64)
    order = np.lexsort((cols, rows))
    return SoftRuns(size, total, peak, rows[order], cols[order], lengths[order])


def partners(values: np.ndarray, lag: int, count: int, fill) -> np.ndarray:
    """``values[i + lag + k]`` at ``[i, k]`` for ``i <= n - lag``, ``k < count``, padded with ``fill``: a read-only view."""
    width = len(values) - lag + 1
    padded = np.concatenate([values, np.full(count, fill, dtype=values.dtype)])
    return np.lib.stride_tricks.sliding_window_view(padded, count)[lag:lag + width]


def outside(size: int, lag: int, count: int) -> np.ndarray:
    """Cells ``[i, k]`` of a block past the end of the sequence (``i + lag + k >= size``), for callbacks without a sentinel."""
    return np.arange(size - lag + 1)[:, None] >= (size - lag - np.arange(count))[None, :]


def gather_pairs(table: np.ndarray, ids: np.ndarray, lag: int, count: int) -> np.ndarray:
    """``table[ids[i], ids[i + lag + k]]`` at ``[i, k]`` for a block, shape ``(len(ids) - lag + 1, count)``.

    Past the end the partner id is ``len(table) - 1``: give the table a last row and column
    that make those cells False (a *sentinel* id, used by no element). The partners of one
    element share its table row, which stays in cache.

    :param table: a square table indexed by the ids, sentinel last.
    :param ids: one id per element (int64: numpy indexes with it without a conversion),
        ``0 <= id < len(table) - 1``.
    """
    width = len(ids) - lag + 1
    index = (ids[:width] * len(table))[:, None] + partners(ids, lag, count, len(table) - 1)
    return np.take(table.reshape(-1), index, mode="clip")  # in range: "clip" only skips the checks
