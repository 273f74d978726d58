"""Training samples as MMM builds them: bar chunks, track subsets, bar infill, controls, masks.

For one file (a :class:`~mmmlib.tokens.encoding.PreparedScore`):

1. encode it once with every control, and measure every bar of every track in ids
   (BPE words never cross a bar, so lengths add up exactly);
2. cut it, at bar lines, into chunks that fit ``max_seq_len`` with a random 40-100 % of
   its tracks each (all selected tracks keep the same bars). A chunk that is not the
   whole file is re-encoded on its own, so that its track controls (NOMML, loops,
   density...) describe what the sample holds;
3. per chunk, choose which controls its track headers keep from ``control_mix`` (see
   :data:`CONTROL_RECIPES`: no control, NOMML only, NOMML and loop controls, all, or each
   control kept with ``track_control_prob``), give ``bar_control_prob`` of the bars their
   bar controls (each kept with probability 1/2), shuffle the tracks, and for ``infill_fraction`` of the
   samples mask 10-40 % of the bars of one track: each masked bar becomes ``Infill_Bar``
   and its content moves to the end between ``FillBar_Start`` and ``FillBar_End``;
4. ids and the loss mask: 0 on controls and on ``Infill_Bar``, 1 everywhere else.

:func:`augmentations` transposes (never drums, only by shifts that keep every note in
range) and moves velocities by up to two bins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from symusic import Note

from mmmlib.tokens.controls import LOOP_COUNT_TYPE, LOOP_DURATION_TYPE, NOMML_TYPE
from mmmlib.tokens.encoding import EncodedTrack, slice_prepared
from mmmlib.tokens.special import FILL_END, FILL_START, INFILL_BAR, TRACK_END
from mmmlib.tokens.vocab import loss_mask_lookup

if TYPE_CHECKING:
    from mmmlib.tokens.encoding import PreparedScore
    from mmmlib.tokens.tokenizer import MMMLoop

MAX_TRANSPOSE = 6
MAX_VELOCITY_BINS = 2
# The control subsets a sample's track headers keep: the prompts 04 sends (no control; NOMML
# only; NOMML and loop controls; every control) each get their own share of the samples, so
# each is common in training. Independent draws alone make them vanishingly rare: with 7
# controls kept at 0.75 each, "NOMML only" is 0.75 * 0.25**6 = 2e-4 of the headers.
# "independent" keeps each control with ``track_control_prob`` (other combinations, e.g.
# the studio's per-track choices). None means every control type.
CONTROL_RECIPES: dict[str, frozenset[str] | None] = {
    "none": frozenset(),
    "nomml": frozenset({NOMML_TYPE}),
    "nomml_loops": frozenset({NOMML_TYPE, LOOP_COUNT_TYPE, LOOP_DURATION_TYPE}),
    "all": None,
    "independent": None,
}
DEFAULT_CONTROL_MIX = (("none", 0.2), ("nomml", 0.2), ("nomml_loops", 0.2), ("all", 0.2), ("independent", 0.2))
BAR_CONTROL_KEEP = 0.5  # each bar control of a bar that carries them


@dataclass(frozen=True)
class SampleOptions:
    """How samples are cut and masked (see module doc)."""

    max_seq_len: int = 2048
    infill_fraction: float = 0.75
    min_track_fraction: float = 0.4
    infill_bar_fraction: tuple[float, float] = (0.1, 0.4)
    track_control_prob: float = 0.75
    bar_control_prob: float = 0.25
    control_mix: tuple[tuple[str, float], ...] = DEFAULT_CONTROL_MIX
    # published dialect: controls (as :func:`mmmlib.tokens.published_samples.control_of` names them) never kept
    excluded_controls: tuple[str, ...] = ()
    # published dialect: share of files whose chunks start at one of their loops instead of their first bar
    loop_start_fraction: float = 0.0


@dataclass
class Sample:
    """One training sequence and where it comes from."""

    input_ids: np.ndarray
    loss_mask: np.ndarray
    bar_start: int
    bar_end: int
    track_idx: list[int]
    infill_bars: int = 0


def choose_tracks(rng: np.random.Generator, num_tracks: int, min_fraction: float) -> list[int]:
    """A random subset of ``min_fraction``-100 % of the tracks (at least one), sorted."""
    low = max(1, math.ceil(min_fraction * num_tracks))
    k = int(rng.integers(low, num_tracks + 1)) if num_tracks > low else num_tracks
    return sorted(rng.choice(num_tracks, size=k, replace=False).tolist())


def _control_of_type(tok: MMMLoop) -> dict[str, int]:
    """Index in ``tok.attribute_controls`` of each control token type (cached)."""
    cached = getattr(tok, "_mmmlib_control_of_type", None)
    if cached is None:
        cached = {t.split("_", 1)[0]: i for i, c in enumerate(tok.attribute_controls) for t in c.tokens}
        tok._mmmlib_control_of_type = cached
    return cached


def draw_recipe(rng: np.random.Generator, opts: SampleOptions) -> str:
    """One :data:`CONTROL_RECIPES` name, drawn with the weights of ``opts.control_mix``."""
    names = [name for name, _ in opts.control_mix]
    weights = np.asarray([w for _, w in opts.control_mix], dtype=float)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def select_controls(tok: MMMLoop, track: EncodedTrack, rng: np.random.Generator, opts: SampleOptions,
                    recipe: str = "independent") -> EncodedTrack:
    """Copy of ``track`` whose header keeps the track controls of ``recipe`` and whose bars
    carry their bar controls for ``bar_control_prob`` of them (each then kept with 1/2).

    :param recipe: a :data:`CONTROL_RECIPES` name (the sample's draw, see :func:`draw_recipe`).
    """
    of_type = _control_of_type(tok)
    num_controls = len(tok.attribute_controls)
    if recipe == "independent":
        keep_track = rng.random(num_controls) < opts.track_control_prob
    else:
        kept = CONTROL_RECIPES[recipe]
        keep_track = np.array([kept is None or any(t.split("_", 1)[0] in kept for t in c.tokens)
                               for c in tok.attribute_controls], dtype=bool)
    header = [t for t in track.header if (c := of_type.get(t.split("_", 1)[0])) is None or keep_track[c]]
    carries = rng.random(len(track.bars)) < opts.bar_control_prob
    keep_bar = (rng.random((len(track.bars), num_controls)) < BAR_CONTROL_KEEP) & carries[:, None]
    bars = []
    for b, bar in enumerate(track.bars):
        bars.append([t for t in bar if t[0] != "A" or keep_bar[b, of_type[t.split("_", 1)[0]]]])
    return EncodedTrack(track.track_idx, track.program, header, bars)


def assemble(tracks: list[EncodedTrack], rng: np.random.Generator, opts: SampleOptions) -> tuple[list[str], int]:
    """Tokens of a sample from its (already control-selected) tracks, in a random order,
    with bar infill on one track for ``infill_fraction`` of the samples.

    :return: the tokens and the number of infilled bars.
    """
    order = rng.permutation(len(tracks)).tolist()
    candidates = [i for i in order if len(tracks[i].bars) >= 2]
    masked: list[int] = []
    target = -1
    if candidates and rng.random() < opts.infill_fraction:
        target = candidates[int(rng.integers(len(candidates)))]
        num_bars = len(tracks[target].bars)
        k = max(1, round(rng.uniform(*opts.infill_bar_fraction) * num_bars))
        masked = sorted(rng.choice(num_bars, size=k, replace=False).tolist())
    tokens: list[str] = []
    hidden = set(masked)
    for i in order:
        tokens += tracks[i].header
        for b, bar in enumerate(tracks[i].bars):
            if i == target and b in hidden:
                tokens.append(INFILL_BAR)
            else:
                tokens += bar
        tokens.append(TRACK_END)
    for b in masked:
        tokens += [FILL_START, *tracks[target].bars[b][1:], FILL_END]  # the content, without its Bar_None
    return tokens, len(masked)


def plan_chunks(header_len: list[int], bar_len: list[list[int]], rng: np.random.Generator,
                opts: SampleOptions) -> tuple[list[tuple[int, int, list[int]]], int]:
    """Cut the bars into ``(bar_start, bar_end, tracks)`` chunks that fit ``max_seq_len``.

    Room is kept for the infill markup (2 tokens per masked bar, at most 40 % of the bars).

    :param header_len: ids of each track's header and ``Track_End`` (controls included).
    :param bar_len: per track, ids of each of its bars (controls included).
    :return: the chunks and the number of bars skipped (a single bar too long to fit).
    """
    num_bars = max((len(b) for b in bar_len), default=0)
    lengths = np.zeros((len(bar_len), num_bars), dtype=np.int64)
    for t, bars in enumerate(bar_len):
        lengths[t, :len(bars)] = bars
    chunks, skipped, start = [], 0, 0
    while start < num_bars:
        tracks = choose_tracks(rng, len(bar_len), opts.min_track_fraction)
        per_bar = lengths[tracks].sum(axis=0)
        cost, end = sum(header_len[t] for t in tracks), start
        while end < num_bars:
            reserve = 2 * math.ceil(opts.infill_bar_fraction[1] * (end + 1 - start))
            if cost + per_bar[end] + reserve > opts.max_seq_len:
                break
            cost += per_bar[end]
            end += 1
        if end == start:
            skipped += 1
            start += 1
            continue
        chunks.append((start, end, tracks))
        start = end
    return chunks, skipped


def measure(tok: MMMLoop, encoded: list[EncodedTrack]) -> tuple[list[int], list[list[int]]]:
    """Ids per track header (+ ``Track_End``) and per bar, in one batched BPE call."""
    pieces = [t.header + [TRACK_END] for t in encoded] + [bar for t in encoded for bar in t.bars]
    lengths = [len(ids) for ids in tok.tokens_to_ids_batch(pieces)]
    headers, rest = lengths[:len(encoded)], lengths[len(encoded):]
    bars, at = [], 0
    for t in encoded:
        bars.append(rest[at:at + len(t.bars)])
        at += len(t.bars)
    return headers, bars


def make_sample(tok: MMMLoop, tracks: list[EncodedTrack], rng: np.random.Generator, opts: SampleOptions,
                bar_start: int, bar_end: int) -> Sample:
    """Select controls, assemble, encode ids and the loss mask of one chunk."""
    recipe = draw_recipe(rng, opts)  # one per sample: 04 asks every track of a loop the same way
    chosen = [select_controls(tok, t, rng, opts, recipe) for t in tracks]
    tokens, infill_bars = assemble(chosen, rng, opts)
    ids = np.asarray(tok.tokens_to_ids(tokens), dtype=np.int32)
    mask = loss_mask_lookup(tok)[ids]
    return Sample(ids, mask, bar_start, bar_end, [t.track_idx for t in tracks], infill_bars)


def file_samples(tok: MMMLoop, prepared: PreparedScore, rng: np.random.Generator,
                 opts: SampleOptions) -> tuple[list[Sample], int]:
    """All samples of one (possibly augmented) prepared file.

    :return: the samples (each at most ``max_seq_len`` ids) and the number of bars or
        chunks dropped because they could not fit.
    """
    encoded = tok.encode_prepared(prepared)
    if not encoded:
        return [], 0
    headers, bars = measure(tok, encoded)
    chunks, dropped = plan_chunks(headers, bars, rng, opts)
    num_bars = max(len(b) for b in bars)

    def encode_chunk(start: int, end: int, tracks: list[int]) -> list[EncodedTrack]:
        if start == 0 and end == num_bars:
            return [encoded[t] for t in tracks]
        return tok.encode_prepared(slice_prepared(prepared, start, end, tracks))

    samples, more = fit_chunks(chunks, encode_chunk, lambda chunk, start, end: make_sample(
        tok, chunk, rng, opts, start, end), opts.max_seq_len)
    return samples, dropped + more


def fit_chunks(chunks: list[tuple[int, int, list[int]]], encode_chunk: Callable[[int, int, list[int]], list],
               build: Callable[[list, int, int], Sample], max_seq_len: int) -> tuple[list[Sample], int]:
    """One sample per planned chunk, a bar shorter each time it does not fit (either dialect).

    A chunk encoded on its own can be a few ids longer than :func:`plan_chunks` measured
    (its tempo restated at its start), so its last bar is dropped until it fits.

    :param chunks: ``(bar_start, bar_end, tracks)`` from :func:`plan_chunks`.
    :param encode_chunk: ``(bar_start, bar_end, tracks) -> encoded tracks`` (empty: silent chunk).
    :param build: ``(encoded tracks, bar_start, bar_end) -> Sample``.
    :param max_seq_len: longest sample.
    :return: the samples and the number of chunks that never fit.
    """
    samples, dropped = [], 0
    for start, end, tracks in chunks:
        while end > start:
            chunk = encode_chunk(start, end, tracks)
            if not chunk:  # the chosen tracks are silent in these bars: nothing to learn, nothing lost
                break
            sample = build(chunk, start, end)
            if len(sample.input_ids) <= max_seq_len:
                samples.append(sample)
                break
            end -= 1
        else:
            dropped += 1
    return samples, dropped


def valid_transpositions(prepared: PreparedScore, pitch_range: tuple[int, int]) -> list[int]:
    """Shifts in ±1..6 semitones that keep every non-drum note inside ``pitch_range``."""
    pitches = [t.notes.numpy()["pitch"] for t in prepared.score.tracks if not t.is_drum and len(t.notes)]
    if not pitches:
        return []
    low = int(min(p.min() for p in pitches))
    high = int(max(p.max() for p in pitches))
    return [s for s in range(-MAX_TRANSPOSE, MAX_TRANSPOSE + 1)
            if s != 0 and low + s >= pitch_range[0] and high + s <= pitch_range[1]]


def shifted(prepared: PreparedScore, semitones: int, velocity_bins: int, velocities: np.ndarray) -> PreparedScore:
    """Copy transposed by ``semitones`` (drums untouched) with velocities moved by
    ``velocity_bins`` bins of the tokenizer (clipped to its first and last bins)."""
    score = prepared.score.copy()
    for track in score.tracks:
        soa = track.notes.numpy()
        pitch = soa["pitch"].astype(np.int16) + (0 if track.is_drum else semitones)
        level = np.clip(np.searchsorted(velocities, soa["velocity"]) + velocity_bins, 0, len(velocities) - 1)
        track.notes = Note.from_numpy(time=soa["time"], duration=soa["duration"], pitch=pitch.astype(np.int8),
                                      velocity=velocities[level].astype(np.int8))
    return replace(prepared, score=score)


def augmentations(tok: MMMLoop, prepared: PreparedScore, rng: np.random.Generator,
                  copies: int) -> list[tuple[PreparedScore, int, int]]:
    """``copies`` augmented versions: ``(prepared, semitones, velocity_bins)`` each."""
    shifts = valid_transpositions(prepared, tok.config.pitch_range)
    out = []
    for _ in range(copies):
        semitones = int(rng.choice(shifts)) if shifts else 0
        bins = int(rng.integers(-MAX_VELOCITY_BINS, MAX_VELOCITY_BINS + 1))
        out.append((shifted(prepared, semitones, bins, np.asarray(tok.velocities)), semitones, bins))
    return out
