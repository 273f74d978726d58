"""Requests on an existing piece: bar infill, whole-track infill, new tracks (MMM style).

The piece is encoded once (:meth:`~mmmlib.generation.language.Language.encode_piece`, no controls) into per-track
bars of base tokens (:class:`PieceState`); every pass edits that state, and the final
state is decoded into the result. A pass only sees a window of at most
``context_bars`` bars of every track:

- *bar infill* of bars ``[c0, c1)`` of a track: the window is centred on the bars, they
  become ``Infill_Bar`` placeholders, and the model writes them after the tracks in the
  language's fill layout (:meth:`~mmmlib.generation.language.Language.fill_layout`): mmmlib's
  dialect asks for each bar between ``FillBar_Start TimeSig_x <bar controls>`` (forced) and
  ``FillBar_End`` (exactly one bar), the published one for all of them in one
  ``FillBar_Start Bar_None ... FillBar_End`` span (exactly ``c1 - c0`` bars). Ranges longer
  than half the window go chunk by chunk;
- *whole-track infill* and *new tracks*: the other tracks of the first window, then the
  track's header (:meth:`~mmmlib.generation.language.Language.new_track_header`:
  ``Track_Start Program_P <track controls>``, after ``Infill_Track`` in the published
  dialect) and the model writes the track's bars up to ``Track_End``; bars beyond the first
  window are then infilled chunk by chunk with windows that end at the chunk, so that the
  track is written left to right, each chunk conditioned on what came before.

Bars untouched by the request come back as the tokenizer encodes them (quantized to its
grid, with microtiming in expressive mode); tempos and time signatures are the piece's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from symusic import Tempo, TimeSignature

from mmmlib.generation.constraint import Plan, grammar_tables
from mmmlib.generation.language import language_of
from mmmlib.generation.language.base import split_at
from mmmlib.generation.loop import (
    DEFAULT_MAX_TOKENS_PER_BAR,
    Generation,
    TrackSpec,
    check_program,
    derive_seed,
    segment_budget,
    track_stats,
)
from mmmlib.generation.sampling import Pass
from mmmlib.tokens.special import BAR, FILL_END, INFILL_BAR, TRACK_END, TRACK_START

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping, Sequence

    from symusic import Score

    from mmmlib.generation.language import Language


@dataclass(frozen=True)
class BarInfill:
    """Regenerate bars ``[bar_start, bar_end)`` of track ``track`` (index in ``score.tracks``).

    :param bar_controls: per bar index (absolute), its bar controls, e.g.
        ``{2: {"NoteDensity": 8, "PitchClass": [0, 4, 7]}}``.
    """

    track: int
    bar_start: int
    bar_end: int
    bar_controls: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackInfill:
    """Regenerate the whole track ``track`` (same program) with these track controls."""

    track: int
    controls: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PieceRequest:
    """Edits of one piece, done in order: bar infills, whole-track infills, new tracks.

    :param context_bars: bars of every track a pass sees (the model's window).
    :param seed: the request's seed (each pass gets one derived from it).
    :param max_tokens_per_bar: token budget of a generated bar.
    """

    bar_infills: tuple[BarInfill, ...] = ()
    track_infills: tuple[TrackInfill, ...] = ()
    new_tracks: tuple[TrackSpec, ...] = ()
    context_bars: int = 8
    seed: int = 0
    max_tokens_per_bar: int = DEFAULT_MAX_TOKENS_PER_BAR


@dataclass
class PieceTrack:
    """One track of a :class:`PieceState`: its program and bars (``Bar_None TimeSig_x ...``)."""

    program: int
    bars: list[list[str]]

    def header(self) -> list[str]:
        return [TRACK_START, f"Program_{self.program}"]


@dataclass
class PieceState:
    """A piece as per-track bars of base tokens, controls left out."""

    tracks: list[PieceTrack]
    timesigs: list[str]
    index_of: dict[int, int]  # score track index -> index in tracks

    @property
    def num_bars(self) -> int:
        return len(self.timesigs)

    def empty_bars(self) -> list[list[str]]:
        return [[BAR, ts] for ts in self.timesigs]

    def track(self, score: Score, raw_index: int) -> int:
        """State index of score track ``raw_index`` (an empty track is added on first use)."""
        if raw_index not in self.index_of:
            raw = score.tracks[raw_index]
            self.tracks.append(PieceTrack(-1 if raw.is_drum else int(raw.program), self.empty_bars()))
            self.index_of[raw_index] = len(self.tracks) - 1
        return self.index_of[raw_index]

    def tokens(self) -> list[str]:
        """The whole piece as one MMM token sequence."""
        out: list[str] = []
        for track in self.tracks:
            out += [*track.header(), *(t for bar in track.bars for t in bar), TRACK_END]
        return out


def piece_state(tok: Language | object, score: Score) -> PieceState:
    """Encode ``score`` (no controls) into a :class:`PieceState`; every track gets every bar.

    :param tok: a language, or a tokenizer of either dialect.
    :param score: the piece.
    :return: the state.
    """
    encoded = language_of(tok).encode_piece(score)
    num_bars = max((len(e.bars) for e in encoded), default=0)
    timesigs, current = [], "TimeSig_4/4"
    for b in range(num_bars):
        found = [e.bars[b][1] for e in encoded if b < len(e.bars) and len(e.bars[b]) > 1
                 and e.bars[b][1].startswith("TimeSig_")]
        current = found[0] if found else current
        timesigs.append(current)
    tracks = []
    for e in encoded:
        bars = [list(bar) for bar in e.bars]
        bars += [[BAR, timesigs[b]] for b in range(len(bars), num_bars)]
        tracks.append(PieceTrack(e.program, bars))
    return PieceState(tracks, timesigs, {e.track_idx: i for i, e in enumerate(encoded)})


def check_piece_request(lang: Language, score: Score, state: PieceState, request: PieceRequest) -> None:
    """Raise ``ValueError`` for a request that does not fit the piece or the language."""
    if request.context_bars < 1:
        raise ValueError(f"context_bars must be >= 1, got {request.context_bars}")
    if state.num_bars == 0:
        raise ValueError("the piece has no notes, hence no bars to work on")
    for item in (*request.bar_infills, *request.track_infills):
        if not 0 <= item.track < len(score.tracks):
            raise ValueError(f"track {item.track} is not in the piece ({len(score.tracks)} tracks)")
    for infill in request.bar_infills:
        if not 0 <= infill.bar_start < infill.bar_end <= state.num_bars:
            raise ValueError(f"bars [{infill.bar_start}, {infill.bar_end}) are not a range of the piece's "
                             f"{state.num_bars} bars")
        for bar, controls in infill.bar_controls.items():
            if not infill.bar_start <= bar < infill.bar_end:
                raise ValueError(f"bar controls given for bar {bar}, outside [{infill.bar_start}, {infill.bar_end})")
            lang.bar_control_tokens(controls)
    for infill in request.track_infills:
        lang.track_header(0, infill.controls)
    for spec in request.new_tracks:
        check_program(spec.program)
        lang.track_header(spec.program, spec.controls)


def centred_window(c0: int, c1: int, context: int, num_bars: int) -> range:
    """``context`` bars (at most the piece) holding ``[c0, c1)`` in their middle."""
    width = min(context, num_bars)
    start = min(max(0, c0 - (width - (c1 - c0)) // 2), num_bars - width)
    return range(start, start + width)


def _context(state: PieceState, target: int, window: range, hidden: range, header: list[str],
             skip_target: bool) -> list[str]:
    """Tokens of every track over ``window``; the target's ``hidden`` bars become placeholders."""
    tokens: list[str] = []
    for i, track in enumerate(state.tracks):
        if i == target and skip_target:
            continue
        tokens += header if i == target else track.header()
        for b in window:
            tokens += [INFILL_BAR] if i == target and b in hidden else track.bars[b]
        tokens.append(TRACK_END)
    return tokens


def infill_pass(lang: Language, state: PieceState, target: int, bars: range, window: range, header: list[str],
                bar_controls: Mapping[int, Mapping[str, Any]], budget_per_bar: int, positions: int,
                seed: int) -> Pass:
    """Pass that rewrites ``bars`` of track ``target``, seeing only ``window``."""
    tables = grammar_tables(lang)
    prompt = lang.tokens_to_ids(_context(state, target, window, bars, header, skip_target=False))
    layout = lang.fill_layout([state.timesigs[b] for b in bars], [lang.bar_control_tokens(bar_controls.get(b))
                                                                  for b in bars])
    fill_headers = [lang.tokens_to_ids(segment.header) for segment in layout]
    room = positions - len(prompt) - sum(len(h) for h in fill_headers) - 1
    plan = Plan(drum=state.tracks[target].program == -1, timesig_id=tables.single_id[state.timesigs[bars.start]])
    for segment, fill_header in zip(layout, fill_headers, strict=True):
        bars_in = max(1, segment.num_bars)
        budget = segment_budget(budget_per_bar * bars_in, room * bars_in // len(bars), 1)
        plan.force(fill_header).free(segment.num_bars, tables.single_id[FILL_END], budget, min_notes=0,
                                     bar_budget=budget // bars_in if segment.num_bars else 0)
    return Pass(prompt, plan, seed)


def track_pass(lang: Language, state: PieceState, target: int, window: range, header: list[str],
               budget_per_bar: int, positions: int, seed: int) -> Pass:
    """Pass that writes track ``target`` over ``window`` after the other tracks."""
    tables = grammar_tables(lang)
    prompt = lang.tokens_to_ids(_context(state, target, window, range(0), header, skip_target=True) + header)
    budget = segment_budget(budget_per_bar * len(window), positions - len(prompt) - 1, 1)
    plan = Plan(drum=state.tracks[target].program == -1, timesig_id=tables.single_id[state.timesigs[window.start]])
    plan.free(len(window), tables.single_id[TRACK_END], budget, min_notes=1, bar_budget=max(1, budget // len(window)))
    return Pass(prompt, plan, seed)


def _set_bars(state: PieceState, target: int, bars: Sequence[int], contents: Sequence[list[str]]) -> None:
    """Store generated bar contents (``TimeSig_x ...``), the piece's time signature restored."""
    for b, content in zip(bars, contents, strict=True):
        body = [t for t in content[1:] if not t.startswith("AC")]  # content[0]: the bar's TimeSig
        state.tracks[target].bars[b] = [BAR, state.timesigs[b], *body]


def write_track(lang: Language, state: PieceState, target: int, header: list[str], request: PieceRequest,
                positions: int, seeds: Any) -> Generator[Pass, Any, None]:
    """Passes writing track ``target`` from scratch: a first window, then chunks left to right."""
    state.tracks[target].bars = state.empty_bars()
    first = range(0, min(request.context_bars, state.num_bars))
    result = yield track_pass(lang, state, target, first, header, request.max_tokens_per_bar, positions, next(seeds))
    generated = split_at(lang.ids_to_tokens(result.ids)[0], BAR, TRACK_END)
    _set_bars(state, target, first, generated)
    step = max(1, request.context_bars // 2)
    for c0 in range(first.stop, state.num_bars, step):
        chunk = range(c0, min(c0 + step, state.num_bars))
        window = range(max(0, chunk.stop - request.context_bars), chunk.stop)
        yield from fill_bars(lang, state, target, chunk, window, header, {}, request, positions, seeds)


def fill_bars(lang: Language, state: PieceState, target: int, chunk: range, window: range, header: list[str],
              bar_controls: Mapping[int, Mapping[str, Any]], request: PieceRequest, positions: int,
              seeds: Any) -> Generator[Pass, Any, None]:
    """One bar-infill pass over ``chunk`` and the update of the state."""
    result = yield infill_pass(lang, state, target, chunk, window, header, bar_controls,
                               request.max_tokens_per_bar, positions, next(seeds))
    _set_bars(state, target, chunk, lang.fill_contents(lang.ids_to_tokens(result.ids)[0]))


def _restore_meter(score: Score, original: Score) -> Score:
    """The original tempos and time signatures, at the decoded score's resolution."""
    scale = score.ticks_per_quarter / original.ticks_per_quarter
    if len(original.tempos):
        score.tempos = [Tempo(round(t.time * scale), t.qpm) for t in original.tempos]
    if len(original.time_signatures):
        score.time_signatures = [TimeSignature(round(t.time * scale), t.numerator, t.denominator)
                                 for t in original.time_signatures]
    return score


def piece_job(lang: Language, score: Score, request: PieceRequest, positions: int) -> Generator[Pass, Any, Generation]:
    """Passes of a piece request, in order; returns the edited piece's :class:`Generation`."""
    state = piece_state(lang, score)
    check_piece_request(lang, score, state, request)
    seeds = (derive_seed(request.seed, k) for k in range(1 << 30))
    totals = {"tokens": 0, "seconds": 0.0, "passes": 0, "steps": 0}
    gen = _passes(lang, score, state, request, positions, seeds)
    result = None
    while True:
        try:
            pass_ = gen.send(result)
        except StopIteration:
            break
        result = yield pass_
        totals["tokens"] += len(result.ids)
        totals["seconds"] += result.seconds
        totals["passes"] += 1
        totals["steps"] += result.steps
    tokens = state.tokens()
    decoded = lang.decode(tokens)
    bars, programs = track_stats(tokens)
    return Generation(_restore_meter(decoded.score, score), tokens, bars, programs, totals["tokens"],
                      totals["seconds"], decoded.num_errors, totals["passes"], totals["steps"])


def _passes(lang: Language, score: Score, state: PieceState, request: PieceRequest, positions: int,
            seeds: Any) -> Generator[Pass, Any, None]:
    step = max(1, request.context_bars // 2)
    for infill in request.bar_infills:
        target = state.track(score, infill.track)
        header = state.tracks[target].header()
        for c0 in range(infill.bar_start, infill.bar_end, step):
            chunk = range(c0, min(c0 + step, infill.bar_end))
            window = centred_window(chunk.start, chunk.stop, request.context_bars, state.num_bars)
            yield from fill_bars(lang, state, target, chunk, window, header, infill.bar_controls, request,
                                 positions, seeds)
    for infill in request.track_infills:
        target = state.track(score, infill.track)
        header = lang.new_track_header(state.tracks[target].program, infill.controls)
        yield from write_track(lang, state, target, header, request, positions, seeds)
    for spec in request.new_tracks:
        state.tracks.append(PieceTrack(spec.program, state.empty_bars()))
        header = lang.new_track_header(spec.program, spec.controls)
        yield from write_track(lang, state, len(state.tracks) - 1, header, request, positions, seeds)
