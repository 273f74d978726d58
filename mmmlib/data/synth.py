"""The embedded synthetic corpus: seeded multitrack MIDI files with a ground-truth manifest.

Each file has a drums, bass, chords and/or lead track (GM programs varied per role), a time
signature among 4/4, 3/4 and 6/8, 70-160 BPM, 8-32 bars and a ticks-per-quarter among
:data:`TICKS_PER_QUARTER`. Each track has one timing style, whose NOMML is fixed by design:

============  =====  ======================================================================
style         NOMML  onsets
============  =====  ======================================================================
quarter       0      on the beats only
eighth        2      eighths, more off-beat eighths than on-beat onsets
sixteenth     4      sixteenths, more "e"/"a" onsets than beat and "and" onsets together
triplet       1      eighth triplets (levels 0, 3 and 1 in turn), neither 0 nor 3 a half
swing         1      swung eighths (on-beat, and 2/3 of the beat: level 1 on even beats,
                     3 on odd ones), neither 0 nor 3 a half
expressive    12     a performance: microtiming off every grid, velocity and duration jitter
============  =====  ======================================================================

Why the median lands on the style's level: a track's NOMML is ``int(median(levels))``, which
equals the target level exactly when fewer than half the onsets sit below it and fewer than
half above it. :func:`_balance` enforces that in every bar (so in every track), counting
onsets: each track has a constant number of notes per onset. Expressive tracks need
``tpq >= 384`` so that jittered onsets can all be moved off the finest grids (at tpq 96
those grids are 3 and 2 ticks apart); each onset is nudged by a tick until it is off.

Use :func:`write_corpus` (or ``python -m mmmlib.data.synth OUT_DIR --num-files N --seed S``) for
a folder of files plus ``manifest.csv``, :func:`generate_score` for one score in memory.

Loops are planted to be exactly what :func:`mmmlib.data.loops.detect_loops` reports: a pattern
of 1, 2 or 4 bars (2 or 4 in 3/4, so that it lasts at least 4 beats) starts at bar >= 1
after intro bars that differ from its last bar, is repeated 2-6 times, and has pairwise
different first note sets in its bars (no shorter loop inside it). The detector reports
the first period: ``loop_start_tick`` = first pattern bar, ``loop_end_tick`` = one period
later. Through-composed tracks (random pitches and durations) and expressive tracks have
no planted loop.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from symusic import Note, Score, Tempo, TimeSignature, Track

from mmmlib.data.nomml import EXPRESSIVE_LEVEL, onset_levels

TICKS_PER_QUARTER = (96, 120, 192, 384, 480, 960)  # all divisible by 12: triplets and 16ths
MIN_EXPRESSIVE_TPQ = 384
TIME_SIGNATURES = ((4, 4), (3, 4), (6, 8))
TEMPO_RANGE_QPM = (70, 160)
NUM_BARS_RANGE = (8, 32)
MAX_REPETITIONS = 6
MAX_INTRO_BARS = 3  # few: 6+ silent bars in a row would repeat as barline-only "loops"
MIN_ONSETS_PER_BEAT = 0.6  # the detector keeps loops with >= 0.5 note sets per beat
THROUGH_COMPOSED_PROB = 0.25  # melodic tracks only: drums loop, or are expressive
EXPRESSIVE_PROB = 0.2  # per track, in files with tpq >= MIN_EXPRESSIVE_TPQ
ROLE_PROB = {"drums": 0.85, "bass": 0.9, "chords": 0.9, "lead": 0.75}
PROGRAMS = {  # GM programs; for drums the kit (standard, room, power, electronic, 808, jazz, brush)
    "drums": (0, 8, 16, 24, 25, 32, 40),
    "bass": (32, 33, 34, 35, 36, 38, 39),
    "chords": (0, 4, 5, 16, 19, 24, 25, 48, 49, 88, 89, 90),
    "lead": (11, 40, 56, 65, 66, 71, 73, 80, 81),
}
STYLE_NOMML = {
    "quarter": 0,
    "eighth": 2,
    "sixteenth": 4,
    "triplet": 1,
    "swing": 1,
    "expressive": EXPRESSIVE_LEVEL,
}
# One quarter note of each style: (offset as a fraction (num, den) of the quarter, keep probability).
STYLE_SLOTS = {
    "quarter": (((0, 1), 1.0),),
    "eighth": (((0, 1), 0.5), ((1, 2), 0.9)),
    "sixteenth": (((0, 1), 0.5), ((1, 4), 0.85), ((1, 2), 0.35), ((3, 4), 0.85)),
    "triplet": (((0, 1), 0.7), ((1, 3), 0.85), ((2, 3), 0.85)),
    "swing": (((0, 1), 0.6), ((2, 3), 0.95)),
}
# 6/8 is felt in eighths: no quarter style (too sparse per eighth beat), no triplets or swing.
STYLES_BY_METER = {
    (4, 4): ("quarter", "eighth", "sixteenth", "triplet", "swing", "expressive"),
    (3, 4): ("quarter", "eighth", "sixteenth", "triplet", "swing", "expressive"),
    (6, 8): ("eighth", "sixteenth", "expressive"),
}
PATTERN_BARS_BY_METER = {(4, 4): (1, 2, 4), (3, 4): (2, 4), (6, 8): (1, 2, 4)}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PROGRESSIONS = ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (5, 3, 0, 4), (0, 6, 5, 4), (1, 4, 0, 0))
KICK, SNARE, TOMS, CRASH = 36, 38, (41, 43, 45, 47, 48, 50), 49
HATS = (42, 44, 51, 70, 82)  # closed and pedal hi-hat, ride, maracas, shaker
# Clap, open hat, ride bell, cowbell, claves, wood block: never played by _drum_hit, so a
# marked set can equal no unmarked one.
DRUM_MARKERS = (39, 46, 53, 56, 75, 76)
PITCH_VARIANTS = (12, -12, 7, -5, 5, -7)  # a bar's first note moved, to tell bars apart
# Manifest columns describing the planted loop (empty for tracks without one).
LOOP_COLUMNS = (
    "loop_start_tick",
    "loop_end_tick",
    "loop_start_bar",
    "pattern_bars",
    "repetitions",
    "loop_duration_beats",
    "loop_note_density",
)


@dataclass(frozen=True)
class Meter:
    """Time signature and resolution of one file."""

    numerator: int
    denominator: int
    tpq: int

    @property
    def bar_ticks(self) -> int:
        return self.tpq * 4 * self.numerator // self.denominator

    @property
    def quarters_per_bar(self) -> int:
        return 4 * self.numerator // self.denominator

    @property
    def beats_per_bar(self) -> int:
        """Beats as miditok (and the loop detector) counts them: the denominator's note."""
        return self.numerator

    @property
    def strong_ticks(self) -> int:
        """Spacing of kick/snare beats: the quarter, or the dotted quarter in 6/8."""
        return 3 * self.tpq // 2 if self.denominator == 8 else self.tpq


@dataclass
class Voice:
    """Pitch choices of one track: its role, key, and notes per onset (constant per track)."""

    role: str
    key_root: int
    scale: tuple[int, ...]
    notes_per_onset: int
    hat: int = 42
    lead_step: int = 14  # lead random walk, in scale steps above C3

    def scale_pitch(self, step: int, base: int) -> int:
        return base + self.key_root + 12 * (step // 7) + self.scale[step % 7]

    def pitches(self, rng: np.random.Generator, pos: int, degree: int, meter: Meter) -> tuple[int, ...]:
        """Sorted pitches of one onset at ``pos`` ticks into a bar on chord ``degree``."""
        return tuple(sorted(self._pitches(rng, pos, degree, meter)))

    def _pitches(self, rng: np.random.Generator, pos: int, degree: int, meter: Meter) -> tuple[int, ...]:
        if self.role == "fill":  # drum fills: toms and a crash, never in a drum pattern
            first = CRASH if pos == 0 else _pick(rng, TOMS)
            return (first, KICK)[: self.notes_per_onset]
        if self.role == "drums":
            return self._drum_hit(rng, pos, meter)
        if self.role == "bass":
            step = degree + (0 if pos == 0 else _pick(rng, (0, 0, 4, 7, 2)))
            return (self.scale_pitch(step, 28),)
        if self.role == "chords":
            steps = [degree + 2 * k for k in range(self.notes_per_onset)]
            if rng.random() < 0.2:  # an inversion now and then
                steps = steps[1:] + [steps[0] + 7]
            return tuple(self.scale_pitch(s, 48) for s in steps)
        self.lead_step = min(22, max(8, self.lead_step + int(rng.integers(-3, 4))))
        return (self.scale_pitch(self.lead_step, 36),)

    def _drum_hit(self, rng: np.random.Generator, pos: int, meter: Meter) -> tuple[int, ...]:
        if pos % meter.strong_ticks == 0:
            main = SNARE if (pos // meter.strong_ticks) % 2 else KICK
        else:
            main = _pick(rng, (self.hat, self.hat, self.hat, KICK, 37))
        if self.notes_per_onset == 1:
            return (main,)
        other = self.hat if main != self.hat else _pick(rng, (KICK, 54, 70 if self.hat != 70 else 82))
        return (main, other)

    def variant(self, pitches: tuple[int, ...], attempt: int) -> tuple[int, ...]:
        """A recognisably different version of ``pitches`` (attempt 0, 1, ... all differ)."""
        if self.role == "drums":
            return tuple(sorted((DRUM_MARKERS[attempt % len(DRUM_MARKERS)],) + pitches[1:]))
        if len(pitches) == 1:
            return (pitches[0] + PITCH_VARIANTS[attempt % len(PITCH_VARIANTS)],)
        voicing = sorted(pitches)
        for _ in range(attempt + 1):  # rotate the closed voicing: lowest note up an octave
            voicing = voicing[1:] + [voicing[0] + 12]
        return tuple(voicing)


def _pick(rng: np.random.Generator, options: Sequence):
    """One element of ``options``, uniformly (faster than ``rng.choice`` on small tuples)."""
    return options[int(rng.integers(len(options)))]


def _balance(
    rng: np.random.Generator, chosen: list[bool], levels: list[int], target: int, min_onsets: int
) -> list[bool]:
    """Add target-level slots, then drop off-level onsets, until the median is ``target``.

    With ``n`` onsets, ``int(median) == target`` whenever ``2 * below < n`` and
    ``2 * above < n``; target-level onsets never hurt, so they are added first (they also
    give the density loops need). Slot 0, the downbeat, is always kept.

    :return: which slots are kept.
    """
    chosen = [True] + list(chosen[1:])
    slots = range(len(levels))
    while sum(chosen) < min_onsets and (free := [i for i in slots if not chosen[i] and levels[i] == target]):
        chosen[_pick(rng, free)] = True
    while True:
        num = sum(chosen)
        below = [i for i in slots if chosen[i] and levels[i] < target]
        above = [i for i in slots if chosen[i] and levels[i] > target]
        if 2 * len(below) < num and 2 * len(above) < num:
            return chosen
        free = [i for i in slots if not chosen[i] and levels[i] == target]
        group = [i for i in (below if 2 * len(below) >= num else above) if i != 0]
        if not free and not group:  # the downbeat alone is half: outweigh it from above
            free = [i for i in slots if not chosen[i] and levels[i] > target]
        if free:
            chosen[_pick(rng, free)] = True
        else:
            chosen[_pick(rng, group)] = False


@functools.cache
def _bar_slots(style: str, meter: Meter, phase: int) -> tuple[tuple[int, ...], np.ndarray, tuple[int, ...]]:
    """Slots of a bar: ticks into the bar, keep probabilities, NOMML levels.

    :param phase: bar start modulo ``2 * tpq``, all the levels depend on (swing and
        triplet off-beats alternate between levels 1 and 3 from one beat to the next).
    """
    tpq = meter.tpq
    slots = [
        (q * tpq + tpq * num // den, prob)
        for q in range(meter.quarters_per_bar)
        for (num, den), prob in STYLE_SLOTS[style]
    ]
    ticks = np.array([tick for tick, _ in slots], dtype=np.int64)
    levels = onset_levels(ticks + phase, tpq)
    return tuple(ticks.tolist()), np.array([prob for _, prob in slots]), tuple(levels.tolist())


def bar_onsets(rng: np.random.Generator, style: str, meter: Meter, bar_start: int) -> list[int]:
    """Onset ticks of one bar in a (non-expressive) timing style, balanced for its NOMML.

    :param style: a key of :data:`STYLE_SLOTS`.
    :param bar_start: absolute tick of the bar.
    :return: sorted absolute ticks; the downbeat is always among them.
    """
    ticks, probs, levels = _bar_slots(style, meter, bar_start % (2 * meter.tpq))
    keep = (rng.random(len(ticks)) < probs).tolist()
    min_onsets = int(np.ceil(MIN_ONSETS_PER_BEAT * meter.beats_per_bar))
    chosen = _balance(rng, keep, list(levels), STYLE_NOMML[style], min_onsets)
    return [bar_start + tick for tick, keep_it in zip(ticks, chosen, strict=True) if keep_it]


def _bar_events(
    rng: np.random.Generator, voice: Voice, style: str, meter: Meter, bar: int, degree: int
) -> list[list]:
    """Events ``[tick, pitches, duration, velocity]`` of one bar (durations set later)."""
    bar_start = bar * meter.bar_ticks
    ticks = bar_onsets(rng, style, meter, bar_start)
    events = []
    for tick, jitter in zip(ticks, rng.integers(-6, 7, len(ticks)).tolist(), strict=True):
        pos = tick - bar_start
        accent = 100 if pos == 0 else 88 if pos % meter.strong_ticks == 0 else 72
        events.append([tick, voice.pitches(rng, pos, degree, meter), 0, accent + jitter])
    return events


def _set_durations(rng: np.random.Generator | None, events: list[list], end_tick: int, gate: float) -> None:
    """Durations from the gap to the next onset (or ``end_tick``): ``gate`` of it, or random.

    Every note ends before the next onset starts, so no two notes of a pitch overlap and
    the MIDI round trip keeps every duration. With ``rng`` the durations are random in
    [gap/4, gap): through-composed notes then never repeat a pattern by chance.
    """
    fractions = rng.uniform(0.25, 1.0, len(events)).tolist() if rng is not None else [gate] * len(events)
    for idx, (event, fraction) in enumerate(zip(events, fractions, strict=True)):
        gap = (events[idx + 1][0] if idx + 1 < len(events) else end_tick) - event[0]
        event[2] = max(1, min(int(fraction * gap), gap - 1))


def _make_bars_distinct(voice: Voice, bars: list[list[list]], bar_ticks: int) -> None:
    """Give every bar of a pattern its own first note set after the barline.

    The detector starts matches at barlines; two pattern bars starting alike would be
    found as a loop shorter than the pattern. Also keeps the first four sets of the
    first bar from being all alike.
    """
    seen: set[tuple[int, ...]] = set()
    inners = [[e for e in events if e[0] % bar_ticks] for events in bars]
    for inner in inners:  # the downbeat set comes before the barline in the detector's order
        first = inner[0]
        original, attempt = first[1], 0
        while first[1] in seen:
            first[1], attempt = voice.variant(original, attempt), attempt + 1
        seen.add(first[1])
    head = inners[0][:4]
    if len(head) == 4 and len({e[1] for e in head}) == 1:
        head[1][1] = voice.variant(head[1][1], 0)


def _inner_signature(events: list[list], start: int, end: int) -> list[tuple]:
    """(duration, pitch set) of the onsets strictly inside ``(start, end)``: what the detector compares."""
    return [(e[2], frozenset(e[1])) for e in events if start < e[0] < end]


def _pattern_events(
    rng: np.random.Generator,
    voice: Voice,
    style: str,
    meter: Meter,
    start_bar: int,
    num_bars: int,
    progression: tuple[int, ...],
    gate: float,
) -> list[list]:
    """One period of a looped pattern, at its first position (``start_bar``)."""
    bars = [
        _bar_events(rng, voice, style, meter, bar, progression[bar % len(progression)])
        for bar in range(start_bar, start_bar + num_bars)
    ]
    _make_bars_distinct(voice, bars, meter.bar_ticks)
    events = [event for bar in bars for event in bar]
    # the note after the last one is the pattern's own downbeat, one period later
    _set_durations(None, events, (start_bar + num_bars) * meter.bar_ticks, gate)
    return events


def _free_events(
    rng: np.random.Generator,
    voice: Voice,
    style: str,
    meter: Meter,
    bars: range,
    progression: tuple[int, ...],
) -> list[list]:
    """Through-composed bars: random pitches, durations and velocities (no repetition)."""
    events = [
        event
        for bar in bars
        for event in _bar_events(rng, voice, style, meter, bar, progression[bar % len(progression)])
    ]
    _set_durations(rng, events, bars.stop * meter.bar_ticks, 0.0)
    for event in events:
        event[3] = int(rng.integers(55, 116))
    return events


def _plan_loop(rng: np.random.Generator, meter: Meter, num_bars: int) -> tuple[int, int]:
    """(pattern bars, first pattern bar): room for >= 1 intro bar and 2 repetitions (3 of 1 bar)."""
    options = [
        n for n in PATTERN_BARS_BY_METER[(meter.numerator, meter.denominator)] if 1 + 2 * n <= num_bars
    ]
    pattern_bars = _pick(rng, options)
    min_reps = 3 if pattern_bars == 1 else 2
    start_bar = int(rng.integers(1, min(MAX_INTRO_BARS, num_bars - pattern_bars * min_reps) + 1))
    return pattern_bars, start_bar


def _repeat(pattern: list[list], period: int, reps: int) -> list[list]:
    """``reps`` copies of ``pattern``, one every ``period`` ticks."""
    return [[e[0] + rep * period, e[1], e[2], e[3]] for rep in range(reps) for e in pattern]


def _intro(
    rng: np.random.Generator,
    voice: Voice,
    style: str,
    meter: Meter,
    pattern: list[list],
    start_bar: int,
    pattern_bars: int,
    progression: tuple[int, ...],
) -> list[list]:
    """Free bars (maybe none) before the pattern; the last one never equals the pattern's last bar.

    If it did, the detector's match would start a bar early and miss the planted start.
    """
    intro = _free_events(
        rng, voice, style, meter, range(int(rng.integers(0, start_bar + 1)), start_bar), progression
    )
    bar_ticks, start_tick = meter.bar_ticks, start_bar * meter.bar_ticks
    pattern_end = start_tick + pattern_bars * bar_ticks
    before = _inner_signature(intro, start_tick - bar_ticks, start_tick)
    if before == _inner_signature(pattern, pattern_end - bar_ticks, pattern_end):
        intro = [e for e in intro if e[0] < start_tick - bar_ticks]  # a silent bar differs
    return intro


def _loop_track(
    rng: np.random.Generator,
    voice: Voice,
    style: str,
    meter: Meter,
    num_bars: int,
    progression: tuple[int, ...],
) -> tuple[list[list], dict]:
    """Intro, a pattern repeated, outro; returns the events and the planted loop."""
    pattern_bars, start_bar = _plan_loop(rng, meter, num_bars)
    gate = 0.4 if voice.role == "drums" else float(rng.uniform(0.55, 0.95))
    pattern = _pattern_events(rng, voice, style, meter, start_bar, pattern_bars, progression, gate)
    # The detector needs the 4 sets after the barline of a repetition to match, and the next
    # downbeat is the outro's after the last one: short patterns need a third repetition.
    sets_after_barline = len(pattern) - 1 + pattern_bars - 1
    min_reps = 2 if sets_after_barline >= 4 else 3
    reps = int(rng.integers(min_reps, min(MAX_REPETITIONS, (num_bars - start_bar) // pattern_bars) + 1))
    # drum intros and outros are fills (toms, crash): a drum pattern never plays them
    is_drums = voice.role == "drums"
    filler = Voice("fill", voice.key_root, voice.scale, voice.notes_per_onset) if is_drums else voice
    intro = _intro(rng, filler, style, meter, pattern, start_bar, pattern_bars, progression)
    outro_bars = range(start_bar + pattern_bars * reps, num_bars)
    outro = _free_events(rng, filler, style, meter, outro_bars, progression) if rng.random() < 0.7 else []
    start_tick, period = start_bar * meter.bar_ticks, pattern_bars * meter.bar_ticks
    loop = {
        "loop_start_tick": start_tick,
        "loop_end_tick": start_tick + period,
        "loop_start_bar": start_bar,
        "pattern_bars": pattern_bars,
        "repetitions": reps,
        "loop_duration_beats": pattern_bars * meter.beats_per_bar,
        "loop_note_density": len(pattern) / (pattern_bars * meter.beats_per_bar),
    }
    return intro + _repeat(pattern, period, reps) + outro, loop


def _humanize(rng: np.random.Generator, events: list[list], tpq: int) -> list[list]:
    """A performance of ``events``: every note (chords rolled) moved off every grid.

    Onsets move by a few percent of a beat, then by single ticks until no binary or
    ternary grid down to 1/128 notes holds them (NOMML level 12); durations and
    velocities vary; a note ends before the next note of its pitch starts.
    """
    flat = [
        (tick, pitch, duration, velocity) for tick, pitches, duration, velocity in events for pitch in pitches
    ]
    tick, pitch, duration, velocity = (
        np.array(column, dtype=np.int64).reshape(-1) for column in zip(*flat, strict=True)
    )
    shift = np.clip(rng.normal(0.0, 0.03 * tpq, len(flat)), -0.08 * tpq, 0.08 * tpq)
    tick = np.maximum(tick + shift.astype(np.int64), 1)
    while (on_grid := onset_levels(tick, tpq) != EXPRESSIVE_LEVEL).any():
        tick[on_grid] += 1
    duration = np.maximum((duration * rng.uniform(0.75, 1.15, len(flat))).astype(np.int64), 1)
    velocity = np.clip(velocity + rng.normal(0.0, 14.0, len(flat)), 20, 127).astype(np.int64)
    notes = [
        list(row)
        for row in zip(tick.tolist(), pitch.tolist(), duration.tolist(), velocity.tolist(), strict=True)
    ]
    notes.sort(key=lambda n: (n[1], n[0]))
    for note, after in zip(notes, notes[1:], strict=False):
        if after[1] == note[1]:
            note[2] = max(1, min(note[2], after[0] - note[0] - 1))
    return sorted([n[0], (n[1],), n[2], n[3]] for n in notes)


def _expressive_track(
    rng: np.random.Generator, voice: Voice, meter: Meter, num_bars: int, progression: tuple[int, ...]
) -> list[list]:
    """A performed track: a repeated pattern or free bars, then :func:`_humanize`."""
    meter_styles = STYLES_BY_METER[(meter.numerator, meter.denominator)]
    style = _pick(rng, [s for s in ("eighth", "sixteenth", "triplet") if s in meter_styles])
    if rng.random() < 0.5:  # a loop as played: no two repetitions are equal
        pattern_bars = _pick(rng, (1, 2))
        pattern = _pattern_events(rng, voice, style, meter, 0, pattern_bars, progression, 0.8)
        events = _repeat(pattern, pattern_bars * meter.bar_ticks, num_bars // pattern_bars)
    else:
        events = _free_events(rng, voice, style, meter, range(num_bars), progression)
    return _humanize(rng, events, meter.tpq)


def _events_to_track(events: list[list], name: str, program: int, is_drum: bool) -> Track:
    """A symusic track from ``[tick, pitches, duration, velocity]`` events."""
    notes = sorted((e[0], pitch, e[2], e[3]) for e in events for pitch in e[1])
    rows = np.array(notes, dtype=np.int64).reshape(-1, 4)
    track = Track(name=name, program=program, is_drum=is_drum)
    track.notes = Note.from_numpy(
        time=rows[:, 0].astype(np.int32),
        duration=rows[:, 2].astype(np.int32),
        pitch=rows[:, 1].astype(np.int8),
        velocity=rows[:, 3].astype(np.int8),
    )
    return track


def _track_styles(rng: np.random.Generator, meter: Meter, num_tracks: int) -> list[str]:
    """One timing style per track: mostly the file's base style, expressive only at high tpq."""
    allowed = [s for s in STYLES_BY_METER[(meter.numerator, meter.denominator)] if s != "expressive"]
    base = _pick(rng, allowed)
    can_perform = meter.tpq >= MIN_EXPRESSIVE_TPQ
    styles = []
    for _ in range(num_tracks):
        if can_perform and rng.random() < EXPRESSIVE_PROB:
            styles.append("expressive")
        else:
            styles.append(base if rng.random() < 0.5 else _pick(rng, allowed))
    return styles


def _track_events(
    rng: np.random.Generator,
    voice: Voice,
    style: str,
    meter: Meter,
    num_bars: int,
    progression: tuple[int, ...],
) -> tuple[list[list], dict]:
    """A track's events and its planted loop ({} when expressive or through-composed)."""
    if style == "expressive":
        return _expressive_track(rng, voice, meter, num_bars, progression), {}
    if voice.role != "drums" and rng.random() < THROUGH_COMPOSED_PROB:
        return _free_events(rng, voice, style, meter, range(num_bars), progression), {}
    return _loop_track(rng, voice, style, meter, num_bars, progression)


def generate_score(rng: np.random.Generator, file_name: str = "") -> tuple[Score, list[dict]]:
    """One synthetic multitrack file and the manifest rows of its tracks.

    :param rng: the only source of randomness: the same generator state gives the same score.
    :param file_name: stored in the ``file`` column of the rows.
    :return: a tick-time score and one dict per track (columns as in :func:`write_corpus`).
    """
    numerator, denominator = TIME_SIGNATURES[int(rng.integers(len(TIME_SIGNATURES)))]
    meter = Meter(numerator, denominator, _pick(rng, TICKS_PER_QUARTER))
    qpm = int(rng.integers(TEMPO_RANGE_QPM[0], TEMPO_RANGE_QPM[1] + 1))
    num_bars = int(rng.integers(NUM_BARS_RANGE[0], NUM_BARS_RANGE[1] + 1))
    key_root, scale = int(rng.integers(12)), SCALES[_pick(rng, tuple(SCALES))]
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    roles = [role for role, prob in ROLE_PROB.items() if rng.random() < prob]
    roles = roles if len(roles) >= 2 else ["bass", "chords"]
    score = Score(meter.tpq)
    score.tempos.append(Tempo(0, float(qpm)))
    score.time_signatures.append(TimeSignature(0, numerator, denominator))
    file_columns = {
        "ticks_per_quarter": meter.tpq,
        "time_signature": f"{numerator}/{denominator}",
        "tempo_qpm": qpm,
        "num_bars": num_bars,
    }
    rows = []
    for track_idx, (role, style) in enumerate(zip(roles, _track_styles(rng, meter, len(roles)), strict=True)):
        notes_per_onset = {"drums": int(rng.integers(1, 3)), "chords": int(rng.integers(3, 5))}.get(role, 1)
        voice = Voice(role, key_root, scale, notes_per_onset, hat=_pick(rng, HATS))
        events, loop = _track_events(rng, voice, style, meter, num_bars, progression)
        program = _pick(rng, PROGRAMS[role])
        score.tracks.append(_events_to_track(events, role, program, role == "drums"))
        rows.append(
            {
                "file": file_name,
                "track_idx": track_idx,
                "role": role,
                "program": program,
                "is_drum": role == "drums",
                "timing_style": style,
                "expected_nomml": STYLE_NOMML[style],
                "has_loop": bool(loop),
                **{key: loop.get(key) for key in LOOP_COLUMNS},
                "num_notes": len(score.tracks[-1].notes),
                **file_columns,
            }
        )
    return score, rows


def write_corpus(out_dir: str | Path, num_files: int = 200, seed: int = 0) -> pd.DataFrame:
    """Write ``synth_0000.mid`` ... and ``manifest.csv`` (one row per track) to ``out_dir``.

    File ``i`` comes from ``numpy.random.default_rng([seed, i])``: the same seed writes
    byte-identical files, and a smaller corpus is a prefix of a larger one. Files
    ``synth_NNNN.mid`` left in ``out_dir`` by a larger corpus are deleted, so that the
    folder holds exactly the corpus its manifest describes.

    :param out_dir: folder, created if needed.
    :param num_files: number of MIDI files.
    :param seed: corpus seed.
    :return: the manifest: file, track_idx, role, program, is_drum, timing_style,
        expected_nomml, has_loop, the planted loop (``loop_start_tick``, ``loop_end_tick``,
        ``loop_start_bar``, ``pattern_bars``, ``repetitions``, ``loop_duration_beats``,
        ``loop_note_density``; empty without a loop), num_notes, ticks_per_quarter,
        time_signature, tempo_qpm, num_bars.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("synth_[0-9][0-9][0-9][0-9].mid"):  # from an earlier, larger corpus
        if int(stale.stem[6:]) >= num_files:
            stale.unlink()
    rows: list[dict] = []
    for file_idx in range(num_files):
        name = f"synth_{file_idx:04d}.mid"
        score, file_rows = generate_score(np.random.default_rng([seed, file_idx]), name)
        score.dump_midi(str(out / name))
        rows += file_rows
    manifest = pd.DataFrame(rows)
    for column in LOOP_COLUMNS[:6]:
        manifest[column] = manifest[column].astype("Int64")
    manifest.to_csv(out / "manifest.csv", index=False)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``python -m mmmlib.data.synth OUT_DIR --num-files N --seed S``: write the corpus, print a summary."""
    parser = argparse.ArgumentParser(prog="python -m mmmlib.data.synth", description=main.__doc__)
    parser.add_argument("out_dir", help="folder for the MIDI files and manifest.csv")
    parser.add_argument("--num-files", type=int, default=200, help="number of MIDI files (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    args = parser.parse_args(argv)
    if args.num_files < 1:
        parser.error(f"--num-files must be >= 1, got {args.num_files}")
    began = time.perf_counter()
    manifest = write_corpus(args.out_dir, args.num_files, args.seed)
    seconds = time.perf_counter() - began
    print(
        f"wrote {args.num_files} files, {len(manifest)} tracks, {int(manifest['has_loop'].sum())} planted loops "
        f"to {args.out_dir} in {seconds:.2f} s (seed {args.seed})"
    )
    print(
        manifest.groupby("timing_style")["expected_nomml"]
        .agg(["first", "size"])
        .rename(columns={"first": "nomml", "size": "tracks"})
        .to_string()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
