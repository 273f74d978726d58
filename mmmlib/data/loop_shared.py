"""What the exact (:mod:`~mmmlib.data.loops`) and expressive (:mod:`~mmmlib.data.expressive`) loop detectors share.

Both come from the GigaMIDI ``loops_nomml`` code: the bar and beat grid that miditok
gives a score, and the filter that drops sub-loops from the candidate cells of a
correlation matrix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator

    from symusic import Score, Track


def bars_and_beats(score: Score) -> tuple[np.ndarray, np.ndarray] | None:
    """Bar and beat ticks as the reference computes them, or None when bars are undefined.

    miditok already assumes 4/4 when the score has no time signature, which is what the
    reference obtains by appending one, so the caller's score is left untouched.

    :param score: tick-time score.
    :return: ``(bars_ticks, beats_ticks)`` int64 arrays, or None on a zero bar length.
    """
    # miditok imports torch: load it on first use, so that importing mmmlib.data stays light
    from miditok.utils import get_bars_ticks, get_beats_ticks

    try:
        bars = np.asarray(get_bars_ticks(score), dtype=np.int64)
    except ZeroDivisionError:  # ticks per bar rounds to 0: the reference gives up too
        return None
    return bars, np.asarray(get_beats_ticks(score), dtype=np.int64)


def filter_sub_loops(cells: dict[float, list[tuple[int, int]]]) -> list[tuple[int, int, float]]:
    """The reference sub-loop filter over matrix cells, shortest durations first.

    Chains of candidates where one ends at the cell row where the next starts are
    remembered (across durations) so that the same span is not kept twice.

    :param cells: candidate cells ``(row, column)`` per loop duration, each list in the
        order the reference lists them (row-major).
    :return: the kept cells as ``(row, column, duration)``, shortest durations first.
    """
    return list(iter_sub_loops(cells))


def iter_sub_loops(cells: dict[float, list[tuple[int, int]]]) -> Iterator[tuple[int, int, float]]:
    """:func:`filter_sub_loops` one cell at a time, for callers that may stop early."""
    repeats: dict[int, tuple[int, float]] = {}
    for duration in sorted(cells):
        chain_start, chain_end, chain_dur = 0, 0, 0.0
        for x, y in cells[duration]:
            if x in repeats and repeats[x][0] == y:
                continue
            if x == chain_end:
                chain_end = y
                chain_dur += duration
            else:
                if chain_start != chain_end:
                    repeats[chain_start] = (chain_end, chain_dur)
                chain_start, chain_end, chain_dur = x, y, duration
            yield x, y, duration


def note_set_runs(track: Track) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Consecutive notes with equal (start, end) form one note set (the reference's grouping).

    :return: ``(start, end, first, byte)``: every note's start and end tick, the index of each
        set's first note, and every note's pitch as 0..255 (int8 pitches, injective).
    """
    notes = track.notes.numpy()
    start = notes["time"].astype(np.int64)
    end = start + notes["duration"].astype(np.int64)
    is_first = np.ones(len(start), dtype=bool)
    is_first[1:] = (start[1:] != start[:-1]) | (end[1:] != end[:-1])
    byte = notes["pitch"].astype(np.int64) & 0xFF
    return start, end, np.flatnonzero(is_first), byte
