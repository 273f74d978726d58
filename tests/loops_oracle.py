"""Test oracle for :mod:`mmmlib.data.loops`: the GigaMIDI loop detector, restated literally.

Same steps and data structures as the reference ``loops_nomml`` (GigaMIDI repository):
NoteSet objects, the full ``n x n`` int16 correlation matrix filled cell by cell, the
candidate dictionary, the sub-loop filter, the walk down each diagonal and the
"loop exists" comparison, with every quirk left in. It is O(n^2) in Python and memory:
minutes and gigabytes on long piano performances. Use it only to check the fast code.

The one knob the reference has two published versions of, the ``- 1`` at the end of
``get_duration_beats``, is ``duration_offset`` (same option as the fast code).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from miditok.utils import get_bars_ticks, get_beats_ticks
from symusic import TimeSignature

from mmmlib.data.loops import Loop, LoopOptions

if TYPE_CHECKING:
    from collections.abc import Sequence

    from symusic import Score, Track


class NoteSet:
    """Pitches sounding with the same start and end ticks; a barline when empty and instant."""

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.duration = end - start
        self.pitches: set[int] = set()

    def is_barline(self) -> bool:
        return self.start == self.end and len(self.pitches) == 0

    def __eq__(self, other: object) -> bool:  # time is ignored: only duration and pitches
        return isinstance(other, NoteSet) and self.duration == other.duration and self.pitches == other.pitches

    __hash__ = None


def note_sets(track: Track, bars_ticks: Sequence[int]) -> list[NoteSet]:
    """Consecutive notes with equal (start, end) as sets, plus one barline per bar, by start."""
    sets: list[NoteSet] = []
    for note in track.notes:
        if not sets or sets[-1].start != note.start or sets[-1].end != note.end:
            sets.append(NoteSet(note.start, note.end))
        sets[-1].pitches.add(note.pitch)
    sets += [NoteSet(tick, tick) for tick in bars_ticks]
    sets.sort(key=lambda s: s.start)  # stable: sets come before the barline of their tick
    return sets


def correlation(sets: Sequence[NoteSet]) -> np.ndarray:
    """The Hsu et al. matrix: runs of matching sets along diagonals, starting at barlines."""
    size = len(sets)
    corr = np.zeros((size, size), dtype=np.int16)
    for j in range(1, size):
        if sets[0] == sets[j] and sets[0].is_barline():
            corr[0, j] = 1
    for i in range(1, size - 1):
        for j in range(i + 1, size):
            if sets[i] == sets[j]:
                if corr[i - 1, j - 1] == 0 and not sets[i].is_barline():
                    continue
                corr[i, j] = corr[i - 1, j - 1] + 1
    return corr


def duration_beats(start: int, end: int, beats: Sequence[int], offset: int) -> float:
    """The reference beat count between two ticks, bugs included (see mmmlib.data.loops)."""
    previous = first_in = last_in = after = None
    for index, tick in enumerate(beats):
        if first_in is None and tick >= start:
            first_in, previous = index, max(index - 1, 0)
        elif last_in is None and tick == end:
            last_in = after = index
        elif last_in is None and tick > end:
            last_in, after = max(index - 1, 0), index
    if after is None:
        after = last_in + beats[-1] - beats[-2]  # TypeError, as in the reference
    length_before = beats[first_in] - beats[previous]
    num_before = (beats[first_in] - beats[previous]) / length_before if length_before > 0 else 0
    length_after = beats[after] - beats[last_in]
    num_after = (beats[after] - beats[end]) / length_after if length_after > 0 else 0  # beats[tick]!
    return float(last_in - first_in + num_before + num_after + offset)


def filter_sub_loops(cells: dict[float, list[tuple[int, int]]]) -> list[tuple[int, int, float]]:
    """The reference sub-loop filter, verbatim in behaviour."""
    repeats: dict = {}
    final = []
    for duration in sorted(cells):
        curr_start, curr_end, curr_dur = 0, 0, 0
        for start, end in cells[duration]:
            if start in repeats and repeats[start][0] == end:
                continue
            if start == curr_end:
                curr_end = end
                curr_dur += duration
            else:
                if curr_start != curr_end:
                    repeats[curr_start] = (curr_end, curr_dur)
                curr_start, curr_end, curr_dur = start, end, duration
            final.append((start, end, duration))
    return final


def loop_exists(kept: list[list[NoteSet]], loop: list[NoteSet], min_rep_beats: float) -> int | None:
    """-1: a shorter copy of a kept loop; i: kept loop i is a shorter copy; None: new."""
    num_compared = int(round(min_rep_beats))
    for i, other in enumerate(kept):
        if all(loop[k] == other[k] for k in range(num_compared)):
            return -1 if len(loop) < len(other) else i
    return None


def valid_loops(sets: list[NoteSet], corr: np.ndarray, beats: Sequence[int],
                opts: LoopOptions) -> list[tuple[int, int, float, float]]:
    """Candidates of the matrix, filtered as the reference does: (start, end, beats, density)."""
    cells: dict[float, list[tuple[int, int]]] = {}
    for x, y in zip(*np.where(corr == opts.min_rep_notes + 1), strict=True):
        start_x, start_y = x - corr[x, y] + 1, y - corr[x, y] + 1
        beats_num = round(duration_beats(sets[start_x].start, sets[start_y].start, beats,
                                         opts.duration_offset), 2)
        if opts.max_beats >= beats_num >= opts.min_beats:
            cells.setdefault(beats_num, []).append((x, y))
    kept: list[list[NoteSet]] = []
    kept_bp: list[tuple[int, int, float, float]] = []
    size = corr.shape[0]
    for x, y, beats_num in filter_sub_loops(cells):
        while x + 1 < size and y + 1 < size and corr[x + 1, y + 1] > corr[x, y]:
            x, y = x + 1, y + 1
        begin, end = x - corr[x, y] + 1, y - corr[x, y] + 1
        start_tick, end_tick = sets[begin].start, sets[end].start
        raw = duration_beats(start_tick, end_tick, beats, opts.duration_offset)
        if raw < opts.min_rep_beats or all(len(s.pitches) == 0 for s in sets[begin:end]):
            continue
        loop = sets[begin:end + 1]
        density = len([s for s in loop if s.start != s.end]) / beats_num
        if density < opts.min_loop_note_density:
            continue
        found = loop_exists(kept, loop, opts.min_rep_beats)
        if found is None:
            kept.append(loop)
            kept_bp.append((start_tick, end_tick, beats_num, density))
        elif found > 0:  # the reference's test: a match with loop 0 is dropped, not replaced
            kept[found] = loop
            kept_bp[found] = (start_tick, end_tick, beats_num, density)
    return kept_bp


def detect_loops(score: Score, **options) -> list[Loop]:
    """Same entry point as :func:`mmmlib.data.loops.detect_loops`, the slow literal way."""
    opts = LoopOptions(**options)
    if len(score.time_signatures) == 0:
        score = score.copy()  # the reference appends to the caller's score; we do not
        score.time_signatures.append(TimeSignature(0, 4, 4))
    try:
        bars = np.array(get_bars_ticks(score))
    except ZeroDivisionError:
        return []
    beats = np.array(get_beats_ticks(score))
    loops = []
    for idx, track in enumerate(score.tracks):
        if not opts.min_notes_per_track <= len(track.notes) <= opts.max_notes_per_track:
            continue
        track_bars = bars[: np.nonzero(bars > track.end())[0][0]] if any(bars > track.end()) else bars
        track_beats = beats[: np.nonzero(beats > track.end())[0][0]] if any(beats > track.end()) else beats
        if len(track_bars) > opts.max_bars_per_track:
            continue
        sets = note_sets(track, track_bars)
        for start, end, beats_num, density in valid_loops(sets, correlation(sets), track_beats, opts):
            loops.append(Loop(idx, int(start), int(end), beats_num, density))
    return loops
