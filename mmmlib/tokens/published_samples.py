"""Training samples in the published MIDI-GPT-Loop dialect, as MMM's training windows are.

For one file (a tick-time score and the loops 01 found in it):

1. encode it once with every track control and its loops (:class:`PublishedTokenizer`,
   ``loop_tracks="source"``): each kept track becomes a header (``Program``, track controls)
   and bars (``Bar_None TimeSig ...``), loops marked inside as ``Loop_Start`` / ``Loop_End``;
2. cut it at bar lines into chunks that fit ``max_seq_len``, with 40-100 % of its tracks
   (:func:`mmmlib.tokens.samples.plan_chunks`), from its first bar or, for ``loop_start_fraction``
   of the files, from the first bar of one of its loops (:func:`loop_start_bar`): a loop generator
   should learn that a loop starts where the sequence starts, where files often open with
   bars that never repeat. A chunk that is not the whole file is cut
   out of the score (tempo and time signature restated at its start, the loops that lie
   inside it kept) and encoded again, so that its NOMML, loop and other controls describe
   what the sample holds and its loop markers come in pairs;
3. per chunk, the track headers keep the controls of one :data:`~mmmlib.tokens.samples.CONTROL_RECIPES`
   draw (no control, NOMML, NOMML and loops, all, or each control independently), the tracks
   are shuffled, and then either ``infill_fraction`` of the samples hide 10-40 % of the bars of
   one track (each becomes ``Infill_Bar``; their bars come back, each with its ``Bar_None``,
   in one ``FillBar_Start ... FillBar_End`` span after the tracks) or, for
   ``new_track_fraction`` of the others, the last track is marked ``Infill_Track`` as MMM's
   inference marks a track to generate;
4. ids (:meth:`PublishedTokenizer.tokens_to_ids`: specials and header tokens single ids,
   every bar one BPE word) and the loss mask: 0 on controls, ``Infill_Bar`` and
   ``Infill_Track`` (what 04 writes into prompts), 1 everywhere else.

:func:`augmented_scores` transposes pitched tracks (within the pitch range) and moves
velocities; loops are spans of ticks, so a transposed copy keeps its loops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from symusic import Note, Score, Tempo, TimeSignature

from mmmlib.tokens.published.vocab import TPQ
from mmmlib.tokens.samples import MAX_TRANSPOSE, Sample, draw_recipe, fit_chunks, plan_chunks
from mmmlib.tokens.special import BAR, FILL_END, FILL_START, INFILL_BAR, TRACK_END, TRACK_START

if TYPE_CHECKING:
    from mmmlib.tokens.published import PublishedTokenizer
    from mmmlib.tokens.samples import SampleOptions

INFILL_TRACK = "Infill_Track"
NEW_TRACK_FRACTION = 0.25  # of the samples without bar infill: teaches 04's new-track prompt
VELOCITY_STEP = 3  # one augmentation step of velocity, in MIDI units (about two of the 88 bins)
MAX_VELOCITY_STEPS = 1
# The published control types of each recipe (mmmlib's names -> the published vocabulary's).
RECIPE_TYPES = {"nomml": {"ACMedianMetricLevel"},
                "nomml_loops": {"ACMedianMetricLevel", "ACLoopCount", "ACLoopDurationQuantile"}}


@dataclass
class TrackTokens:
    """One encoded track: its source index, header (``Program``, controls) and bars."""

    source: int
    header: list[str]
    bars: list[list[str]]


def control_of(token: str) -> str:
    """The control a control token belongs to: its type without ``Min``/``Max`` (the two
    bounds of one control) and with every ``AC{Track,Bar}NoteDuration*`` as one control."""
    kind = token.split("_", 1)[0]
    if "NoteDuration" in kind:  # one control per scope: ACTrackNoteDurationWhole ... ThirtySecond
        return kind[:kind.index("NoteDuration") + len("NoteDuration")]
    return re.sub(r"(Min|Max)$", "", kind)


def encode_tracks(tok: PublishedTokenizer, score: Score, loops: list[dict]) -> tuple[list[TrackTokens], np.ndarray]:
    """Encode a score with every track control and its loops, cut into tracks and bars.

    :param tok: the tokenizer.
    :param score: tick-time score.
    :param loops: ``track_idx`` (source index), ``start_tick``, ``end_tick`` in the score's ticks.
    :return: the kept tracks and the bar ticks of the encoding (1920 ticks per quarter).
    """
    enc = tok.encode_full(score, controls="track", loops=loops, loop_tracks="source")
    tracks: list[TrackTokens] = []
    current: list[str] = []
    sources = iter(enc.kept_tracks)
    for token in enc.tokens:
        if token == TRACK_START:
            current = []
        elif token == TRACK_END:
            source = next(sources, None)
            if source is None or not current or not current[0].startswith("Program_"):
                continue
            first_bar = next((i for i, t in enumerate(current) if t == BAR), len(current))
            bars: list[list[str]] = []
            for t in current[first_bar:]:
                if t == BAR:
                    bars.append([])
                bars[-1].append(t)
            tracks.append(TrackTokens(int(source), current[:first_bar], bars))
        else:
            current.append(token)
    return tracks, np.asarray(enc.bar_ticks if enc.bar_ticks is not None else [0], dtype=np.int64)


def _last_before(times: np.ndarray, tick: int) -> int:
    """Index of the last event at or before ``tick`` (the first one when none is)."""
    return max(int(np.searchsorted(times, tick, side="right")) - 1, 0)


def slice_score(score: Score, start: int, end: int, sources: list[int]) -> Score:
    """The ticks ``[start, end)`` of some tracks of a score, moved to tick 0.

    The tempo and time signature in force at ``start`` are restated at tick 0; notes keep
    their durations up to ``end``.

    :param score: tick-time score.
    :param start: first tick (a bar line).
    :param end: tick after the last (a bar line).
    :param sources: indices of the tracks to keep, in order.
    :return: a new score.
    """
    out = Score(score.ticks_per_quarter)
    tempos = [(t.time, t.mspq) for t in score.tempos] or [(0, 500_000)]
    times = np.array([t for t, _ in tempos])
    first = _last_before(times, start)
    out.tempos = [Tempo(0, mspq=tempos[first][1])] + [
        Tempo(t - start, mspq=m) for t, m in tempos[first + 1:] if t < end]
    sigs = [(s.time, s.numerator, s.denominator) for s in score.time_signatures] or [(0, 4, 4)]
    times = np.array([s[0] for s in sigs])
    first = _last_before(times, start)
    out.time_signatures = [TimeSignature(0, *sigs[first][1:])] + [
        TimeSignature(t - start, n, d) for t, n, d in sigs[first + 1:] if t < end]
    for source in sources:
        track = score.tracks[source].copy()
        notes = track.notes.numpy()
        inside = (notes["time"] >= start) & (notes["time"] < end)
        time = notes["time"][inside].astype(np.int64)
        duration = np.minimum(notes["duration"][inside].astype(np.int64), end - time)
        track.notes = Note.from_numpy(time=(time - start).astype(np.int32), duration=duration.astype(np.int32),
                                      pitch=notes["pitch"][inside], velocity=notes["velocity"][inside])
        track.controls = []
        track.pitch_bends = []
        track.pedals = []
        out.tracks.append(track)
    return out


def loops_inside(loops: list[dict], start: int, end: int, sources: list[int]) -> list[dict]:
    """The loops of a chunk: those of its tracks that lie inside ``[start, end)``, moved to
    tick 0 and given their track's index in the chunk."""
    where = {s: i for i, s in enumerate(sources)}
    return [{"track_idx": where[lp["track_idx"]], "start_tick": lp["start_tick"] - start,
             "end_tick": lp["end_tick"] - start}
            for lp in loops if lp["track_idx"] in where and lp["start_tick"] >= start and lp["end_tick"] <= end]


def select_controls(header: list[str], recipe: str, rng: np.random.Generator, opts: SampleOptions) -> list[str]:
    """The header of a track with the controls of a recipe (see the module doc)."""
    program = header[:1]
    controls = [t for t in header[1:] if control_of(t) not in opts.excluded_controls]
    if recipe == "all":
        return program + controls
    if recipe == "independent":
        kinds = sorted({control_of(t) for t in controls})
        kept = {k for k in kinds if rng.random() < opts.track_control_prob}
        return program + [t for t in controls if control_of(t) in kept]
    allowed = RECIPE_TYPES.get(recipe, set())
    return program + [t for t in controls if t.split("_", 1)[0] in allowed]


def assemble(tracks: list[TrackTokens], rng: np.random.Generator, opts: SampleOptions,
             new_track_fraction: float = NEW_TRACK_FRACTION) -> tuple[list[str], int]:
    """Tokens of a sample from its (control-selected) tracks: shuffled, then bar infill or a
    track marked ``Infill_Track`` (see the module doc).

    :return: the tokens and the number of infilled bars.
    """
    order = rng.permutation(len(tracks)).tolist()
    candidates = [i for i in order if len(tracks[i].bars) >= 2]
    masked: list[int] = []
    target, new_track = -1, False
    if candidates and rng.random() < opts.infill_fraction:
        target = candidates[int(rng.integers(len(candidates)))]
        num_bars = len(tracks[target].bars)
        k = max(1, round(rng.uniform(*opts.infill_bar_fraction) * num_bars))
        masked = sorted(rng.choice(num_bars, size=k, replace=False).tolist())
    elif len(tracks) >= 2 and rng.random() < new_track_fraction:
        new_track = True
    tokens: list[str] = []
    hidden = set(masked)
    for n, i in enumerate(order):
        if new_track and n == len(order) - 1:
            tokens.append(INFILL_TRACK)
        tokens += [TRACK_START, *tracks[i].header]
        for b, bar in enumerate(tracks[i].bars):
            tokens += [INFILL_BAR] if i == target and b in hidden else bar
        tokens.append(TRACK_END)
    if masked:
        tokens.append(FILL_START)
        for b in masked:
            tokens += tracks[target].bars[b]
        tokens.append(FILL_END)
    return tokens, len(masked)


def loss_mask_lookup(tok: PublishedTokenizer) -> np.ndarray:
    """Per id, 0 for what prompts give (controls, ``Infill_Bar``, ``Infill_Track``), else 1 (cached)."""
    cached = getattr(tok, "_mmmlib_loss_mask", None)
    if cached is None:
        given = {INFILL_BAR, INFILL_TRACK}
        cached = np.array([0 if pieces and all(t.startswith("AC") or t in given for t in pieces) else 1
                           for pieces in tok.id_tokens()], dtype=np.int8)
        tok._mmmlib_loss_mask = cached
    return cached


def make_sample(tok: PublishedTokenizer, tracks: list[TrackTokens], rng: np.random.Generator,
                opts: SampleOptions, bar_start: int, bar_end: int) -> Sample:
    """Controls, layout, ids and loss mask of one chunk."""
    recipe = draw_recipe(rng, opts)  # one per sample: 04 asks every track of a loop the same way
    chosen = [TrackTokens(t.source, select_controls(t.header, recipe, rng, opts), t.bars) for t in tracks]
    tokens, infill_bars = assemble(chosen, rng, opts)
    ids = np.asarray(tok.tokens_to_ids(tokens), dtype=np.int32)
    return Sample(ids, loss_mask_lookup(tok)[ids], bar_start, bar_end, [t.source for t in tracks], infill_bars)


def measure(tok: PublishedTokenizer, tracks: list[TrackTokens]) -> tuple[list[int], list[list[int]]]:
    """Ids of each track's header (with ``Track_Start``/``Track_End``) and of each of its bars."""
    headers = [len(t.header) + 2 for t in tracks]
    # every bar is one BPE word (no special token inside): one batched call measures them all
    lengths = [len(ids) for ids in tok.encode_words([bar for t in tracks for bar in t.bars])]
    bars, at = [], 0
    for t in tracks:
        bars.append(lengths[at:at + len(t.bars)])
        at += len(t.bars)
    return headers, bars


def loop_start_bar(loops: list[dict], bar_ticks: np.ndarray, scale: float, rng: np.random.Generator) -> int:
    """The bar where one of the file's loops (drawn at random) starts; 0 when it has none.

    :param loops: the file's loops, in its ticks.
    :param bar_ticks: the encoding's bar ticks (1920 ticks per quarter).
    :param scale: the file's ticks per 1920-tick tick.
    :return: a bar index.
    """
    if not loops:
        return 0
    start = loops[int(rng.integers(len(loops)))]["start_tick"]
    return max(int(np.searchsorted(np.round(bar_ticks * scale), start, side="right")) - 1, 0)


def file_samples(tok: PublishedTokenizer, score: Score, loops: list[dict], rng: np.random.Generator,
                 opts: SampleOptions) -> tuple[list[Sample], int]:
    """All samples of one (possibly augmented) score.

    :param tok: the tokenizer.
    :param score: tick-time score.
    :param loops: its loops (:func:`loops_of_task`).
    :param rng: the file's generator.
    :param opts: how samples are cut and masked.
    :return: the samples (each at most ``max_seq_len`` ids) and the number of bars or
        chunks dropped because they could not fit.
    """
    tracks, bar_ticks = encode_tracks(tok, score, loops)
    if not tracks:
        return [], 0
    headers, bars = measure(tok, tracks)
    scale = score.ticks_per_quarter / TPQ
    offset = loop_start_bar(loops, bar_ticks, scale, rng) if rng.random() < opts.loop_start_fraction else 0
    chunks, dropped = plan_chunks(headers, [b[offset:] for b in bars], rng, opts)
    num_bars = max(len(b) for b in bars)

    def encode_chunk(start: int, end: int, chosen: list[int]) -> list[TrackTokens]:
        if start == 0 and end == num_bars:
            return [tracks[t] for t in chosen]
        sources = [tracks[t].source for t in chosen]
        lo = round(int(bar_ticks[start]) * scale)
        hi = round(int(bar_ticks[end]) * scale) if end < len(bar_ticks) else int(score.end()) + 1
        chunk, _ = encode_tracks(tok, slice_score(score, lo, hi, sources), loops_inside(loops, lo, hi, sources))
        return [TrackTokens(sources[t.source], t.header, t.bars) for t in chunk]

    shifted = [(a + offset, b + offset, c) for a, b, c in chunks]
    samples, more = fit_chunks(shifted, encode_chunk, lambda chunk, start, end: make_sample(
        tok, chunk, rng, opts, start, end), opts.max_seq_len)
    return samples, dropped + more


def loops_of_task(loops: dict[int, Any]) -> list[dict]:
    """A task's loops (``{track: [(start, end, beats), ...]}``, see :func:`mmmlib.tokens.corpus.tasks_of`) as dicts."""
    return [{"track_idx": int(track), "start_tick": int(row[0]), "end_tick": int(row[1])}
            for track, rows in loops.items() for row in np.asarray(rows).reshape(-1, 3)]


def augmented_scores(score: Score, pitch_range: tuple[int, int], rng: np.random.Generator,
                     copies: int) -> list[tuple[Score, int, int]]:
    """``copies`` augmented scores: ``(score, semitones, velocity_steps)`` each.

    Pitched tracks move by a shift in ±1..6 semitones that keeps every note in
    ``pitch_range`` ``[lo, hi)`` (drums never move); velocities by ``velocity_steps``
    x :data:`VELOCITY_STEP`, clipped to 1-127. Note times are untouched, so loops stay.
    """
    pitched = [t.notes.numpy()["pitch"] for t in score.tracks if not t.is_drum and len(t.notes)]
    shifts: list[int] = []
    if pitched:
        low, high = min(int(p.min()) for p in pitched), max(int(p.max()) for p in pitched)
        shifts = [s for s in range(-MAX_TRANSPOSE, MAX_TRANSPOSE + 1)
                  if s and low + s >= pitch_range[0] and high + s < pitch_range[1]]
    out = []
    for _ in range(copies):
        semitones = int(rng.choice(shifts)) if shifts else 0
        steps = int(rng.integers(-MAX_VELOCITY_STEPS, MAX_VELOCITY_STEPS + 1))
        copy = score.copy()
        for track in copy.tracks:
            notes = track.notes.numpy()
            pitch = notes["pitch"].astype(np.int16) + (0 if track.is_drum else semitones)
            velocity = np.clip(notes["velocity"].astype(np.int16) + steps * VELOCITY_STEP, 1, 127)
            track.notes = Note.from_numpy(time=notes["time"], duration=notes["duration"],
                                          pitch=pitch.astype(np.int8), velocity=velocity.astype(np.int8))
        out.append((copy, semitones, steps))
    return out

