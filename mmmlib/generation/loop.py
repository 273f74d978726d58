"""A new multitrack loop: its request, its single generation pass and its result.

:class:`LoopRequest` holds one :class:`TrackSpec` (program and track controls) per
track; the tracks are generated one after the other in one sequence, in MMM order: each
track header (``Track_Start Program_P <controls>``) is forced once the previous track has
ended, so every track is conditioned on the ones before it. :class:`Generation` is the
result of any request (loops and piece edits alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from symusic import Score, Tempo

from mmmlib.generation.constraint import Plan, grammar_tables
from mmmlib.generation.language import language_of
from mmmlib.generation.sampling import Pass
from mmmlib.tokens.special import TRACK_END, TRACK_START

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping, Sequence

    from transformers import PreTrainedModel

    from mmmlib.generation.language import Language, MarkedLoop

DEFAULT_MAX_TOKENS_PER_BAR = 128


@dataclass(frozen=True)
class TrackSpec:
    """A track to generate: GM program (``-1`` drums) and track controls.

    :param controls: ``{control type: value}`` in the tokenizer's names, e.g. with mmmlib's
        dialect ``{"NOMML": 4, "LoopCount": "1", "LoopDuration": "8-12", "NoteDensityMin": 4}``
        (``ACTrack`` prefix optional), with the published one ``{"ACMedianMetricLevel": 4,
        "ACLoopCount": "1", "ACLoopDurationQuantile": 2}``; leave a control out for "no
        control". :meth:`Language.control_values <mmmlib.generation.language.Language.control_values>`
        gives NOMML and loop controls by meaning in either dialect.
    """

    program: int
    controls: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoopRequest:
    """A new multitrack loop.

    :param tracks: the tracks, generated in this order.
    :param num_bars: bars of every track (>= 1).
    :param time_signature: e.g. ``"4/4"``; None: the model picks it (first track), the
        other tracks keep it.
    :param tempo: quarter notes per minute (the nearest tempo token is enforced and the
        exact value written to the score); None: the model picks it.
    :param seed: the request's seed: the same seed gives the same loop.
    :param max_tokens_per_bar: token budget of a bar (the track closes when it runs out).
    """

    tracks: tuple[TrackSpec, ...]
    num_bars: int = 4
    time_signature: str | None = None
    tempo: float | None = None
    seed: int = 0
    max_tokens_per_bar: int = DEFAULT_MAX_TOKENS_PER_BAR


@dataclass
class Generation:
    """Result of one request.

    :param score: the decoded score (ticks per quarter ``tok.output_tpq``).
    :param tokens: base tokens of the final sequence (the whole loop or piece).
    :param bars_per_track: ``Bar_None`` count of each track in ``tokens``.
    :param programs: program of each track in ``tokens`` (-1 drums).
    :param num_tokens: ids generated (all passes).
    :param seconds: generation time (this request's share of its batches).
    :param num_errors: problems met while decoding (0 for a constrained generation).
    :param num_passes: ``generate`` rows this request used.
    :param num_steps: decoding steps of the batches this request ran in (``num_tokens`` plus
        the steps its rows waited for longer rows of their batch).
    :param tokens_per_track: ids generated for each track of a loop (its forced header,
        bars and ``Track_End``; the first header is the prompt); empty for pieces.
    :param loops: the loops the sequence marks (``Loop_Start`` ... ``Loop_End``, published
        dialect), in the score's tracks and ticks.
    """

    score: Score
    tokens: list[str]
    bars_per_track: list[int]
    programs: list[int]
    num_tokens: int = 0
    seconds: float = 0.0
    num_errors: int = 0
    num_passes: int = 1
    num_steps: int = 0
    tokens_per_track: list[int] = field(default_factory=list)
    loops: list[MarkedLoop] = field(default_factory=list)


# --------------------------------------------------------------------------- checks
def check_request(lang: Language, request: LoopRequest) -> None:
    """Raise ``ValueError`` for a request the language cannot express (before any model work)."""
    if request.num_bars < 1:
        raise ValueError(f"num_bars must be >= 1, got {request.num_bars}")
    if not request.tracks:
        raise ValueError("a loop request needs at least one track")
    if request.max_tokens_per_bar < 4:
        raise ValueError(f"max_tokens_per_bar must be >= 4, got {request.max_tokens_per_bar}")
    for spec in request.tracks:
        check_program(spec.program)
        lang.track_header(spec.program, spec.controls)  # raises on unknown controls
    if request.time_signature is not None and not lang.has_token(f"TimeSig_{request.time_signature}"):
        known = sorted(lang.values_of("TimeSig"))
        raise ValueError(f"time signature {request.time_signature!r} is not in the tokenizer: {known}")
    if request.tempo is not None and request.tempo <= 0:
        raise ValueError(f"tempo must be > 0, got {request.tempo}")


def check_program(program: int) -> None:
    """Programs are GM 0-127, or -1 for drums."""
    if not -1 <= int(program) <= 127:
        raise ValueError(f"program must be in 0-127 (or -1 for drums), got {program}")


def nearest_tempo_token(lang: Language, qpm: float) -> str:
    """The tempo token closest to ``qpm``."""
    return "Tempo_" + min(lang.values_of("Tempo"), key=lambda v: abs(float(v) - qpm))


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed from ``seed`` and integer keys (pass index, gen id, attempt...)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *(int(k) & 0xFFFFFFFF for k in keys)])
               .generate_state(1)[0] & 0x7FFFFFFF)


def max_positions(model: PreTrainedModel) -> int:
    """Longest sequence the model was built for."""
    config = model.config
    return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 2048))


def segment_budget(wanted: int, room: int, segments: int) -> int:
    """Token budget of each of ``segments`` free segments: ``wanted``, less when the
    sequence would outgrow the model (``room`` positions left after prompt and forced ids)."""
    return max(1, min(wanted, room // max(1, segments)))


# --------------------------------------------------------------------------- loops
def loop_pass(lang: Language, request: LoopRequest, positions: int) -> Pass:
    """The single pass of a loop request: first header as prompt, the rest forced in the plan."""
    tables = grammar_tables(lang)
    headers = [lang.tokens_to_ids(lang.track_header(s.program, s.controls)) for s in request.tracks]
    forced = sum(len(h) for h in headers[1:]) + 1
    budget = segment_budget(request.num_bars * request.max_tokens_per_bar, positions - len(headers[0]) - forced,
                            len(headers))
    plan = Plan(drum=request.tracks[0].program == -1)
    if request.time_signature is not None:
        plan.timesig_id = tables.single_id[f"TimeSig_{request.time_signature}"]
    if request.tempo is not None:
        plan.tempo_id = tables.single_id[nearest_tempo_token(lang, request.tempo)]
    end_id = tables.single_id[TRACK_END]
    for i, header in enumerate(headers):
        if i:
            plan.force(header)
        plan.free(request.num_bars, end_id, budget, min_notes=1, bar_budget=max(1, budget // request.num_bars))
    return Pass(headers[0], plan, derive_seed(request.seed, 0))


def track_stats(tokens: Sequence[str]) -> tuple[list[int], list[int]]:
    """``Bar_None`` count and program of each ``Track_Start ... Track_End`` in ``tokens``."""
    bars: list[int] = []
    programs: list[int] = []
    inside = False
    for token in tokens:
        if token == TRACK_START:
            bars.append(0)
            programs.append(0)
            inside = True
        elif token == TRACK_END:
            inside = False
        elif inside and token == "Bar_None":
            bars[-1] += 1
        elif inside and token.startswith("Program_"):
            programs[-1] = int(token.split("_", 1)[1])
    return bars, programs


def clip_to_bars(score: Score, num_bars: int) -> Score:
    """Shorten notes that ring past the end of bar ``num_bars`` (first time signature)."""
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    numerator, denominator = (ts.numerator, ts.denominator) if ts is not None else (4, 4)
    end = num_bars * score.ticks_per_quarter * 4 * numerator // denominator
    for track in score.tracks:
        for note in track.notes:
            if note.time + note.duration > end:
                note.duration = max(1, end - note.time)
    return score


def decode_generation(lang: Language, ids: Sequence[int], tempo: float | None = None,
                      num_bars: int | None = None) -> Generation:
    """Decode a full id sequence into a :class:`Generation` (counts left to the caller)."""
    tokens, unknown = lang.ids_to_tokens(ids)
    result = lang.decode(tokens)
    score = result.score
    if tempo is not None:
        score.tempos = [Tempo(0, float(tempo))]
    if num_bars is not None:
        score = clip_to_bars(score, num_bars)
    bars, programs = track_stats(tokens)
    return Generation(score, tokens, bars, programs, num_errors=result.num_errors + unknown, loops=result.loops)


def loop_job(lang: Language, request: LoopRequest, positions: int) -> Generator[Pass, Any, Generation]:
    """Passes of a loop request (one), then its :class:`Generation`."""
    check_request(lang, request)
    first = loop_pass(lang, request, positions)
    result = yield first
    generation = decode_generation(lang, first.prompt + result.ids, request.tempo, request.num_bars)
    generation.num_tokens, generation.seconds, generation.num_steps = len(result.ids), result.seconds, result.steps
    ends = [i + 1 for i, v in enumerate(result.ids) if v == grammar_tables(lang).single_id[TRACK_END]]
    generation.tokens_per_track = [b - a for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    return generation


def bar_control_tokens(tok: Language | object, controls: Mapping[str, Any] | None) -> list[str]:
    """Bar control tokens of a language (or a tokenizer's), in the order the encoder writes them.

    :param tok: a language or a tokenizer.
    :param controls: ``{control type: value}`` (mmmlib's dialect: ``ACBar`` prefix optional).
    :return: base tokens.
    :raises ValueError: for an unknown control, or controls in a dialect without them here.
    """
    return language_of(tok).bar_control_tokens(controls)
