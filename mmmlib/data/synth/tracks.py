"""One track of the synthetic corpus: a planted loop, through-composed bars, or a performance.

Loops are planted to be exactly what :func:`mmmlib.data.loops.detect_loops` reports: a pattern
of 1, 2 or 4 bars (2 or 4 in 3/4, so that it lasts at least 4 beats) starts at bar >= 1
after intro bars that differ from its last bar, is repeated 2-6 times, and has pairwise
different first note sets in its bars (no shorter loop inside it). The detector reports
the first period: ``loop_start_tick`` = first pattern bar, ``loop_end_tick`` = one period
later. Through-composed tracks (random pitches and durations) and expressive tracks have
no planted loop.

Performed tracks (:func:`performed_track`, the files of ``write_corpus(num_expressive_files=N)``)
plant *expressive* loops instead: a pattern of 1, 2 or 4 bars played 2-6 times after free
intro bars, the whole track then performed (``_humanize``: every note moves off every
grid, independently in each repetition, velocities and durations vary), so no two
repetitions are equal. The first note set after the downbeat of each pattern bar shares no
pitch with that of any other pattern bar, so the planted period is the only one; the
manifest gives the loop at its nominal place (the barline of the first repetition, one
period long). The other performed tracks (melodic only) are through-composed.

Expressive tracks need ``tpq >= 384`` so that jittered onsets can all be moved off the
finest grids (at tpq 96 those grids are 3 and 2 ticks apart); each onset is nudged by a
tick until it is off.
"""

from __future__ import annotations

import numpy as np

from mmmlib.data.nomml import EXPRESSIVE_LEVEL, onset_levels
from mmmlib.data.synth.bars import (
    DRUM_MARKERS,
    PITCH_VARIANTS,
    STYLES_BY_METER,
    Meter,
    Voice,
    bar_events,
    pick,
)

MAX_REPETITIONS = 6
MAX_INTRO_BARS = 3  # few: 6+ silent bars in a row would repeat as barline-only "loops"
THROUGH_COMPOSED_PROB = 0.25  # melodic tracks only: drums loop, or are expressive
PERFORMED_LOOP_PROB = 0.7  # performed melodic tracks with a planted expressive loop; drums always loop
PATTERN_BARS_BY_METER = {(4, 4): (1, 2, 4), (3, 4): (2, 4), (6, 8): (1, 2, 4)}


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
        bar_events(rng, voice, style, meter, bar, progression[bar % len(progression)])
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
        for event in bar_events(rng, voice, style, meter, bar, progression[bar % len(progression)])
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
    pattern_bars = pick(rng, options)
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
    style = pick(rng, [s for s in ("eighth", "sixteenth", "triplet") if s in meter_styles])
    if rng.random() < 0.5:  # a loop as played: no two repetitions are equal
        pattern_bars = pick(rng, (1, 2))
        pattern = _pattern_events(rng, voice, style, meter, 0, pattern_bars, progression, 0.8)
        events = _repeat(pattern, pattern_bars * meter.bar_ticks, num_bars // pattern_bars)
    else:
        events = _free_events(rng, voice, style, meter, range(num_bars), progression)
    return _humanize(rng, events, meter.tpq)


def track_events(
    rng: np.random.Generator,
    voice: Voice,
    style: str,
    meter: Meter,
    num_bars: int,
    progression: tuple[int, ...],
) -> tuple[list[list], dict]:
    """A track's events ``[tick, pitches, duration, velocity]`` and its planted loop.

    :param style: the track's timing style (a key of :data:`~mmmlib.data.synth.bars.STYLE_NOMML`).
    :param progression: scale degrees of the chords, one per bar, cycled.
    :return: the events, and the planted loop as manifest columns ({} when the track is
        expressive or through-composed).
    """
    if style == "expressive":
        return _expressive_track(rng, voice, meter, num_bars, progression), {}
    if voice.role != "drums" and rng.random() < THROUGH_COMPOSED_PROB:
        return _free_events(rng, voice, style, meter, range(num_bars), progression), {}
    return _loop_track(rng, voice, style, meter, num_bars, progression)


# Shifts tried, in order, to move a pattern bar's first set off the pitches of the others.
DISJOINT_SHIFTS = tuple(PITCH_VARIANTS) + tuple(s for k in range(1, 25) for s in (k, -k) if abs(s) not in (5, 7, 12))


def _make_bars_disjoint(voice: Voice, pattern: list[list], start_tick: int, num_bars: int, bar_ticks: int) -> None:
    """Move the first set after the downbeat of each pattern bar until no two of them share a pitch."""
    used: set[int] = set()
    for bar in range(num_bars):
        bar_start = start_tick + bar * bar_ticks
        inner = [e for e in pattern if bar_start < e[0] < bar_start + bar_ticks]
        if not inner:
            continue
        event = inner[0]
        if used & set(event[1]):
            if voice.role == "drums":  # a marker hit: the pattern plays it nowhere else
                event[1] = (next(m for m in DRUM_MARKERS if m not in used),)
            else:  # the whole set moved by the first interval that clears the others
                event[1] = next(moved for shift in DISJOINT_SHIFTS
                                if not used & set(moved := tuple(p + shift for p in event[1]))
                                and 0 <= min(moved) and max(moved) <= 127)
        used |= set(event[1])


def performed_track(
    rng: np.random.Generator, voice: Voice, meter: Meter, num_bars: int, progression: tuple[int, ...]
) -> tuple[list[list], dict]:
    """A performed track: a planted expressive loop (drums, or :data:`PERFORMED_LOOP_PROB`) or free bars.

    Drums always loop, as in :func:`track_events`: free drum bars share their kick and snare
    skeleton and repeat by chance, which would make the ground truth ambiguous.

    :param voice: pitches of the track's role.
    :param meter: time signature and resolution (``tpq >= 384``, see the module notes).
    :param num_bars: length of the file.
    :param progression: scale degrees of the chords, one per bar, cycled.
    :return: the performed events ``[tick, (pitch,), duration, velocity]`` and the planted
        loop as manifest columns ({} for a through-composed track).
    """
    meter_styles = STYLES_BY_METER[(meter.numerator, meter.denominator)]
    style = pick(rng, [s for s in ("eighth", "sixteenth", "triplet") if s in meter_styles])
    if voice.role != "drums" and rng.random() >= PERFORMED_LOOP_PROB:
        return _humanize(rng, _free_events(rng, voice, style, meter, range(num_bars), progression), meter.tpq), {}
    pattern_bars, start_bar = _plan_loop(rng, meter, num_bars)
    start_tick, period = start_bar * meter.bar_ticks, pattern_bars * meter.bar_ticks
    pattern = _pattern_events(rng, voice, style, meter, start_bar, pattern_bars, progression, 0.8)
    _make_bars_disjoint(voice, pattern, start_tick, pattern_bars, meter.bar_ticks)
    reps = int(rng.integers(2, min(MAX_REPETITIONS, (num_bars - start_bar) // pattern_bars) + 1))
    filler = Voice("fill", voice.key_root, voice.scale, voice.notes_per_onset) if voice.role == "drums" else voice
    intro = _intro(rng, filler, style, meter, pattern, start_bar, pattern_bars, progression)
    outro = _free_events(rng, filler, style, meter, range(start_bar + pattern_bars * reps, num_bars), progression)
    loop = {
        "loop_start_tick": start_tick,
        "loop_end_tick": start_tick + period,
        "loop_start_bar": start_bar,
        "pattern_bars": pattern_bars,
        "repetitions": reps,
        "loop_duration_beats": pattern_bars * meter.beats_per_bar,
        "loop_note_density": len(pattern) / (pattern_bars * meter.beats_per_bar),
    }
    return _humanize(rng, intro + _repeat(pattern, period, reps) + outro, meter.tpq), loop
