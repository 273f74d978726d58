"""The ``default`` mode of the expressive loop detector: the reference's idea with its quirks fixed.

The reference (:mod:`~mmmlib.data.expressive_reference`) compares note sets one to one
along the track. In a performance that alignment breaks: a rolled chord becomes several
sets, two onsets played close merge, a downbeat played early lands in the previous bar,
so one repetition has a set more than the other and no run covers it. This mode compares
*bars*, which stay aligned, with the reference's similarity moved to notes:

- **bars and beats from the time signatures** (miditok's grid, as the exact detector), cut
  at the track's end; a note played up to ``max_shift_quarters`` before a barline belongs
  to the bar it leads into;
- **time is the position in the bar** (quarter notes from the barline, so that a tolerance
  means the same time in 4/4 and 6/8): the time term of two notes is
  ``exp(-|position a - position b| / time_scale_quarters)``. The reference compares raw
  start ticks of different bars, which makes the term 0 for every pair that could loop;
- **similarity needs a shared pitch**: a note's *counterpart* in another bar is a note of
  the same pitch at most ``max_shift_quarters`` away in the bar, scored
  ``0.5 + 0.3 (1 - |velocity difference| / 127) + 0.2 time`` (the reference's weights; the
  Jaccard of two equal pitches is 1); a note without one scores 0. Two bars are similar
  when the mean score over the notes of both reaches ``tau`` (two empty bars are similar).
  In the reference, equal velocities make any two note sets similar at tau 0.3;
- **a loop repeats whole**: the soft-count matrix is over bars, every bar may start a run,
  and a run from bar ``r`` to bar ``r + d`` is a loop of ``d`` bars only when it lasts
  ``d`` bars or more (the whole loop is played again). The reference keeps every run start;
- **one loop per repeated passage**: candidates go shortest first, and one that starts
  inside a passage already explained by a kept loop (its start to the end of its run) is
  dropped. The reference keeps at most one loop per track.

The matrix has one row per bar instead of one per note set: the loopability score
(:meth:`~mmmlib.data.soft_matrix.SoftRuns.loopability`) is the same formula over bars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mmmlib.data.soft_matrix import SoftRuns, soft_runs

if TYPE_CHECKING:
    from symusic import Track

W_PITCH, W_VELOCITY, W_TIME = 0.5, 0.3, 0.2
PAIR_CELLS = 1 << 21  # (note, bar) pairs scored at a time (a few arrays of this many int64)


def _counterpart_scores(bar_of: np.ndarray, pitch: np.ndarray, rel: np.ndarray, velocity: np.ndarray,
                        num_bars: int, max_shift: int, time_scale: float) -> np.ndarray:
    """``total[a, b]``: the sum over the notes of bar ``a`` of their best counterpart score in bar ``b``.

    :param rel: note ticks from their barline; ``max_shift`` and ``time_scale`` in ticks.
    """
    width = int(rel.max() - rel.min()) + 2 * max_shift + 2  # room for a whole bar and the shift
    group = pitch * num_bars + bar_of  # notes of one pitch in one bar
    key = group * width + (rel - rel.min() + max_shift)
    order = np.argsort(key, kind="stable")
    keys, vel_sorted, rel_sorted = key[order], velocity[order], rel[order]
    total = np.zeros((num_bars, num_bars))
    step = max(1, PAIR_CELLS // num_bars)
    bars = np.arange(num_bars)
    for lo in range(0, len(key), step):
        note = np.arange(lo, min(lo + step, len(key)))
        target = (pitch[note, None] * num_bars + bars[None, :]) * width + (rel[note, None] - rel.min() + max_shift)
        best = np.zeros(target.shape)
        for side in (0, 1):  # the nearest counterpart on each side of the note's position
            idx = np.clip(np.searchsorted(keys, target) - side, 0, len(keys) - 1)
            shift = np.abs(rel_sorted[idx] - rel[note, None])
            same = (keys[idx] // width == target // width) & (shift <= max_shift)
            score = W_PITCH + W_VELOCITY * (1 - np.abs(vel_sorted[idx] - velocity[note, None]) / 127) \
                + W_TIME * np.exp(-shift / time_scale)
            best = np.maximum(best, np.where(same, score, 0.0))
        best[np.arange(len(note)), bar_of[note]] = 0.0  # a bar against itself is not needed
        np.add.at(total, bar_of[note], best)
    return total


def bar_similarity(track: Track, bars: np.ndarray, ticks_per_quarter: int, max_shift_quarters: float,
                   time_scale_quarters: float) -> tuple[np.ndarray, np.ndarray]:
    """Similarity of every pair of bars of a track, and the number of notes in each bar.

    :param bars: bar ticks (ascending), cut at the track's end.
    :return: ``(similarity, notes_per_bar)``: a symmetric ``(bars, bars)`` float matrix
        (1.0 for two empty bars, 0.0 for an empty and a non-empty one) and int counts.
    """
    notes = track.notes.numpy()
    start = notes["time"].astype(np.int64)
    max_shift = int(round(max_shift_quarters * ticks_per_quarter))
    bar_of = np.searchsorted(bars, start + max_shift, side="right") - 1
    kept = bar_of >= 0  # notes before the first bar belong to no bar
    bar_of, start = bar_of[kept], start[kept]
    pitch = notes["pitch"][kept].astype(np.int64) & 0xFF
    velocity = notes["velocity"][kept].astype(np.float64)
    counts = np.bincount(bar_of, minlength=len(bars))
    total = (_counterpart_scores(bar_of, pitch, start - bars[bar_of], velocity, len(bars), max_shift,
                                 time_scale_quarters * ticks_per_quarter) if len(start) else np.zeros((len(bars),) * 2))
    pair_notes = counts[:, None] + counts[None, :]
    similarity = np.where(pair_notes > 0, (total + total.T) / np.maximum(pair_notes, 1), 1.0)
    return similarity, counts


def default_track_loops(track: Track, bars: np.ndarray, beats: np.ndarray, ticks_per_quarter: int, tau: float,
                        min_beats: float, max_beats: float, max_shift_quarters: float,
                        time_scale_quarters: float) -> tuple[list[tuple], SoftRuns] | None:
    """Loops of one track in default mode, and the summary of its bar-level soft-count matrix.

    :param bars: bar ticks of the score (miditok); cut at the track's end here.
    :param beats: beat ticks of the score (miditok), for durations in beats.
    :param tau: threshold of the bar similarity.
    :param min_beats: shortest loop, in beats.
    :param max_beats: longest loop, in beats.
    :param max_shift_quarters: largest position difference of two counterpart notes.
    :param time_scale_quarters: scale of the time term.
    :return: ``([(start_tick, end_tick, duration_beats, note_density), ...], runs)`` sorted
        by start (density in notes per beat), or None for a track without notes or bars.
    """
    past = np.flatnonzero(bars > track.end())
    bars = bars[: past[0]] if len(past) else bars
    if len(track.notes) == 0 or len(bars) < 2:
        return None
    similarity, counts = bar_similarity(track, bars, ticks_per_quarter, max_shift_quarters, time_scale_quarters)
    similar = similarity >= tau
    padded = np.zeros((len(bars) + 1, len(bars) + 1), dtype=bool)
    padded[:-1, :-1] = similar

    def block(lag: int, count: int) -> np.ndarray:
        rows = np.arange(len(bars) - lag + 1)
        return padded[rows[:, None], np.minimum(rows[:, None] + np.arange(lag, lag + count)[None, :], len(bars))]

    runs = soft_runs(np.ones(len(bars), dtype=bool), block)
    bar_beat = np.searchsorted(beats, bars).astype(np.float64)  # bars fall on beats (miditok)
    rows, cols, lengths = runs.rows, runs.cols, runs.lengths
    period = bar_beat[cols] - bar_beat[rows]
    cum_notes = np.concatenate([[0], np.cumsum(counts)])
    whole = ((lengths >= cols - rows) & (period >= min_beats) & (period <= max_beats)
             & (cum_notes[cols] > cum_notes[rows]))
    covered = np.zeros(len(bars) + 1, dtype=bool)
    loops = []
    for k in np.flatnonzero(whole)[np.lexsort((rows[whole], period[whole]))].tolist():
        row, col = int(rows[k]), int(cols[k])
        if covered[row]:
            continue
        covered[row:row + int(lengths[k])] = True
        num_notes = int(cum_notes[col] - cum_notes[row])
        loops.append((int(bars[row]), int(bars[col]), float(period[k]), num_notes / float(period[k])))
    return sorted(loops), runs
