"""MidiTok's attribute controls, vectorized: same tokens, same settings, a few NumPy passes.

MidiTok's :class:`~miditok.attribute_controls.BarAttributeControl` walks the bars in
Python and searches the notes of each bar from the previous bar's end (quadratic in the
number of bars), ``TrackRepetition`` compares piano-roll slices bar by bar, and every
control reads the track's notes again. With them our encoding was 2-3x slower than plain
MMM. Here each control computes its tokens from a :class:`~mmmlib.tokens.controls.ScoreNotes`
(all tracks read once), for every track and bar at once, in a few NumPy calls;
``compute`` (MidiTok's interface) still works and gives MidiTok's events.

Deliberate differences from MidiTok: a bar with a single note gets its bar controls
(MidiTok skips it), a sparse ``bars_idx`` gives each bar its own notes (MidiTok's would
count the notes of the skipped bars before it), and the track's minimum onset polyphony
is the real minimum (MidiTok's always equals ``polyphony_min``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from miditok import Event
from miditok.attribute_controls import (
    BarNoteDensity,
    BarNoteDuration,
    BarOnsetPolyphony,
    BarPitchClass,
    TrackNoteDensity,
    TrackNoteDuration,
    TrackOnsetPolyphony,
    TrackRepetition,
)

from mmmlib.tokens.controls import ScoreNotes, TrackTokens

if TYPE_CHECKING:
    from collections.abc import Sequence


def _group_bounds(groups: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    return np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))


def _per_track(rows: dict[tuple[int, int], list[str]], num_tracks: int) -> list[dict[int, list[str]]]:
    out: list[dict[int, list[str]]] = [{} for _ in range(num_tracks)]
    for (t, b), tokens in rows.items():
        out[t][b] = tokens
    return out


class BarTokens:
    """Mixin of bar controls: tokens of every bar of every track at once (only ``keep``'s notes).

    ``compute`` (MidiTok's interface, one track, some bars) is derived from :meth:`bar_tokens`.
    """

    def bar_tokens(self, notes: ScoreNotes, keep: np.ndarray) -> dict[tuple[int, int], list[str]]:
        """The control's tokens by ``(track, bar)``."""
        raise NotImplementedError

    def compute(self, track, time_division, ticks_bars, ticks_beats, bars_idx) -> list[Event]:
        """MidiTok's interface: events of the bars in ``bars_idx``, at each bar's first tick."""
        notes = ScoreNotes.of([track], time_division, ticks_bars)
        wanted = np.zeros(notes.num_bars + 1, dtype=bool)
        if isinstance(bars_idx, range) and bars_idx.step == 1:  # "all bars" without a huge list
            wanted[max(bars_idx.start, 0):min(bars_idx.stop, notes.num_bars)] = True
        else:
            wanted[[b for b in bars_idx if 0 <= b < notes.num_bars]] = True
        keep = wanted[notes.bar] & (notes.bar >= 0)
        rows = _per_track(self.bar_tokens(notes, keep), 1)[0] if keep.any() else {}
        return [Event(*t.split("_", 1), int(notes.ticks_bars[b])) for b in sorted(rows) for t in rows[b]]


def _cells(notes: ScoreNotes, keep: np.ndarray) -> np.ndarray:
    """``track * num_bars + bar`` of the kept notes: one cell per bar of each track."""
    return notes.track[keep] * notes.num_bars + notes.bar[keep]


class FastBarOnsetPolyphony(BarTokens, BarOnsetPolyphony):
    """Min and max number of notes per onset in each bar."""

    def bar_tokens(self, notes, keep):
        cells = _cells(notes, keep)
        span = int(notes.soa["time"].max()) + 1 if len(cells) else 1
        _, first, counts = np.unique(cells * span + (notes.soa["time"][keep] - notes.ticks_bars[notes.bar[keep]]),
                                     return_index=True, return_counts=True)
        if len(counts) == 0:
            return {}
        onset_cell = cells[first]
        starts = _group_bounds(onset_cell)
        lows = np.clip(np.minimum.reduceat(counts, starts), self.min_polyphony, self.max_polyphony).tolist()
        highs = np.minimum(np.maximum.reduceat(counts, starts), self.max_polyphony).tolist()
        low_names = [f"ACBarOnsetPolyphonyMin_{v}" for v in range(self.max_polyphony + 1)]
        high_names = [f"ACBarOnsetPolyphonyMax_{v}" for v in range(self.max_polyphony + 1)]
        return {divmod(c, notes.num_bars): [low_names[lo], high_names[hi]]
                for c, lo, hi in zip(onset_cell[starts].tolist(), lows, highs, strict=True)}


class FastBarPitchClass(BarTokens, BarPitchClass):
    """Pitch classes present in each bar, in increasing order."""

    def bar_tokens(self, notes, keep):
        keys = np.unique(_cells(notes, keep) * 12 + notes.soa["pitch"][keep].astype(np.int64) % 12)
        cells, classes = np.divmod(keys, 12)
        bounds = np.append(_group_bounds(cells), len(cells)).tolist()
        names = [f"ACBarPitchClass_{c}" for c in range(12)]
        tokens = [names[c] for c in classes.tolist()]
        return {divmod(int(cells[a]), notes.num_bars): tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)}


class FastBarNoteDensity(BarTokens, BarNoteDensity):
    """Number of notes in each bar (``max+`` from ``density_max`` up)."""

    def bar_tokens(self, notes, keep):
        counts = np.minimum(np.bincount(_cells(notes, keep)), self.density_max)
        names = [f"ACBarNoteDensity_{n}" for n in range(self.density_max)] + [f"ACBarNoteDensity_{self.density_max}+"]
        return {divmod(c, notes.num_bars): [names[counts[c]]] for c in np.flatnonzero(counts).tolist()}


class FastBarNoteDuration(BarTokens, BarNoteDuration):
    """For each note value (whole ... sixteenth), whether a note of that length is in the bar."""

    def bar_tokens(self, notes, keep):
        cells, durations = _cells(notes, keep), notes.soa["duration"][keep]
        size = notes.num_tracks * notes.num_bars
        has = np.stack([np.bincount(cells[durations == notes.tpq * f], minlength=size) > 0 for f in self.factors], 1)
        names = [[f"ACBarNoteDuration{name}_{v}" for v in (0, 1)] for name in self._note_durations]
        present = np.flatnonzero(np.bincount(cells, minlength=size)).tolist()
        return {divmod(c, notes.num_bars): [names[i][v] for i, v in enumerate(row)]
                for c, row in zip(present, has[present].tolist(), strict=True)}


class FastTrackOnsetPolyphony(TrackTokens, TrackOnsetPolyphony):
    """Min and max number of notes per onset in each track (clipped to the token range)."""

    def track_tokens(self, notes: ScoreNotes) -> list[list[str]]:
        span = int(notes.soa["time"].max()) + 1 if len(notes.track) else 1
        _, first, counts = np.unique(notes.track * span + notes.soa["time"], return_index=True, return_counts=True)
        out: list[list[str]] = [[] for _ in range(notes.num_tracks)]
        if len(counts) == 0:
            return out
        onset_track = notes.track[first]
        starts = _group_bounds(onset_track)
        lows = np.clip(np.minimum.reduceat(counts, starts), self.min_polyphony, self.max_polyphony).tolist()
        highs = np.minimum(np.maximum.reduceat(counts, starts), self.max_polyphony).tolist()
        for t, low, high in zip(onset_track[starts].tolist(), lows, highs, strict=True):
            out[t] = [f"ACTrackOnsetPolyphonyMin_{low}", f"ACTrackOnsetPolyphonyMax_{high}"]
        return out


class FastTrackNoteDensity(TrackTokens, TrackNoteDensity):
    """Min and max notes per bar, over the bars up to each track's end (as MidiTok's histogram)."""

    def track_tokens(self, notes: ScoreNotes) -> list[list[str]]:
        nb = notes.num_bars
        counts = np.bincount(notes.track * nb + notes.bar, minlength=notes.num_tracks * nb).reshape(-1, nb)
        # MidiTok's bins: the bars, plus one up to the track's end when it ends after the last bar
        num_bins = np.where(notes.ends > notes.ticks_bars[-1], nb, nb - 1)
        counted = np.arange(nb)[None, :] < num_bins[:, None]
        lows = np.where(counted, counts, np.iinfo(np.int64).max).min(1).tolist()
        highs = np.where(counted, counts, -1).max(1).tolist()
        top, out = f"{self.density_max}+", []
        for t, (low, high) in enumerate(zip(lows, highs, strict=True)):
            if notes.starts[t] == notes.starts[t + 1]:
                out.append([])
            elif low >= self.density_max:
                out.append([f"ACTrackNoteDensityMin_{top}", f"ACTrackNoteDensityMax_{top}"])
            else:
                out.append([f"ACTrackNoteDensityMin_{low}",
                            f"ACTrackNoteDensityMax_{top if high >= self.density_max else high}"])
        return out


class FastTrackNoteDuration(TrackTokens, TrackNoteDuration):
    """For each note value (whole ... sixteenth), whether a note of that length is in each track."""

    def track_tokens(self, notes: ScoreNotes) -> list[list[str]]:
        has = [np.bincount(notes.track[notes.soa["duration"] == notes.tpq * f], minlength=notes.num_tracks) > 0
               for f in self.factors]
        rows = np.stack(has, 1).astype(int).tolist()
        names = [f"ACTrackNoteDuration{name}_" for name in self._note_durations]
        return [[f"{n}{v}" for n, v in zip(names, row, strict=False)] if notes.starts[t] < notes.starts[t + 1] else []
                for t, row in enumerate(rows)]


class FastTrackRepetition(TrackTokens, TrackRepetition):
    """Mean similarity of each bar with the next ones, without the piano roll.

    A bar's piano-roll marks (onset at ``time``, offset at ``time + duration``, per pitch)
    become integer keys relative to the bar start; the similarity of bar ``i`` with bar
    ``i + d`` (``d < num_consecutive_bars``, same length) is the share of ``i``'s marks
    found in ``i + d``, as in MidiTok.
    """

    def track_tokens(self, notes: ScoreNotes) -> list[list[str]]:
        sums, counts = self.similarity_sums(notes)
        out = []
        for total, count in zip(sums.tolist(), counts.tolist(), strict=True):
            idx = int(np.abs(self._bins - total / count).argmin()) if count else -1
            out.append([f"ACTrackRepetition_{self._bins[idx]:.2f}"] if count else [])
        return out

    def similarity_sums(self, notes: ScoreNotes) -> tuple[np.ndarray, np.ndarray]:
        """Per track, the sum and the number of the similarities of its compared pairs of bars."""
        low, high = self._pitch_range
        nt, nb, bars = notes.num_tracks, notes.num_bars, notes.ticks_bars
        inside = (notes.soa["pitch"] >= low) & (notes.soa["pitch"] < high)
        if not inside.any():
            return np.zeros(nt), np.zeros(nt, dtype=np.int64)
        onsets = notes.soa["time"][inside].astype(np.int64)
        ticks = np.concatenate((onsets, onsets + notes.soa["duration"][inside]))
        track = np.tile(notes.track[inside], 2)
        ends = notes.ends + 1  # piano-roll length of each track
        lengths = np.maximum(np.minimum(np.append(bars[1:], np.inf)[None, :], ends[:, None]) - bars[None, :], 0)
        span = int(max(lengths.max(), 1))
        bar = np.searchsorted(bars, ticks, side="right") - 1
        per_cell = 2 * span * 128
        pitch = np.tile(notes.soa["pitch"][inside].astype(np.int64) - low, 2)
        # key = (track, bar, onset/offset, tick in bar, pitch); offsets use the second half of a bar's range
        keys = np.sort((track * nb + bar) * per_cell + (ticks - bars[bar] + np.repeat([0, span], len(onsets))) * 128
                       + pitch)
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]  # unique: a piano roll is boolean
        cell = keys // per_cell
        marks = np.bincount(cell, minlength=nt * nb).reshape(nt, nb)
        ds = np.arange(1, self.num_consecutive_bars)
        shifted = keys[None, :] + ds[:, None] * per_cell  # where each mark would be in bar + d
        hit = keys[np.minimum(np.searchsorted(keys, shifted), len(keys) - 1)] == shifted
        found = np.bincount((ds[:, None] * nt * nb + cell[None, :])[hit], minlength=(len(ds) + 1) * nt * nb)
        found = found[nt * nb:].reshape(len(ds), nt, nb)
        j = np.arange(nb)[None, :] + ds[:, None]  # (d, bar): the compared bar
        valid = (j < nb)[:, None, :] & (bars[None, :] <= ends[:, None])[None] & (marks > 0)[None]
        valid &= lengths[None, :, :] == lengths[:, np.minimum(j, nb - 1)].transpose(1, 0, 2)
        sims = np.where(valid, found / np.maximum(marks, 1)[None], 0.0)
        return sims.sum(axis=(0, 2)), valid.sum(axis=(0, 2))


FAST_CONTROLS = {
    BarOnsetPolyphony: FastBarOnsetPolyphony,
    BarPitchClass: FastBarPitchClass,
    BarNoteDensity: FastBarNoteDensity,
    BarNoteDuration: FastBarNoteDuration,
    TrackOnsetPolyphony: FastTrackOnsetPolyphony,
    TrackNoteDensity: FastTrackNoteDensity,
    TrackNoteDuration: FastTrackNoteDuration,
    TrackRepetition: FastTrackRepetition,
}


def fast_version(control):
    """The vectorized twin of a MidiTok control (same tokens and settings), else the control."""
    fast = FAST_CONTROLS.get(type(control))
    if fast is None:
        return control
    twin = fast.__new__(fast)
    twin.__dict__.update(control.__dict__)
    return twin


def track_control_tokens(controls: Sequence[TrackTokens], notes: ScoreNotes) -> list[list[str]]:
    """Header tokens of each track: every track control's tokens, in the controls' order."""
    out: list[list[str]] = [[] for _ in range(notes.num_tracks)]
    for control in controls:
        for tokens, more in zip(out, control.track_tokens(notes), strict=True):
            tokens += more
    return out


def bar_control_tokens(controls: Sequence[BarTokens], notes: ScoreNotes) -> list[dict[int, list[str]]]:
    """Tokens of several bar controls for every bar of every track: per track, by bar index."""
    keep = notes.bar >= 0
    rows: dict[tuple[int, int], list[str]] = {}
    if keep.any():
        for control in controls:
            for cell, tokens in control.bar_tokens(notes, keep).items():
                rows.setdefault(cell, []).extend(tokens)
    return _per_track(rows, notes.num_tracks)
