"""From a raw score to MMM tokens: quantize once, keep what the quantized score forgets.

:func:`prepare_score` runs MidiTok's preprocessing (quantization to the tokenizer's grid)
and keeps, for every quantized note, the onset it had in the file's raw ticks (for NOMML)
and, in expressive mode, its offset from the grid (for ``MicroTiming`` tokens). The
result, a :class:`PreparedScore`, can be cut into bar ranges (:func:`slice_prepared`) and
transposed without losing that link, and :func:`encode_prepared` turns it into one
:class:`EncodedTrack` per track: header (``Track_Start``, ``Program``, track controls),
bars (each starting with ``Bar_None``), then ``Track_End``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from miditok.utils import get_bars_ticks
from symusic import Note

from mmmlib.data.nomml import onset_levels
from mmmlib.tokens.controls import ScoreNotes, TrackValues
from mmmlib.tokens.fast_controls import bar_control_tokens, track_control_tokens
from mmmlib.tokens.microtiming import MICROTIMING_TYPE, match_notes, rescale_score

if TYPE_CHECKING:
    from collections.abc import Mapping

    from symusic import Score

    from mmmlib.tokens.tokenizer import MMMLoop



@dataclass
class PreparedScore:
    """A score quantized by the tokenizer, with per-note links to the raw file.

    :param score: the quantized score (MidiTok's ``preprocess_score`` output).
    :param track_idx: raw track index of each track of ``score``.
    :param raw_onsets: per track, the raw onset tick of each note of ``score``.
    :param raw_tpq: ticks per quarter of the raw file.
    :param offsets: per track, each note's microtiming offset in microtiming ticks
        (expressive mode), else None.
    :param loops: per raw track index, loops as ``(start_tick, end_tick, duration_beats)``
        rows in raw ticks; None when loop information is unknown.
    :param window_raw: the raw tick range this score covers (a slice covers part of the file).
    """

    score: Score
    track_idx: list[int]
    raw_onsets: list[np.ndarray]
    raw_tpq: int
    offsets: list[np.ndarray] | None
    loops: dict[int, np.ndarray] | None
    window_raw: tuple[float, float] = (0.0, float("inf"))


@dataclass
class EncodedTrack:
    """Base tokens of one track: ``header + bars + [Track_End]``."""

    track_idx: int
    program: int
    header: list[str]
    bars: list[list[str]]

    def tokens(self) -> list[str]:
        """The track's full token sequence."""
        return [*self.header, *(t for bar in self.bars for t in bar), "Track_End"]


def _loops_array(loops: Mapping[int, Any] | None) -> dict[int, np.ndarray] | None:
    if loops is None:
        return None
    return {int(k): np.asarray(v, dtype=np.float64).reshape(-1, 3) for k, v in loops.items()}


def _kept_notes(tok: MMMLoop, is_drum: bool, src: dict, dst: dict) -> np.ndarray | None:
    """Indices of the source notes MidiTok kept, when it only dropped out-of-range pitches.

    MidiTok's preprocessing keeps the notes' order unless it removes duplicates, so the
    quantized notes are usually the in-range source notes, in order; None otherwise.
    """
    low, high = tok.config.drums_pitch_range if is_drum and tok.config.use_pitchdrum_tokens else tok.config.pitch_range
    kept = np.flatnonzero((src["pitch"] >= low) & (src["pitch"] <= high))
    if len(kept) != len(dst["pitch"]) or not np.array_equal(src["pitch"][kept], dst["pitch"]):
        return None
    return kept


def prepare_score(tok: MMMLoop, score: Score, loops: Mapping[int, Any] | None = None) -> PreparedScore:
    """Quantize ``score`` with the tokenizer and link each quantized note to its raw note.

    Tracks are named by their raw index before MidiTok's preprocessing, which drops
    empty tracks, so that each kept track knows where it came from.
    """
    # rescale_score already copies; otherwise copy so that the caller's names stay untouched
    source = rescale_score(score, tok.microtiming_resolution) if tok.is_expressive else score.copy()
    for i, track in enumerate(source.tracks):
        track.name = str(i)
    quantized = tok.preprocess_score(source)
    track_idx = [int(t.name) for t in quantized.tracks]
    scale = source.ticks_per_quarter / quantized.ticks_per_quarter
    raw_onsets, offsets = [], []
    for track, raw_idx in zip(quantized.tracks, track_idx, strict=True):
        src = source.tracks[raw_idx].notes.numpy()
        dst = track.notes.numpy()
        match = _kept_notes(tok, source.tracks[raw_idx].is_drum, src, dst)
        if match is None:  # MidiTok reordered or merged notes: match them by pitch and time
            match = match_notes(src["time"], src["pitch"], dst["time"], dst["pitch"], scale)
        # source notes are in raw order (rescale_score keeps it), so `match` indexes raw notes too
        raw_onsets.append(score.tracks[raw_idx].notes.numpy()["time"].astype(np.int64)[match])
        if tok.is_expressive:
            limit = tok.max_microtiming_offset
            offset = src["time"].astype(np.int64)[match] - dst["time"].astype(np.int64) * round(scale)
            offsets.append(np.clip(offset, -limit, limit))
    return PreparedScore(quantized, track_idx, raw_onsets, score.ticks_per_quarter,
                         offsets if tok.is_expressive else None, _loops_array(loops))


def track_values(prepared: PreparedScore) -> list[TrackValues]:
    """NOMML (raw onsets) and loops (those inside the covered window) of each track.

    The metric levels of all tracks are computed in one :func:`~mmmlib.data.nomml.onset_levels`
    call (it costs the same for one onset as for a hundred); each track's NOMML is then
    ``int(median)`` of its own levels, as :func:`~mmmlib.data.nomml.nomml_from_onsets` does.
    """
    lo, hi = prepared.window_raw
    tolerance = prepared.raw_tpq / 2  # loops start on bar lines; raw ticks may be a little off
    sizes = [len(o) for o in prepared.raw_onsets]
    levels = onset_levels(np.concatenate(prepared.raw_onsets), prepared.raw_tpq) if sum(sizes) else np.zeros(0)
    values = []
    for raw_idx, start, size in zip(prepared.track_idx, np.cumsum([0, *sizes])[:-1], sizes, strict=True):
        durations: tuple[float, ...] | None = None
        if prepared.loops is not None:
            rows = prepared.loops.get(raw_idx, np.zeros((0, 3)))
            inside = (rows[:, 0] >= lo - tolerance) & (rows[:, 1] <= hi + tolerance)
            durations = tuple(float(d) for d in rows[inside, 2])
        nomml = int(np.median(levels[start:start + size])) if size else None
        values.append(TrackValues(nomml, durations))
    return values


def insert_bar_controls(bars: list[list[str]], rows: dict[int, list[str]]) -> None:
    """Put each bar's control tokens right after its ``Bar_None`` (and ``TimeSig``), in place."""
    for b, tokens in rows.items():
        if b < len(bars):
            at = 2 if len(bars[b]) > 1 and bars[b][1].startswith("TimeSig_") else 1
            bars[b][at:at] = tokens


def insert_microtiming(tokens: list[str], offsets: np.ndarray) -> list[str]:
    """Insert ``MicroTiming_d`` after the ``Duration`` of each note whose offset is not 0.

    MidiTok emits notes as ``Pitch Velocity Duration`` in the order of the track's notes
    and, without pedals, ``Duration`` tokens only for notes: the k-th one ends note k.
    """
    ends = [i for i, t in enumerate(tokens) if t[0] == "D"]  # "Duration_" is the only D token
    if len(ends) != len(offsets):
        raise RuntimeError(f"{len(ends)} notes in the tokens but {len(offsets)} offsets")
    moved = np.flatnonzero(offsets)
    if len(moved) == 0:
        return tokens
    out: list[str] = []
    previous = 0
    for k in moved:
        end = ends[k] + 1
        out += tokens[previous:end]
        out.append(f"{MICROTIMING_TYPE}_{int(offsets[k])}")
        previous = end
    out += tokens[previous:]
    return out


def split_track_tokens(tokens: list[str], track_idx: int) -> EncodedTrack:
    """Cut one track's tokens into header, bars and the final ``Track_End``."""
    body = tokens[:-1] if tokens and tokens[-1] == "Track_End" else tokens
    starts = [i for i, t in enumerate(body) if t == "Bar_None"]
    first = starts[0] if starts else len(body)
    bars = [body[a:b] for a, b in zip(starts, [*starts[1:], len(body)], strict=False)]
    program = int(body[1].split("_")[1]) if len(body) > 1 and body[1].startswith("Program_") else 0
    return EncodedTrack(track_idx, program, body[:first], bars)


def encode_prepared(tok: MMMLoop, prepared: PreparedScore, bar_controls: bool = True) -> list[EncodedTrack]:
    """One :class:`EncodedTrack` per track of ``prepared``, with every control.

    MidiTok writes the notes (plain MMM, no control); the tracks are then read once into a
    :class:`~mmmlib.tokens.controls.ScoreNotes` from which every control computes its tokens:
    track controls go right after ``Program``, bar controls right after each bar's
    ``Bar_None`` (and ``TimeSig``). Routing them through MidiTok's event sorting and time
    tokens costs far more than computing them.

    :param tok: the tokenizer.
    :param prepared: output of :func:`prepare_score` or :func:`slice_prepared`.
    :param bar_controls: compute the bar controls of every bar (else none).
    """
    score = prepared.score
    tokens_per_track = tok.quantized_tokens(score, {})
    if not tokens_per_track:
        return []
    notes = ScoreNotes.of(score.tracks, score.ticks_per_quarter, get_bars_ticks(score, only_notes_onsets=True),
                          track_values(prepared))
    headers = track_control_tokens(tok.track_controls, notes)
    bar_rows = bar_control_tokens(tok.bar_controls, notes) if bar_controls else None
    encoded = []
    for ti, tokens in enumerate(tokens_per_track):
        if prepared.offsets is not None:
            tokens = insert_microtiming(tokens, prepared.offsets[ti])
        tokens[2:2] = headers[ti]  # after Track_Start, Program
        track = split_track_tokens(tokens, prepared.track_idx[ti])
        if bar_rows is not None:
            insert_bar_controls(track.bars, bar_rows[ti])
        encoded.append(track)
    return encoded


def _events_at(events, lo: int, hi: int) -> list:
    """Global events (tempos, time signatures) of ``[lo, hi)`` moved by ``-lo``, with the
    one in force at ``lo`` restated at tick 0."""
    before = [e for e in events if e.time <= lo]
    out = []
    if before:
        first = before[-1].copy()
        first.time = 0
        out.append(first)
    for event in events:
        if lo < event.time < hi:
            moved = event.copy()
            moved.time = event.time - lo
            out.append(moved)
    return out


def slice_prepared(prepared: PreparedScore, bar_start: int, bar_end: int,
                   tracks: list[int] | None = None) -> PreparedScore:
    """The bars ``[bar_start, bar_end)`` of some tracks, as a score starting at tick 0.

    :param prepared: the whole prepared score.
    :param bar_start: first bar (index in the quantized score's bars).
    :param bar_end: bar after the last one.
    :param tracks: indices of ``prepared.score.tracks`` to keep (default: all). Tracks
        without notes in the range are dropped.
    """
    score = prepared.score
    bars = get_bars_ticks(score)
    lo = bars[bar_start] if bar_start < len(bars) else score.end() + 1
    hi = bars[bar_end] if bar_end < len(bars) else max(score.end(), lo) + 1
    out = score.copy()
    out.tempos = _events_at(score.tempos, lo, hi)
    out.time_signatures = _events_at(score.time_signatures, lo, hi)
    out.tracks = []
    keep = range(len(score.tracks)) if tracks is None else tracks
    track_idx, raw_onsets, offsets = [], [], []
    for ti in keep:
        soa = score.tracks[ti].notes.numpy()
        inside = (soa["time"] >= lo) & (soa["time"] < hi)
        if not inside.any():
            continue
        track = score.tracks[ti].copy()
        track.notes = Note.from_numpy(time=soa["time"][inside] - lo, duration=soa["duration"][inside],
                                      pitch=soa["pitch"][inside], velocity=soa["velocity"][inside])
        out.tracks.append(track)
        track_idx.append(prepared.track_idx[ti])
        raw_onsets.append(prepared.raw_onsets[ti][inside])
        if prepared.offsets is not None:
            offsets.append(prepared.offsets[ti][inside])
    to_raw = prepared.raw_tpq / score.ticks_per_quarter
    window = (prepared.window_raw[0] + lo * to_raw, prepared.window_raw[0] + hi * to_raw)
    return replace(prepared, score=out, track_idx=track_idx, raw_onsets=raw_onsets,
                   offsets=offsets if prepared.offsets is not None else None, window_raw=window)
