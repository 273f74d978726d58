"""One bar of the synthetic corpus: the onsets of a timing style and the pitches of a role.

Why the median lands on the style's level: a track's NOMML is ``int(median(levels))``, which
equals the target level exactly when fewer than half the onsets sit below it and fewer than
half above it. ``_balance`` enforces that in every bar (so in every track), counting
onsets: each track has a constant number of notes per onset.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmmlib.data.nomml import EXPRESSIVE_LEVEL, onset_levels

MIN_ONSETS_PER_BEAT = 0.6  # the detector keeps loops with >= 0.5 note sets per beat
STYLE_NOMML = {
    "quarter": 0,
    "eighth": 2,
    "sixteenth": 4,
    "triplet": 1,
    "swing": 1,
    "expressive": EXPRESSIVE_LEVEL,
}
# Fine styles, so that the corpus has every NOMML level: the beat plus a few onsets on the
# level's own grid (ornaments, pushes, rolls), never so many that a bar floods the tokens.
# Binary levels 6, 8, 10 (1/32, 1/64, 1/128 notes); ternary 3, 5, 7, 9, 11 (triplets of
# 1/8, 1/16, 1/32, 1/64, 1/128 notes). Value: (level, grid slots per quarter note).
FINE_STYLES = {
    "triplet8": (3, 3), "triplet16": (5, 6), "thirtysecond": (6, 8), "triplet32": (7, 12),
    "sixtyfourth": (8, 16), "triplet64": (9, 24), "hundredtwentyeighth": (10, 32), "triplet128": (11, 48),
}
FINE_ONSETS_PER_QUARTER = 2.0  # expected level-L onsets per quarter note in a fine style
STYLE_NOMML.update({name: level for name, (level, _) in FINE_STYLES.items()})
# One quarter note of each style: (offset as a fraction (num, den) of the quarter, keep probability).
STYLE_SLOTS = {
    "quarter": (((0, 1), 1.0),),
    "eighth": (((0, 1), 0.5), ((1, 2), 0.9)),
    "sixteenth": (((0, 1), 0.5), ((1, 4), 0.85), ((1, 2), 0.35), ((3, 4), 0.85)),
    "triplet": (((0, 1), 0.7), ((1, 3), 0.85), ((2, 3), 0.85)),
    "swing": (((0, 1), 0.6), ((2, 3), 0.95)),
}


def _fine_slots(level: int, per_quarter: int) -> tuple:
    """The beat, and the slots of a quarter whose level is exactly ``level`` in an even or an
    odd quarter (eighth-note triplets alternate with quarter-note triplets from beat to beat;
    ``_balance`` sorts them out bar by bar)."""
    tpq = 384  # divisible by every grid here (48 slots per quarter)
    ticks = np.arange(1, per_quarter) * tpq // per_quarter
    on_level = (onset_levels(ticks, tpq) == level) | (onset_levels(ticks + tpq, tpq) == level)
    offsets = [int(m) for m in np.arange(1, per_quarter)[on_level]]
    prob = min(0.45, FINE_ONSETS_PER_QUARTER / len(offsets))
    return (((0, 1), 0.6), *(((m, per_quarter), prob) for m in offsets))


STYLE_SLOTS.update({name: _fine_slots(level, per_quarter) for name, (level, per_quarter) in FINE_STYLES.items()})
# 6/8 is felt in eighths: no quarter style (too sparse per eighth beat), no triplets or swing.
STYLES_BY_METER = {
    (4, 4): ("quarter", "eighth", "sixteenth", "triplet", "swing", "expressive", *FINE_STYLES),
    (3, 4): ("quarter", "eighth", "sixteenth", "triplet", "swing", "expressive", *FINE_STYLES),
    (6, 8): ("eighth", "sixteenth", "expressive", "thirtysecond", "sixtyfourth", "hundredtwentyeighth"),
}


def style_fits(style: str, tpq: int) -> bool:
    """Whether every onset slot of ``style`` falls on a whole tick at ``tpq`` (e.g. 1/128
    notes need ``tpq`` divisible by 32)."""
    if style == "expressive":
        return True
    return all(tpq * num % den == 0 for (num, den), _ in STYLE_SLOTS[style])
KICK, SNARE, TOMS, CRASH = 36, 38, (41, 43, 45, 47, 48, 50), 49
HATS = (42, 44, 51, 70, 82)  # closed and pedal hi-hat, ride, maracas, shaker
# Clap, open hat, ride bell, cowbell, claves, wood block: never played by _drum_hit, so a
# marked set can equal no unmarked one.
DRUM_MARKERS = (39, 46, 53, 56, 75, 76)
PITCH_VARIANTS = (12, -12, 7, -5, 5, -7)  # a bar's first note moved, to tell bars apart


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
            first = CRASH if pos == 0 else pick(rng, TOMS)
            return (first, KICK)[: self.notes_per_onset]
        if self.role == "drums":
            return self._drum_hit(rng, pos, meter)
        if self.role == "bass":
            step = degree + (0 if pos == 0 else pick(rng, (0, 0, 4, 7, 2)))
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
            main = pick(rng, (self.hat, self.hat, self.hat, KICK, 37))
        if self.notes_per_onset == 1:
            return (main,)
        other = self.hat if main != self.hat else pick(rng, (KICK, 54, 70 if self.hat != 70 else 82))
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


def pick(rng: np.random.Generator, options: Sequence):
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
        chosen[pick(rng, free)] = True
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
            chosen[pick(rng, free)] = True
        else:
            chosen[pick(rng, group)] = False


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


def bar_events(
    rng: np.random.Generator, voice: Voice, style: str, meter: Meter, bar: int, degree: int
) -> list[list]:
    """Events ``[tick, pitches, duration, velocity]`` of one bar (durations set later).

    :param bar: index of the bar (it starts at ``bar * meter.bar_ticks``).
    :param degree: scale degree of the bar's chord.
    """
    bar_start = bar * meter.bar_ticks
    ticks = bar_onsets(rng, style, meter, bar_start)
    events = []
    for tick, jitter in zip(ticks, rng.integers(-6, 7, len(ticks)).tolist(), strict=True):
        pos = tick - bar_start
        accent = 100 if pos == 0 else 88 if pos % meter.strong_ticks == 0 else 72
        events.append([tick, voice.pitches(rng, pos, degree, meter), 0, accent + jitter])
    return events
