"""Preprocess a score as the reference's REAPER path does: 1920 ticks per quarter, snapped values.

The golden files were made with ``base_tokenizer.preprocess_score``: MidiTok's generic
preprocessing with the REAPER resampling rate. In order:

1. time signatures outside the vocabulary are dropped (the reference keeps them and then
   fails with ``KeyError: 'TimeSig_2/2'``; MidiTok's own filter drops them, so do we), and
   4/4 is put at tick 0 when no kept signature starts there;
2. the score is resampled to 1920 ticks per quarter (``min_dur=1``), the time signatures
   separately with truncation, as MidiTok does;
3. each time signature is delayed to the next bar line, repeats and same-tick ones removed;
4. tracks with no notes or a program outside the vocabulary (program 127) are removed;
   notes outside the pitch range (drums: their own range) are removed; velocities go to the
   closest bin; **durations go to the closest value of the REMI ``beat_res`` grid** (1/12
   beat up to one beat, then 1/4, 1/2, 1 beat, up to 8 beats; ties to the longer) before
   they are counted in twelfths of a quarter: the reason ``Duration_13`` never occurs;
5. tempos go to the closest bin (compared in microseconds per quarter, ties to the slower),
   the last of same-tick tempos is kept, and the default tempo is put at tick 0 if needed.

Where the reference would fail we choose (the golden files have none of these): durations
are snapped with a quarter-note beat in every time signature (the reference looks up a
1920 / 2 tick beat for x/8 signatures and raises ``KeyError``), and onsets are never
rounded to the grid when the file mixes x/4 and x/8 signatures (MidiTok would, which would
erase all microtiming).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from symusic import Note, Score, Tempo, TimeSignature

from mmmlib.tokens.published.report import Report
from mmmlib.tokens.published.vocab import TPQ, Grids


def closest(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the closest grid value for each value; ties go to the higher index.

    Same rule as MidiTok's ``np_get_closest`` (which returns the values, not indices).

    :param grid: ascending reference values.
    :param values: values to map.
    :return: int64 indices into ``grid``.
    """
    idx = np.searchsorted(grid, values, side="left")
    lower = np.maximum(idx - 1, 0)
    upper = np.minimum(idx, len(grid) - 1)
    take_lower = (idx == len(grid)) | (np.abs(values - grid[lower]) < np.abs(values - grid[upper]))
    return np.where(take_lower, idx - 1, idx).astype(np.int64)


def ticks_per_bar(numerator: int, denominator: int, tpq: int = TPQ) -> int:
    """Ticks of one bar of ``numerator/denominator`` at ``tpq`` ticks per quarter.

    :param numerator: beats per bar.
    :param denominator: beat note value.
    :param tpq: ticks per quarter.
    :return: ticks per bar.
    """
    return int(tpq * 4 / denominator) * numerator if denominator != 4 else tpq * numerator


def _filtered_time_signatures(score: Score, grids: Grids, report: Report) -> list[tuple[int, int, int]]:
    """``(time, num, den)`` of the score's supported signatures, 4/4 at 0 if needed, at 1920 tpq."""
    kept = []
    for ts in score.time_signatures:
        if (ts.numerator, ts.denominator) in grids.time_signatures:
            kept.append((ts.time, ts.numerator, ts.denominator))
        else:
            report.add("time_signature_dropped")
    if not kept or kept[0][0] != 0:
        kept.insert(0, (0, 4, 4))
    if score.ticks_per_quarter != TPQ:
        # MidiTok resamples this copy with a float factor and an int32 cast (truncation).
        factor = TPQ / score.ticks_per_quarter
        kept = [(int(np.int32(t * factor)), n, d) for t, n, d in kept]
    return kept


def delay_time_signatures(sigs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Move each signature to the next bar line; drop repeats and same-tick predecessors.

    MidiTok's ``_preprocess_time_signatures``, on ``(time, num, den)`` tuples at 1920 tpq.

    :param sigs: time signatures sorted by time, the first at tick 0.
    :return: the cleaned list (never empty; 4/4 at 0 when needed).
    """
    sigs = [list(s) for s in sigs]
    i, previous_tick = 0, 0
    bar = ticks_per_bar(sigs[0][1], sigs[0][2]) if sigs else TPQ * 4
    while i < len(sigs):
        if i >= 1 and sigs[i][1:] == sigs[i - 1][1:]:
            del sigs[i]
            continue
        if i >= 1 and sigs[i][0] < sigs[i - 1][0]:
            sigs[i][0] = sigs[i - 1][0]
        bars, rest = divmod(sigs[i][0] - previous_tick, bar)
        if rest > 0:
            sigs[i][0] = previous_tick + (bars + 1) * bar
        bar = ticks_per_bar(sigs[i][1], sigs[i][2])
        previous_tick = sigs[i][0]
        if i >= 1 and sigs[i][0] == sigs[i - 1][0]:
            del sigs[i - 1]
            if i >= 2 and sigs[i - 1][1:] == sigs[i - 2][1:]:
                del sigs[i - 1]
                bar = ticks_per_bar(sigs[i - 2][1], sigs[i - 2][2])
                previous_tick = sigs[i - 2][0]
                i -= 1
            continue
        i += 1
    if not sigs or sigs[0][0] != 0:
        sigs.insert(0, [0, 4, 4])
    return [tuple(s) for s in sigs]


def _snap_notes(
    notes: dict[str, np.ndarray], is_drum: bool, grids: Grids, report: Report
) -> dict[str, np.ndarray]:
    """Drop out-of-range pitches, snap velocities and durations (MidiTok's note preprocessing)."""
    lo, hi = grids.drum_pitch_range if is_drum else grids.pitch_range
    keep = (notes["pitch"] >= lo) & (notes["pitch"] < hi)
    report.add("note_out_of_pitch_range", int((~keep).sum()))
    if not keep.all():
        notes = {k: v[keep] for k, v in notes.items()}
    if len(notes["time"]) == 0:
        return notes
    notes["velocity"] = grids.velocities[
        closest(grids.velocities, notes["velocity"].astype(np.int64))
    ].astype(notes["velocity"].dtype)
    durations = notes["duration"].astype(np.int64)
    notes["duration"] = grids.duration_grid[closest(grids.duration_grid, durations)].astype(
        notes["duration"].dtype
    )
    return notes


def _tempos(score: Score, grids: Grids) -> tuple[np.ndarray, np.ndarray]:
    """Tempo ``(times, bin indices)`` after snapping, keeping the last of same-tick changes."""
    if len(score.tempos) == 0:
        return np.zeros(1, dtype=np.int64), np.array([grids.default_tempo_idx])
    soa = score.tempos.numpy()
    times = soa["time"].astype(np.int64)
    bins = grids.tempo_of_mspq[closest(grids.tempos_mspq, soa["mspq"].astype(np.float64))]
    last_of_tick = np.append(times[1:] != times[:-1], True)
    times, bins = times[last_of_tick], bins[last_of_tick]
    if times[0] != 0:
        times = np.insert(times, 0, 0)
        bins = np.insert(bins, 0, grids.default_tempo_idx)
    return times, bins


@dataclass
class Prepared:
    """A preprocessed score and what the encoder needs besides it."""

    score: Score  # at 1920 ticks per quarter, snapped (tempos and signatures included)
    kept: list[int]  # source index of each kept track
    time_signatures: list[tuple[int, int, int]]  # (time, num, den), the first at tick 0
    tempo_times: np.ndarray  # ticks of the tempo changes, the first at tick 0
    tempo_bins: np.ndarray  # index into ``Grids.tempos`` of each change


def preprocess_score(score: Score, grids: Grids, report: Report | None = None) -> Prepared:
    """Preprocess a tick-time score as the reference's REAPER path does (see the module doc).

    :param score: tick-time score at any ticks per quarter; not modified.
    :param grids: the tokenizer's grids.
    :param report: problems are counted here (time signatures, tracks and notes dropped).
    :return: the new score at 1920 ticks per quarter (its tempos and time signatures the
        snapped ones), the source index of each kept track, the signatures and tempo bins.
    """
    report = report if report is not None else Report()
    sigs = _filtered_time_signatures(score, grids, report)
    out = score.resample(TPQ, min_dur=1) if score.ticks_per_quarter != TPQ else score.copy()
    sigs = delay_time_signatures(sigs)
    out.time_signatures = [TimeSignature(t, n, d) for t, n, d in sigs]
    kept: list[int] = []
    tracks = []
    for idx, track in enumerate(out.tracks):
        program = -1 if track.is_drum else track.program
        if track.note_num() == 0:
            continue
        if program not in grids.programs:
            report.add("track_program_unsupported")
            continue
        notes = track.notes.numpy()
        # symusic 0.5 (the reference's) sorted notes by (time, pitch, duration) when reading a
        # file; 0.6 keeps the file's order within a tick. Sort on the source values (resampling
        # maps notes one to one) so that rounding cannot reorder them.
        raw = score.tracks[idx].notes.numpy()
        order = np.lexsort((raw["duration"], raw["pitch"], raw["time"]))
        notes = {k: v[order] for k, v in notes.items()}
        notes = _snap_notes(notes, track.is_drum, grids, report)
        if len(notes["time"]) == 0:
            report.add("track_empty_after_pitch_filter")
            continue
        track.notes = Note.from_numpy(**notes)
        tracks.append(track)
        kept.append(idx)
    out.tracks = tracks
    times, bins = _tempos(out, grids)
    mspq = (60_000_000 / grids.tempos[bins]).astype(np.int32)
    out.tempos = Tempo.from_numpy(time=times.astype(np.int32), mspq=mspq)
    return Prepared(out, kept, sigs, times, bins)
