"""Microtiming for the expressive mode: each note's offset from its quantized position.

The tokenizer quantizes onsets to its grid (``P`` positions per beat); in expressive
mode every note whose onset is off that grid gets a ``MicroTiming_d`` token after its
``Duration``, ``d`` being the signed offset in ticks of a finer resolution ``R``
(``microtiming_resolution`` ticks per beat), as MIDI-GPT's DELTA tokens do. Decoded
scores are written at ``R`` ticks per quarter.

Choice of ``R`` and of the rounding, so that a track decodes with the NOMML it had:
NOMML's grids are the binary ones down to 1/32 beat and the ternary ones down to 1/48
beat, all multiples of 1/96 beat. With ``R`` a multiple of 96, every on-grid onset is an
integer tick at ``R`` and converts exactly. An off-grid onset rounded to ``R`` can land
on a grid tick (with ``R = 192`` a third of the ticks are grid ticks), which would turn a
level-12 onset into a lower level and drag the median down. So an off-grid onset that
rounds onto a grid tick is moved to the neighbouring tick on its side of the true
position instead: for ``R >= 192`` both neighbours of a grid tick are off every grid, and
the error stays below one tick, i.e. below 1/R beat. Every onset keeps its grid class,
on-grid ones keep their exact level, so the median level -- the NOMML -- is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from symusic import Note

from mmmlib.core.errors import ConfigError

if TYPE_CHECKING:
    from symusic import Score

GRID_TICKS_PER_BEAT = 96  # lcm of 32 and 48: every NOMML grid is a multiple of 1/96 beat
MIN_RESOLUTION = 2 * GRID_TICKS_PER_BEAT
MICROTIMING_TYPE = "MicroTiming"


def check_resolution(resolution: int, positions_per_beat: int) -> None:
    """Raise :class:`~mmmlib.core.errors.ConfigError` unless ``resolution`` keeps grid classes (see module doc).

    :param resolution: microtiming ticks per beat (``R``).
    :param positions_per_beat: the tokenizer's decode ticks per quarter, which ``R`` must
        be a multiple of so that quantized positions convert exactly.
    """
    if resolution < MIN_RESOLUTION or resolution % GRID_TICKS_PER_BEAT:
        raise ConfigError(
            "microtiming_resolution", f"must be a multiple of {GRID_TICKS_PER_BEAT} and >= "
            f"{MIN_RESOLUTION} so that NOMML survives a round trip, got {resolution}"
        )
    if resolution % positions_per_beat:
        raise ConfigError(
            "microtiming_resolution", f"({resolution}) must be a multiple of the tokenizer's "
            f"ticks per quarter ({positions_per_beat})"
        )


def is_on_grid(ticks: np.ndarray, tpq: int) -> np.ndarray:
    """Whether each tick is on one of NOMML's grids (level < 12) at ``tpq``.

    Every binary grid is a subset of the 1/32-beat grid and every ternary one of the
    1/48-beat grid, so two modulos decide what :func:`~mmmlib.data.nomml.onset_levels` finds
    with twelve.
    """
    ticks = np.asarray(ticks, dtype=np.int64)
    return ((ticks * 32) % tpq == 0) | ((ticks * 48) % tpq == 0)


def rescale_onsets(onsets: np.ndarray, tpq: int, new_tpq: int) -> np.ndarray:
    """Onsets converted to ``new_tpq``, each keeping its grid class (see module doc).

    :param onsets: onset ticks at ``tpq``.
    :param tpq: ticks per quarter of ``onsets``.
    :param new_tpq: target ticks per quarter, a multiple of 96 and >= 192.
    :return: int64 onsets at ``new_tpq``, off by less than one tick of ``new_tpq``.
    """
    ticks = np.asarray(onsets, dtype=np.int64)
    scaled_twice = 2 * ticks * new_tpq  # exact rational arithmetic: x = scaled_twice / (2 tpq)
    rounded = (scaled_twice + tpq) // (2 * tpq)
    moved = ~is_on_grid(ticks, tpq) & is_on_grid(rounded, new_tpq)
    side = np.where(scaled_twice > 2 * tpq * rounded, 1, -1)
    rounded[moved] += side[moved]
    return np.maximum(rounded, 0)


def rescale_score(score: Score, new_tpq: int) -> Score:
    """Copy of ``score`` at ``new_tpq``, note onsets converted by :func:`rescale_onsets`.

    Tempos, time signatures and the rest go through ``Score.resample``; the notes are
    rebuilt from the original ticks in their original order, so that note ``i`` of each
    track is still note ``i`` of the input.
    """
    tpq = score.ticks_per_quarter
    out = score.resample(new_tpq, min_dur=1)
    for track_in, track_out in zip(score.tracks, out.tracks, strict=False):
        soa = track_in.notes.numpy()
        if len(soa["time"]) == 0:
            continue
        onsets = rescale_onsets(soa["time"], tpq, new_tpq)
        ends = (2 * (soa["time"].astype(np.int64) + soa["duration"]) * new_tpq + tpq) // (2 * tpq)
        durations = np.maximum(ends - onsets, 1)
        track_out.notes = Note.from_numpy(
            time=onsets.astype(np.int32),
            duration=durations.astype(np.int32),
            pitch=soa["pitch"],
            velocity=soa["velocity"],
        )
    return out


def match_notes(
    src_time: np.ndarray, src_pitch: np.ndarray, dst_time: np.ndarray, dst_pitch: np.ndarray, scale: float
) -> np.ndarray:
    """Index in the source notes of the note each quantized note comes from.

    MidiTok's preprocessing quantizes, sorts and may drop notes, so quantized notes are
    matched back to the source note of the same pitch nearest to ``dst_time * scale``.

    :param src_time: source onsets.
    :param src_pitch: source pitches.
    :param dst_time: quantized onsets, in ticks that ``scale`` converts to source ticks.
    :param dst_pitch: quantized pitches (each must exist among the source pitches).
    :param scale: source ticks per quantized tick.
    :return: int array, one source index per quantized note.
    """
    big = float(1 << 36)  # pitch-major keys: a pitch's notes never mix with another's
    src_key = src_pitch.astype(np.float64) * big + src_time
    order = np.argsort(src_key, kind="stable")
    sorted_key = src_key[order]
    dst_key = dst_pitch.astype(np.float64) * big + dst_time.astype(np.float64) * scale
    right = np.clip(np.searchsorted(sorted_key, dst_key), 0, len(sorted_key) - 1)
    left = np.clip(right - 1, 0, len(sorted_key) - 1)
    use_left = np.abs(sorted_key[left] - dst_key) <= np.abs(sorted_key[right] - dst_key)
    return order[np.where(use_left, left, right)]


def microtiming_values(max_offset: int) -> list[int]:
    """Offsets that have a token: ``-max_offset .. max_offset`` except 0 (no token = 0)."""
    return [d for d in range(-max_offset, max_offset + 1) if d != 0]


def apply_offsets(score: Score, offsets: list[np.ndarray | None], new_tpq: int) -> Score:
    """Rescale a decoded (quantized) score to ``new_tpq`` and add each note's offset.

    :param score: decoded score whose tpq divides ``new_tpq``.
    :param offsets: per track, one offset (in ``new_tpq`` ticks) per note, or None to
        leave the track quantized.
    :param new_tpq: output ticks per quarter (the microtiming resolution).
    :return: the new score.
    """
    factor = new_tpq // score.ticks_per_quarter
    out = score.resample(new_tpq, min_dur=1)
    for track_in, track_out, track_offsets in zip(score.tracks, out.tracks, offsets, strict=False):
        soa = track_in.notes.numpy()
        onsets = soa["time"].astype(np.int64) * factor
        if track_offsets is not None:
            onsets = np.maximum(onsets + track_offsets, 0)
        track_out.notes = Note.from_numpy(
            time=onsets.astype(np.int32),
            duration=(soa["duration"].astype(np.int64) * factor).astype(np.int32),
            pitch=soa["pitch"],
            velocity=soa["velocity"],
        )
    return out
