"""Base tokens of a preprocessed score, one track at a time, built with NumPy (no per-note loop).

The reference builds a list of events per track (time signatures and tempos of the score,
then the track's notes, then its loop markers), sorts it stably by time and walks it to
insert ``Bar``/``TimeSig``, ``Position``, ``DeltaDirection`` and ``Delta`` tokens. The walk
reduces to this, which we assemble with one stable sort on ``(tick, kind)``:

- every bar from the first to the one holding the track's last event gives
  ``Bar_None TimeSig_<signature of that bar>`` (empty bars included);
- every distinct tick holding a tempo, a note onset or a loop marker gives
  ``Position_p`` with ``p = min(round_half_up(offset / 160), 71)`` from the bar start, then,
  when ``offset != 160 p``, ``DeltaDirection_0`` if negative and ``Delta_min(|.|, 80)``:
  one microtiming shared by all the notes of an onset. Onsets late in a bar may round to
  ``Position_48`` in 4/4 rather than to the next bar (the reference's rule);
- then the tempo, the notes (``Pitch``/``PitchDrum``, ``Velocity``, ``Duration``) in the
  track's note order, then the loop markers (``Loop_Start``/``Loop_End`` of each loop in
  turn), so a loop starting on an onset is marked *after* that onset's notes.

Each token carries its event tick, which the BPE step uses to cut words at bar lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmmlib.tokens.published.preprocess import Prepared
from mmmlib.tokens.published.report import Report
from mmmlib.tokens.published.vocab import DELTA_FACTOR, TPQ, PublishedVocab

# Sort kinds at one tick: bar lines first, then the position, tempo, notes, loop markers.
BAR, HEADER, TEMPO, NOTE, LOOP = range(5)


@dataclass(frozen=True)
class Tables:
    """Token id lookup arrays, indexed by value (-1 where the vocabulary has no token)."""

    pitch: np.ndarray  # by MIDI pitch
    drum: np.ndarray  # by MIDI pitch
    velocity: np.ndarray  # by velocity 0..127
    duration: np.ndarray  # by twelfths of a quarter
    position: np.ndarray
    delta: np.ndarray  # by ticks 0..80
    tempo: np.ndarray  # by tempo bin
    time_signature: dict[tuple[int, int], int]
    program: dict[int, int]
    special: dict[str, int]

    @classmethod
    def build(cls, vocab: PublishedVocab) -> Tables:
        """Lookup tables of a vocabulary.

        :param vocab: the published vocabulary.
        :return: the tables.
        """
        ids, grids = vocab.token_to_id, vocab.grids

        def table(prefix: str, values: Sequence) -> np.ndarray:
            return np.array([ids.get(f"{prefix}_{v}", -1) for v in values], dtype=np.int64)

        return cls(
            pitch=table("Pitch", range(128)),
            drum=table("PitchDrum", range(128)),
            velocity=table("Velocity", range(128)),
            duration=table("Duration", range(grids.max_pos)),
            position=table("Position", range(grids.max_pos)),
            delta=table("Delta", range(grids.delta_range + 1)),
            tempo=table("Tempo", [str(float(t)) for t in grids.tempos]),
            time_signature={ts: ids[f"TimeSig_{ts[0]}/{ts[1]}"] for ts in grids.time_signatures},
            program={p: ids[f"Program_{p}"] for p in grids.programs},
            special={
                name: ids[name]
                for name in (
                    "Bar_None",
                    "Track_Start",
                    "Track_End",
                    "DeltaDirection_0",
                    "Loop_Start",
                    "Loop_End",
                )
            },
        )


@dataclass(frozen=True)
class BarGrid:
    """Bar lines of a preprocessed score, long enough for every event of every track."""

    ticks: np.ndarray  # start tick of each bar
    signature_id: np.ndarray  # TimeSig token id of each bar

    @classmethod
    def build(cls, sigs: Sequence[tuple[int, int, int]], until: int, tables: Tables) -> BarGrid:
        """Bars from tick 0 through the bar holding ``until``.

        :param sigs: ``(time, num, den)`` time signatures, delayed to bar lines, first at 0.
        :param until: last tick that must fall inside a bar.
        :param tables: id tables (for the TimeSig ids).
        :return: the grid.
        """
        ticks, ids = [], []
        for k, (start, num, den) in enumerate(sigs):
            stop = sigs[k + 1][0] if k + 1 < len(sigs) else max(until, start) + 1
            length = TPQ * num if den == 4 else int(TPQ * 4 / den) * num
            bars = np.arange(start, stop, length, dtype=np.int64)
            ticks.append(bars)
            ids.append(np.full(len(bars), tables.time_signature[(num, den)], dtype=np.int64))
        return cls(np.concatenate(ticks), np.concatenate(ids))

    def index(self, ticks: np.ndarray) -> np.ndarray:
        """Index of the bar holding each tick.

        :param ticks: ticks >= 0.
        :return: bar indices.
        """
        return np.searchsorted(self.ticks, ticks, side="right") - 1


def microtiming(offsets: np.ndarray, max_pos: int, delta_range: int) -> tuple[np.ndarray, np.ndarray]:
    """``Position`` value and signed ``Delta`` of onsets ``offsets`` ticks after their bar line.

    The reference's ``min(int(offset / 160 + 0.5), max_pos - 1)`` (exact in integers for
    offsets >= 0: halves round up), and the rest clipped to ``delta_range`` in magnitude.

    :param offsets: ticks from the bar line, >= 0.
    :param max_pos: number of Position values (72).
    :param delta_range: largest Delta value (80).
    :return: ``(positions, deltas)``; a delta of 0 gives no ``Delta`` token.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    pos = np.minimum((offsets + DELTA_FACTOR // 2) // DELTA_FACTOR, max_pos - 1)
    delta = np.clip(offsets - pos * DELTA_FACTOR, -delta_range, delta_range)
    return pos, delta


def _positions(
    times: np.ndarray, grid: BarGrid, tables: Tables, max_pos: int, delta_range: int
) -> np.ndarray:
    """``(n, 3)`` ids of ``Position``, ``DeltaDirection`` and ``Delta`` per tick (-1 = none)."""
    pos, delta = microtiming(times - grid.ticks[grid.index(times)], max_pos, delta_range)
    out = np.full((len(times), 3), -1, dtype=np.int64)
    out[:, 0] = tables.position[pos]
    out[delta < 0, 1] = tables.special["DeltaDirection_0"]
    nonzero = delta != 0
    out[nonzero, 2] = tables.delta[np.abs(delta[nonzero])]
    return out


def _note_tokens(
    notes: dict[str, np.ndarray], is_drum: bool, tables: Tables, max_pos: int, report: Report
) -> np.ndarray:
    """``(n, 3)`` ids of each note's pitch, velocity and duration."""
    out = np.empty((len(notes["time"]), 3), dtype=np.int64)
    pitches = notes["pitch"].astype(np.int64)
    out[:, 0] = (tables.drum if is_drum else tables.pitch)[pitches]
    out[:, 1] = tables.velocity[notes["velocity"].astype(np.int64)]
    units = (notes["duration"].astype(np.int64) + DELTA_FACTOR // 2) // DELTA_FACTOR
    out[:, 2] = tables.duration[np.clip(units, 1, max_pos - 1)]
    missing = (out < 0).any(axis=1)
    if missing.any():  # only reachable with a score that skipped preprocessing
        report.add("note_without_token", int(missing.sum()))
    return out


def track_stream(
    prepared: Prepared,
    track_idx: int | None,
    loop_ticks: Sequence[tuple[int, int]],
    grid: BarGrid,
    tables: Tables,
    vocab: PublishedVocab,
    report: Report,
) -> tuple[np.ndarray, np.ndarray]:
    """Base token ids and their event ticks for one track, between its header and ``Track_End``.

    :param prepared: the preprocessed score.
    :param track_idx: index of the track in ``prepared.score.tracks``; None for a score
        without tracks (time signatures and tempos only, as the reference emits then).
    :param loop_ticks: the track's loops as ``(start, end)`` ticks at 1920 per quarter;
        loops with ``start >= end`` are skipped, as the reference does.
    :param grid: the score's bar grid.
    :param tables: id tables.
    :param vocab: the vocabulary (grids).
    :param report: problems are counted here.
    :return: ``(ids, ticks)``, ticks non-decreasing.
    """
    grids = vocab.grids
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (ids, ticks, kind) flat per token

    def add(ids: np.ndarray, ticks: np.ndarray, kind: int) -> None:
        parts.append((ids.reshape(-1), ticks.reshape(-1), np.full(ids.size, kind, dtype=np.int64)))

    tempo_times = prepared.tempo_times
    add(tables.tempo[prepared.tempo_bins], tempo_times, TEMPO)
    onsets = np.zeros(0, dtype=np.int64)
    if track_idx is not None:
        track = prepared.score.tracks[track_idx]
        notes = track.notes.numpy()
        onsets = notes["time"].astype(np.int64)
        add(_note_tokens(notes, track.is_drum, tables, grids.max_pos, report), np.repeat(onsets, 3), NOTE)
    loops = [(s, e) for s, e in loop_ticks if s < e]
    report.add("loop_empty_skipped", len(loop_ticks) - len(loops))
    loop_times = np.array(loops, dtype=np.int64).reshape(-1)
    marker = np.tile([tables.special["Loop_Start"], tables.special["Loop_End"]], len(loops))
    add(marker.astype(np.int64), loop_times, LOOP)
    sig_times = np.array([t for t, _, _ in prepared.time_signatures], dtype=np.int64)
    group_times = np.unique(np.concatenate((tempo_times, onsets, loop_times)))
    add(
        _positions(group_times, grid, tables, grids.max_pos, grids.delta_range),
        np.repeat(group_times, 3),
        HEADER,
    )
    last = int(max(group_times.max(), sig_times.max()))
    num_bars = int(grid.index(np.array([last]))[0]) + 1
    bar_ids = np.stack((np.full(num_bars, tables.special["Bar_None"]), grid.signature_id[:num_bars]), axis=1)
    add(bar_ids, np.repeat(grid.ticks[:num_bars], 2), BAR)
    ids = np.concatenate([p[0] for p in parts])
    ticks = np.concatenate([p[1] for p in parts])
    kinds = np.concatenate([p[2] for p in parts])
    keep = ids >= 0
    ids, ticks, kinds = ids[keep], ticks[keep], kinds[keep]
    order = np.argsort(ticks * 8 + kinds, kind="stable")
    return ids[order], ticks[order]
