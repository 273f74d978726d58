"""Test oracle for the ``reference`` mode of :mod:`mmmlib.data.expressive`, restated literally.

The GigaMIDI v1.1 expressive loops come from the notebook ``Expressive music loop
detector-NOMML12.ipynb`` (GigaMIDI repository): per track, note sets and barlines as in
``loops_nomml.note_set``, a *soft-count* correlation matrix filled cell by cell from a
similarity of two note sets, a loopability score from that matrix, and the loop filter of
``loops_nomml.corr_mat.get_valid_loops`` with relaxed settings and the notebook's own
``get_duration_beats`` (a beat-index difference). This file walks the same steps with the
same data structures, quirks included:

- beats every ``ticks_per_quarter`` ticks from 0 to the score's end (symusic scores have no
  ``beat_ticks()``, so the notebook always takes its fallback), bars every 4th beat, neither
  cut at the track's end;
- a track counts as drums only when ``getattr(track, "channel", None) == 9``: symusic tracks
  have no ``channel``, so as the notebook ran, every track is melodic (tau 0.3, 1-beat rules).
  ``use_drum_settings=True`` reads ``track.is_drum`` instead (tau 0.1, 0.5-beat rules);
- the time term compares the raw start ticks of the two sets.

Two shortcuts that change no result: velocity means are grouped with a dict instead of
rescanning every note for every set, and the matrix is filled once (the notebook fills it
twice, for the score and for the loops). It is O(n^2) Python: seconds on a pop song track,
hours on a long piano performance. Use it only to check the fast code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mmmlib.data.expressive import ExpressiveLoop, ExpressiveTrack
from tests.loops_oracle import filter_sub_loops, loop_exists, note_sets

if TYPE_CHECKING:
    from symusic import Score, Track

    from tests.loops_oracle import NoteSet

MELODIC = {"tau": 0.3, "min_rep_beats": 1.0, "min_beats": 1.0}
DRUMS = {"tau": 0.1, "min_rep_beats": 0.5, "min_beats": 0.5}
MAX_BEATS = 32.0


def similarity(a: NoteSet, b: NoteSet, vel_a: float, vel_b: float) -> float:
    """0.5 Jaccard(pitches) + 0.3 (1 - |mean velocity difference| / 127) + 0.2 exp(-|start difference| / 0.05)."""
    p = len(a.pitches & b.pitches) / max(1, len(a.pitches | b.pitches))
    v = 1 - abs(vel_a - vel_b) / 127
    t = np.exp(-abs(a.start - b.start) / 0.05)
    return 0.5 * p + 0.3 * v + 0.2 * t


def soft_count_matrix(sets: list[NoteSet], vels: list[float], tau: float) -> np.ndarray:
    """Runs of similar sets along the diagonals, each starting on a barline (row)."""
    size = len(sets)
    corr = np.zeros((size, size), dtype=int)
    for j in range(1, size):
        if similarity(sets[0], sets[j], vels[0], vels[j]) >= tau and sets[0].is_barline():
            corr[0, j] = 1
    for i in range(1, size - 1):
        for j in range(i + 1, size):
            if similarity(sets[i], sets[j], vels[i], vels[j]) >= tau and (corr[i - 1, j - 1] > 0 or sets[i].is_barline()):
                corr[i, j] = corr[i - 1, j - 1] + 1
    return corr


def loopability(corr: np.ndarray) -> float:
    """0.7 max(C) / N + 0.3 sum(C) / (N (N - 1) / 2)."""
    size = len(corr)
    if size < 2:
        return 0.0
    return 0.7 * (corr.max() / size) + 0.3 * (corr.sum() / (size * (size - 1) / 2))


def duration_beats(start: int, end: int, beats: list[int]) -> float:
    """The notebook's patched ``get_duration_beats``: index of the last beat <= end minus that of start."""
    first = max((i for i, tick in enumerate(beats) if tick <= start), default=0)
    last = max((i for i, tick in enumerate(beats) if tick <= end), default=first)
    return float(last - first)


def velocity_means(track: Track, sets: list[NoteSet]) -> list[float]:
    """Mean velocity of the track's notes with each set's (start, end); 0.0 when there is none."""
    by_span: dict[tuple[int, int], list[int]] = {}
    for note in track.notes:
        by_span.setdefault((note.start, note.end), []).append(note.velocity)
    return [float(np.mean(by_span[(s.start, s.end)])) if (s.start, s.end) in by_span else 0.0 for s in sets]


def valid_loops(sets: list[NoteSet], corr: np.ndarray, beats: list[int], rules: dict) -> list[tuple]:
    """``get_valid_loops`` with min_rep_notes 0 and density 0: (start, end, beats, density) per loop."""
    cells: dict[float, list[tuple[int, int]]] = {}
    for x, y in zip(*np.where(corr == 1), strict=True):
        start_x, start_y = x - corr[x, y] + 1, y - corr[x, y] + 1
        beats_num = round(duration_beats(sets[start_x].start, sets[start_y].start, beats), 2)
        if MAX_BEATS >= beats_num >= rules["min_beats"]:
            cells.setdefault(beats_num, []).append((x, y))
    kept: list[list[NoteSet]] = []
    kept_bp: list[tuple] = []
    size = corr.shape[0]
    for x, y, beats_num in filter_sub_loops(cells):
        while x + 1 < size and y + 1 < size and corr[x + 1, y + 1] > corr[x, y]:
            x, y = x + 1, y + 1
        begin, end = x - corr[x, y] + 1, y - corr[x, y] + 1
        start_tick, end_tick = sets[begin].start, sets[end].start
        if duration_beats(start_tick, end_tick, beats) < rules["min_rep_beats"]:
            continue
        if all(len(s.pitches) == 0 for s in sets[begin:end]):
            continue
        loop = sets[begin:end + 1]
        density = len([s for s in loop if s.start != s.end]) / beats_num
        found = loop_exists(kept, loop, rules["min_rep_beats"])  # IndexError: the caller drops the track
        if found is None:
            kept.append(loop)
            kept_bp.append((start_tick, end_tick, beats_num, density))
        elif found > 0:
            kept[found] = loop
            kept_bp[found] = (start_tick, end_tick, beats_num, density)
    return kept_bp


def analyse(score: Score, use_drum_settings: bool = False) -> list[ExpressiveTrack]:
    """The notebook's ``process_file`` on a score: loopability and loops of each track it measures."""
    results: list[ExpressiveTrack] = []
    try:
        beats = list(range(0, score.end() + 1, score.ticks_per_quarter))
        bars = [beats[i] for i in range(0, len(beats), 4)]
        for idx, track in enumerate(score.tracks):
            is_drum = track.is_drum if use_drum_settings else getattr(track, "channel", None) == 9
            rules = DRUMS if is_drum else MELODIC
            sets = note_sets(track, bars)
            if len(sets) < 2:
                continue
            vels = velocity_means(track, sets)
            corr = soft_count_matrix(sets, vels, rules["tau"])
            score_value = float(loopability(corr))
            try:
                endpoints = valid_loops(sets, corr, beats, rules)
            except IndexError:  # the notebook skips the track's loops (never seen with these rules)
                endpoints = []
            loops = [ExpressiveLoop(idx, int(start), int(end), beats_num, density, score_value)
                     for start, end, beats_num, density in endpoints]
            results.append(ExpressiveTrack(idx, score_value, loops))
    except Exception:  # the notebook prints the error and keeps what it found so far
        pass
    return results


def detect_expressive_loops(score: Score, use_drum_settings: bool = False) -> list[ExpressiveLoop]:
    """The loops the notebook writes for a score (it writes the loopability with each loop only)."""
    return [loop for track in analyse(score, use_drum_settings) for loop in track.loops]
