"""The ``reference`` mode of the expressive loop detector: GigaMIDI v1.1's expressive loops, fast.

The reference (``Expressive music loop detector-NOMML12.ipynb`` in the GigaMIDI repository)
builds, per track, the note sets of ``loops_nomml`` (notes sharing start and end ticks)
interleaved with one barline per bar, fills an ``n x n`` soft-count matrix from the
similarity of every pair of elements (see :mod:`~mmmlib.data.soft_matrix`)::

    sim(a, b) = 0.5 Jaccard(pitches) + 0.3 (1 - |mean velocity a - mean velocity b| / 127)
                + 0.2 exp(-|start tick a - start tick b| / 0.05)

and keeps the cells where a run starts as loop candidates (``get_valid_loops`` with
``min_rep_notes = 0``, density 0). That is O(n^2) Python per track, twice. We compute
the same decisions ``sim >= tau`` for a block of diagonals at once:

- far from each other (start ticks more than :data:`NEAR_TICKS` apart) the time term is
  below half a unit in the last place of the rest of the sum, so the decision is
  ``0.5 p + 0.3 v >= tau``; both terms depend on the pair of pitch sets and the pair of
  mean velocities only, so they come from small tables (one table over *types*, pairs of
  pitch set and velocity, when there are few), with the reference's float operations in
  its order: every decision is the same bit for bit;
- the few pairs closer in time are computed exactly, time term included, and override
  the block.

Quirks kept on purpose (they are what GigaMIDI v1.1 holds): beats every
``ticks_per_quarter`` ticks from tick 0 to the score's end, whatever the time signature;
bars every 4th beat, not cut at the track's end; loop durations are beat-index
differences; the time term compares raw start ticks; with equal mean velocities any two
elements are similar at tau 0.3 (barlines always are), so runs start on almost every
barline; loops are compared to kept loops on their first element only (a barline), so a
track keeps at most one loop: the first candidate, shortest durations first, that is long
enough and holds a note. Through symusic, whose tracks have no ``channel``, the notebook's
drum test never fires: every track gets the melodic settings (see
:class:`~mmmlib.data.expressive.ExpressiveOptions` ``use_drum_settings``).

Not modelled: the notebook's failures for lack of memory (it allocates two ``n x n``
integer matrices per track, 3 GB each for a 20,000-note piano track), after which it
keeps the loops of the earlier tracks of the file only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmmlib.data.loop_shared import iter_sub_loops, note_set_runs
from mmmlib.data.soft_matrix import SoftRuns, gather_pairs, outside, partners, soft_runs

if TYPE_CHECKING:
    from symusic import Track

W_PITCH, W_VELOCITY, W_TIME, TIME_SCALE_TICKS = 0.5, 0.3, 0.2, 0.05
# Pairs of elements at most this many ticks apart get the exact time term: beyond it,
# 0.2 exp(-ticks / 0.05) < 2e-27, far below half an ulp of any sum that could reach tau.
NEAR_TICKS = 3
MAX_TYPE_TABLE = 8192  # one boolean table over (pitch set, velocity) types up to this many (64 MB) ...
TYPE_TABLE_GAIN = 2.5  # ... when it has this many times fewer cells than the matrix (it costs ~2x a cell)
MAX_FACTOR_TABLE = 2048  # else float tables over pitch sets and velocities, up to this many each


@dataclass
class Elements:
    """Note sets and barlines of one track, in the reference's order."""

    start: np.ndarray  # start tick (ascending)
    is_barline: np.ndarray  # bool
    words: np.ndarray  # (n, 2 or 4) uint64 pitch bitsets; zeros for barlines
    velocity: np.ndarray  # mean velocity of the notes with the element's (start, end); 0.0 if none
    cum_pitched: np.ndarray  # cum_pitched[i] = note sets among elements [0, i)
    cum_sounding: np.ndarray  # same, counting elements with end != start


def reference_grid(end_tick: int, ticks_per_quarter: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The reference's beats (every quarter from tick 0 to ``end_tick``) and bars (every 4th beat).

    :return: ``(bars, beats)`` int64 tick arrays, or None when ``ticks_per_quarter <= 0``
        (the reference fails on the whole file).
    """
    if ticks_per_quarter <= 0:
        return None
    beats = np.arange(0, end_tick + 1, ticks_per_quarter, dtype=np.int64)
    return beats[::4], beats


def track_elements(track: Track, bars: np.ndarray) -> Elements:
    """Group consecutive notes with equal (start, end) into sets, add the barlines, sort stably by start."""
    start, end, first, byte = note_set_runs(track)
    velocity = track.notes.numpy()["velocity"]
    num_words = 4 if len(byte) and byte.max() >= 128 else 2
    bit = np.left_shift(np.uint64(1), (byte & 63).astype(np.uint64))
    set_words = np.zeros((len(first), num_words), dtype=np.uint64)
    if len(first):
        for w in range(num_words):
            set_words[:, w] = np.bitwise_or.reduceat(np.where(byte >> 6 == w, bit, np.uint64(0)), first)
    # mean velocity over *all* notes with the same (start, end), as the reference matches them
    span = (start << 32) + (end - start)
    spans, span_of_note = np.unique(span, return_inverse=True)
    mean = np.bincount(span_of_note, weights=velocity.astype(np.float64)) / np.bincount(span_of_note)
    found = np.minimum(np.searchsorted(spans, bars << 32), max(len(spans) - 1, 0))
    bar_velocity = np.where(spans[found] == bars << 32, mean[found], 0.0) if len(spans) else np.zeros(len(bars))
    set_start, set_end = start[first], end[first]
    order = np.argsort(np.concatenate([set_start, bars]), kind="stable")
    is_barline = np.concatenate([np.zeros(len(first), bool), np.ones(len(bars), bool)])[order]
    sounding = np.concatenate([set_end != set_start, np.zeros(len(bars), bool)])[order]
    zero = np.zeros(1, dtype=np.int64)
    return Elements(
        start=np.concatenate([set_start, bars])[order],
        is_barline=is_barline,
        words=np.concatenate([set_words, np.zeros((len(bars), num_words), np.uint64)])[order],
        velocity=np.concatenate([mean[span_of_note[first]] if len(first) else np.zeros(0), bar_velocity])[order],
        cum_pitched=np.concatenate([zero, np.cumsum(~is_barline)]),
        cum_sounding=np.concatenate([zero, np.cumsum(sounding)]),
    )


def _pitch_table(words: np.ndarray) -> np.ndarray:
    """``0.5 * |A & B| / max(1, |A | B|)`` for every pair of the given pitch bitsets."""
    counts = np.bitwise_count(words).sum(axis=1).astype(np.int64)
    inter = np.zeros((len(words), len(words)), dtype=np.int64)
    for w in range(words.shape[1]):
        inter += np.bitwise_count(words[:, None, w] & words[None, :, w])
    union = counts[:, None] + counts[None, :] - inter
    return W_PITCH * (inter / np.maximum(1, union))


def _velocity_table(values: np.ndarray) -> np.ndarray:
    """``0.3 * (1 - |a - b| / 127)`` for every pair of the given mean velocities."""
    return W_VELOCITY * (1 - np.abs(values[:, None] - values[None, :]) / 127)


def _pair_base(el: Elements, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``0.5 p + 0.3 v`` of the element pairs ``(i, j)``, with the same float operations as the tables."""
    inter = sum(np.bitwise_count(el.words[i, w] & el.words[j, w]).astype(np.int64) for w in range(el.words.shape[1]))
    union = sum(np.bitwise_count(el.words[i, w] | el.words[j, w]).astype(np.int64) for w in range(el.words.shape[1]))
    velocity = 1 - np.abs(el.velocity[i] - el.velocity[j]) / 127
    return W_PITCH * (inter / np.maximum(1, union)) + W_VELOCITY * velocity


def _direct_base(el: Elements, lag: int, count: int) -> np.ndarray:
    """``0.5 p + 0.3 v`` of a block computed cell by cell (when the tables would be too large)."""
    width = len(el.start) - lag + 1
    inter = np.zeros((width, count), dtype=np.int64)
    union = np.zeros((width, count), dtype=np.int64)
    for w in range(el.words.shape[1]):
        mine, other = el.words[:width, w][:, None], partners(el.words[:, w], lag, count, 0)
        inter += np.bitwise_count(mine & other)
        union += np.bitwise_count(mine | other)
    velocity = 1 - np.abs(el.velocity[:width][:, None] - partners(el.velocity, lag, count, 0.0)) / 127
    return W_PITCH * (inter / np.maximum(1, union)) + W_VELOCITY * velocity


def unique_rows(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(words, axis=0, return_inverse=True)``, several times faster on a few uint64 columns."""
    order = np.lexsort(words.T[::-1])
    ordered = words[order]
    is_new = np.ones(len(words), dtype=bool)
    is_new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    ids = np.empty(len(words), dtype=np.int64)
    ids[order] = np.cumsum(is_new) - 1
    return ordered[is_new], ids


class _CellsByDuration(dict):
    """Candidate cells per duration for :func:`~mmmlib.data.loop_shared.iter_sub_loops`, each list built when read.

    The selection stops at the first loop kept: most durations are never read.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, duration: np.ndarray) -> None:
        super().__init__((round(d, 2), d) for d in np.unique(duration).tolist())
        self._cells = (rows, cols, duration)

    def __getitem__(self, key: float) -> list[tuple[int, int]]:
        rows, cols, duration = self._cells
        picked = duration == super().__getitem__(key)  # in row-major order, as np.where lists them
        return list(zip(rows[picked].tolist(), cols[picked].tolist(), strict=True))


def _with_sentinel(table: np.ndarray, fill) -> np.ndarray:
    """``table`` with one more row and column holding ``fill`` (see :func:`~mmmlib.data.soft_matrix.gather_pairs`)."""
    out = np.full((len(table) + 1, len(table) + 1), fill, dtype=table.dtype)
    out[:-1, :-1] = table
    return out


def similarity_blocks(el: Elements, tau: float):
    """The reference's ``sim >= tau`` for blocks of diagonals, for :func:`~mmmlib.data.soft_matrix.soft_runs`."""
    size = len(el.start)
    pitch_sets, pitch_id = unique_rows(el.words)
    velocities, velocity_id = np.unique(el.velocity, return_inverse=True)
    velocity_id = velocity_id.reshape(-1)
    types, type_id = np.unique(pitch_id * len(velocities) + velocity_id, return_inverse=True)
    type_id = type_id.reshape(-1).astype(np.int64)
    small = len(pitch_sets) <= MAX_FACTOR_TABLE and len(velocities) <= MAX_FACTOR_TABLE
    use_types = small and len(types) <= MAX_TYPE_TABLE and TYPE_TABLE_GAIN * len(types) ** 2 <= size**2
    if small:
        pitch_table = _with_sentinel(_pitch_table(pitch_sets), -np.inf)
        velocity_table = _with_sentinel(_velocity_table(velocities), 0.0)
        pitch_id, velocity_id = pitch_id.astype(np.int64), velocity_id.astype(np.int64)
    if use_types:
        tp, tv = types // len(velocities), types % len(velocities)
        type_table = np.zeros((len(types) + 1, len(types) + 1), dtype=bool)  # last row and column: past the end
        for lo in range(0, len(types), 256):  # blocks of rows bound the float temporaries
            rows = slice(lo, min(lo + 256, len(types)))
            type_table[rows, :-1] = pitch_table[tp[rows]][:, tp] + velocity_table[tv[rows]][:, tv] >= tau

    # pairs close in time: the exact sum, time term included (scalar exp, as the reference)
    num_near = np.maximum(np.searchsorted(el.start, el.start + NEAR_TICKS, side="right") - np.arange(size) - 1, 0)
    near_i = np.repeat(np.arange(size), num_near)
    near_j = near_i + 1 + np.arange(len(near_i)) - np.repeat(np.cumsum(num_near) - num_near, num_near)
    exp_of = np.array([np.exp(-ticks / TIME_SCALE_TICKS) for ticks in range(NEAR_TICKS + 1)])
    near_similar = _pair_base(el, near_i, near_j) + W_TIME * exp_of[el.start[near_j] - el.start[near_i]] >= tau
    near_lag = near_j - near_i

    def similar(lag: int, count: int) -> np.ndarray:
        if use_types:
            sim = gather_pairs(type_table, type_id, lag, count)
        elif small:
            base = gather_pairs(pitch_table, pitch_id, lag, count) + gather_pairs(velocity_table, velocity_id, lag, count)
            sim = base >= tau
        else:
            sim = (_direct_base(el, lag, count) >= tau) & ~outside(size, lag, count)
        inside = (near_lag >= lag) & (near_lag < lag + count)
        sim[near_i[inside], near_lag[inside] - lag] = near_similar[inside]
        return sim

    return similar


def beat_steps(start: np.ndarray, end: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """The notebook's ``get_duration_beats``: index of the last beat <= end minus that of the last beat <= start."""
    first = np.searchsorted(beats, start, side="right") - 1
    first = np.where(first < 0, 0, first)
    last = np.searchsorted(beats, end, side="right") - 1
    return np.where(last < 0, first, last).astype(np.float64) - first


def reference_track_loops(track: Track, bars: np.ndarray, beats: np.ndarray, tau: float, min_beats: float,
                          max_beats: float) -> tuple[list[tuple], SoftRuns] | None:
    """Loops of one track as the notebook finds them, and its soft-count matrix summary.

    :param min_beats: the notebook's ``min_beats``, which is also its ``min_rep_beats``
        (1.0 for melodic tracks, 0.5 for drums).
    :return: ``([(start_tick, end_tick, duration_beats, note_density)], runs)`` (at most one
        loop), or None when the track has fewer than two elements (the notebook skips it).
    """
    if round(min_beats) > 1:  # see below: more compared elements would need the set keys
        raise ValueError(f"min_beats must round to 0 or 1 (the notebook's rules), got {min_beats}")
    el = track_elements(track, bars)
    if len(el.start) < 2:
        return None
    runs = soft_runs(el.is_barline, similarity_blocks(el, tau))
    # every candidate cell (C == 1) is the first cell of a run: the reference's walk to the
    # run's end and back lands on it again, so the loop spans from its row to its column
    duration = beat_steps(el.start[runs.rows], el.start[runs.cols], beats)
    inside = (duration >= min_beats) & (duration <= max_beats)
    cells = _CellsByDuration(runs.rows[inside], runs.cols[inside], duration[inside])
    # A new loop is compared with the kept ones on its first round(min_rep_beats) <= 1
    # elements, and its first element is a barline (runs start there): every loop matches
    # kept loop 0, which the reference never replaces. The first loop kept is the only one.
    for begin, end, beats_num in iter_sub_loops(cells):
        if beats_num < min_beats or el.cum_pitched[end] == el.cum_pitched[begin]:
            continue
        density = int(el.cum_sounding[end + 1] - el.cum_sounding[begin]) / beats_num
        return [(int(el.start[begin]), int(el.start[end]), beats_num, density)], runs
    return [], runs
