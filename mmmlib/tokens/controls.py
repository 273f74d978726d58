"""Attribute controls of MIDI-GPT-Loop that MidiTok does not ship: NOMML and loops.

They are :class:`miditok.attribute_controls.AttributeControl` subclasses, added to the
tokenizer with ``add_attribute_control`` like MidiTok's own controls.

Their values are *not* computed from the track MidiTok hands to ``compute``: that track
is already quantized to the tokenizer's grid, where every onset is on a grid and the
NOMML of an expressive performance would read 0 instead of 12, and the loops come from
data prep's detector. So the caller computes the values beforehand (NOMML on the file's
raw ticks, loops from ``loops.parquet``) and hands them over in a :class:`TrackValues`:
our encoder through :class:`ScoreNotes` (:meth:`TrackTokens.track_tokens`), MidiTok's
``attribute_controls_indexes`` by passing it as the track's value (MidiTok forwards it
untouched to ``compute`` as its last argument).

:class:`ScoreNotes` is also what the vectorized controls of :mod:`mmmlib.tokens.fast_controls`
share: all the tracks' notes as arrays, read once for all the controls.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from miditok import Event
from miditok.attribute_controls import AttributeControl

from mmmlib.data.nomml import NUM_LEVELS, nomml_from_onsets, track_nomml

if TYPE_CHECKING:
    from collections.abc import Sequence

    from symusic.core import TrackTick

NOMML_TYPE = "ACTrackNOMML"
LOOP_COUNT_TYPE = "ACTrackLoopCount"
LOOP_DURATION_TYPE = "ACTrackLoopDuration"
LOOP_COUNT_MAX = 5  # counts from 5 up share the token "5+"
LOOP_DURATION_EDGES_BEATS = (6, 8, 12, 16, 24, 32)


@dataclass(frozen=True)
class TrackValues:
    """Control values of one track computed outside MidiTok.

    :param nomml: NOMML (0..12) of the track's onsets in the file's raw ticks, None if unknown.
    :param loop_durations_beats: duration in beats of each loop data prep found in the track;
        None when loops are unknown (then no loop token at all, rather than a false "0").
    """

    nomml: int | None = None
    loop_durations_beats: tuple[float, ...] | None = None


@dataclass
class ScoreNotes:
    """The notes of a quantized score's tracks as arrays, read once for all their controls.

    Notes are track-major: track ``t``'s notes are ``starts[t]:starts[t + 1]``, in order,
    so controls can compute every track (and every bar of every track) in a few NumPy
    calls instead of a few calls per track.

    :param soa: the tracks' ``notes.numpy()`` arrays, concatenated.
    :param track: track index of each note.
    :param bar: bar index of each note in ``ticks_bars``.
    :param starts: first note of each track, plus the total (``num_tracks + 1`` values).
    :param ticks_bars: first tick of each bar of the score (int64).
    :param tpq: ticks per quarter of the (quantized) score.
    :param ends: ``track.end()`` of each track.
    :param values: per track, values computed outside MidiTok (NOMML, loops), or None.
    """

    soa: dict[str, np.ndarray]
    track: np.ndarray
    bar: np.ndarray
    starts: np.ndarray
    ticks_bars: np.ndarray
    tpq: int
    ends: np.ndarray
    values: list[TrackValues | None]

    @property
    def num_tracks(self) -> int:
        return len(self.ends)

    @property
    def num_bars(self) -> int:
        return len(self.ticks_bars)

    @classmethod
    def of(cls, tracks: Sequence[TrackTick], tpq: int, ticks_bars: Sequence[int],
           values: Sequence[Any] | None = None) -> ScoreNotes:
        """Read tracks once; a value is kept only when it is a :class:`TrackValues`."""
        arrays = [t.notes.numpy() for t in tracks]
        sizes = [len(a["time"]) for a in arrays]
        keys = ("time", "duration", "pitch", "velocity")
        soa = {k: np.concatenate([a[k] for a in arrays]) if arrays else np.zeros(0, np.int32) for k in keys}
        bars = np.asarray(ticks_bars, dtype=np.int64)
        bar = np.searchsorted(bars, soa["time"], side="right") - 1
        values = [v if isinstance(v, TrackValues) else None for v in (values or [None] * len(tracks))]
        return cls(soa, np.repeat(np.arange(len(tracks)), sizes), bar, np.cumsum([0, *sizes]), bars, tpq,
                   np.asarray([int(t.end()) for t in tracks], dtype=np.int64), values)


class TrackTokens:
    """Mixin of the track controls our encoder computes itself: tokens of every track at once.

    ``compute`` (MidiTok's interface, one track) is derived from :meth:`track_tokens`.
    """

    def track_tokens(self, notes: ScoreNotes) -> list[list[str]]:
        """The control's tokens of each track of ``notes``."""
        raise NotImplementedError

    def compute(self, track, time_division, ticks_bars, ticks_beats, bars_idx) -> list[Event]:
        """MidiTok's interface: the control's events, at time -1 as MidiTok wants for track controls."""
        if len(track.notes) == 0:
            return []
        notes = ScoreNotes.of([track], time_division, ticks_bars, [bars_idx])
        return [Event(*token.split("_", 1), -1) for token in self.track_tokens(notes)[0]]


def loop_count_value(num_loops: int) -> str:
    """Token value of a loop count: ``"0"`` .. ``"4"``, then ``"5+"``."""
    return f"{LOOP_COUNT_MAX}+" if num_loops >= LOOP_COUNT_MAX else str(int(num_loops))


def loop_duration_values() -> list[str]:
    """Token values of the 7 loop duration bins: ``"0-6"``, ``"6-8"``, ..., ``"32+"``."""
    edges = (0, *LOOP_DURATION_EDGES_BEATS)
    return [f"{lo}-{hi}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)] + [f"{edges[-1]}+"]


def loop_duration_value(duration_beats: float) -> str:
    """Bin of a loop duration: bins are ``[lo, hi)`` beats, the last one open-ended."""
    values = loop_duration_values()
    for i, edge in enumerate(LOOP_DURATION_EDGES_BEATS):
        if duration_beats < edge:
            return values[i]
    return values[-1]


def dominant_loop_duration(durations_beats: Sequence[float]) -> str | None:
    """Bin shared by most of a track's loops (ties go to the longer bin), None without loops."""
    if len(durations_beats) == 0:
        return None
    counts = Counter(loop_duration_value(d) for d in durations_beats)
    order = {v: i for i, v in enumerate(loop_duration_values())}
    return max(counts, key=lambda v: (counts[v], order[v]))


class TrackNOMML(TrackTokens, AttributeControl):
    """NOMML of a track (Note Onset Median Metric Level, 0..12), one token ``ACTrackNOMML_x``.

    Without a :class:`TrackValues` (e.g. called from MidiTok's random AC indexes) it falls
    back on the notes it is given, which is only right for tracks that are not quantized.
    """

    def __init__(self) -> None:
        super().__init__(tokens=[f"{NOMML_TYPE}_{level}" for level in range(NUM_LEVELS)])

    def track_tokens(self, notes: ScoreNotes) -> list[list[str]]:
        """``ACTrackNOMML_x`` of each track from its raw-tick value (else from the notes' ticks)."""
        out = []
        for t, values in enumerate(notes.values):
            if values is not None:
                level = values.nomml
            else:
                level = nomml_from_onsets(notes.soa["time"][notes.starts[t]:notes.starts[t + 1]], notes.tpq)
            out.append([] if level is None else [f"{NOMML_TYPE}_{int(level)}"])
        return out

    def compute(self, track, time_division, ticks_bars, ticks_beats, bars_idx) -> list[Event]:
        """MidiTok's interface (see class doc)."""
        if isinstance(bars_idx, TrackValues):
            return [] if bars_idx.nomml is None else [Event(NOMML_TYPE, int(bars_idx.nomml), -1)]
        level = track_nomml(track, time_division)
        return [] if level is None else [Event(NOMML_TYPE, level, -1)]


class TrackLoopCount(TrackTokens, AttributeControl):
    """Number of loops data prep found in the track: ``ACTrackLoopCount_0`` .. ``_5+``."""

    def __init__(self) -> None:
        values = [loop_count_value(n) for n in range(LOOP_COUNT_MAX + 1)]
        super().__init__(tokens=[f"{LOOP_COUNT_TYPE}_{v}" for v in values])

    def track_tokens(self, notes: ScoreNotes) -> list[list[str]]:
        """The count token of each track; nothing when its loops are unknown."""
        out = []
        for values in notes.values:
            durations = None if values is None else values.loop_durations_beats
            out.append([] if durations is None else [f"{LOOP_COUNT_TYPE}_{loop_count_value(len(durations))}"])
        return out


class TrackLoopDuration(TrackTokens, AttributeControl):
    """Duration bin of the track's loops (edges 6, 8, 12, 16, 24, 32 beats; 7 bins).

    A track with several loops gets the bin most of them fall in; a track without loops
    gets no token (its ``ACTrackLoopCount_0`` already says so).
    """

    def __init__(self) -> None:
        super().__init__(tokens=[f"{LOOP_DURATION_TYPE}_{v}" for v in loop_duration_values()])

    def track_tokens(self, notes: ScoreNotes) -> list[list[str]]:
        """The duration token of each track, or nothing without (known) loops."""
        out = []
        for values in notes.values:
            durations = None if values is None else values.loop_durations_beats
            value = None if durations is None else dominant_loop_duration(durations)
            out.append([] if value is None else [f"{LOOP_DURATION_TYPE}_{value}"])
        return out
