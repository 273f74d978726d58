"""The published MIDI-GPT-Loop dialect (``MMM_epl_mistral_tokenizer_with_acs.json``).

What differs from mmmlib's dialect, and how generation handles it:

- **BPE crosses structure tokens**: a bar word starts with ``Bar_None`` and merges it with its
  ``TimeSig``, ``Position`` and more (``Bar_None TimeSig_4/4 Position_0`` is one id). The
  grammar tables see every base token of an id, so bars are counted inside merged ids. The
  id of ``▁`` alone stands for no base token: it is the pseudo token ``▁`` here, which may
  only follow ``Track_Start`` (where the encoder writes it) and is never generated.
- **Microtiming**: ``Position_p [DeltaDirection_0] Delta_d`` before the onset's notes.
  ``Position_0`` is its own family: the encoder never writes a negative delta there, which
  would put the first bar's notes before the piece starts.
- **Loop markers** ``Loop_Start`` / ``Loop_End`` are written by the model inside a track. A
  ``Loop_End`` needs an open ``Loop_Start`` (the constraint counts them). The encoder marks a
  loop that ends with its track in one extra bar, which exact bar counts leave no room for:
  a loop still open at ``Track_End`` ends where the track's last bar ends.
- **Controls**: ``ACMedianMetricLevel_0..12`` (NOMML), ``ACLoopCount_0..4, 5+``,
  ``ACLoopDurationQuantile_1..7`` (one per distinct duration bin, ``(lo, hi]`` over
  6/8/12/16/24/32 quarters), and the MidiTok track controls of the file.
- **Infill**: bars to fill are ``Infill_Bar`` in their track and come back in *one*
  ``FillBar_Start Bar_None ... FillBar_End`` span after the tracks; a new or rewritten track
  comes after the others as ``Infill_Track Track_Start Program_P <controls>``, as MMM's
  training windows and inference write them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mmmlib.core.errors import ConfigError
from mmmlib.generation.language.base import (
    Decoded,
    FillSegment,
    Language,
    MarkedLoop,
    PieceTrackTokens,
    split_at,
)
from mmmlib.tokens.published.controls import MAX_LOOPS, loop_bin
from mmmlib.tokens.published.decoder import decode_segments, split_tracks
from mmmlib.tokens.published.report import Report
from mmmlib.tokens.published.vocab import TPQ
from mmmlib.tokens.special import BAR, FILL_END, FILL_START, INFILL_BAR, TRACK_END, TRACK_START

if TYPE_CHECKING:
    from symusic import Score

    from mmmlib.tokens.published import PublishedTokenizer

METASPACE_TOKEN = "\u2581"  # pseudo token of the id of ``▁`` alone
INFILL_TRACK = "Infill_Track"
LOOP_START, LOOP_END = "Loop_Start", "Loop_End"
POSITION_0 = "Position_0"
CONTROL_TYPES = {"nomml": "ACMedianMetricLevel", "loop_count": "ACLoopCount",
                 "loop_duration": "ACLoopDurationQuantile"}
NOTE_STARTS = frozenset({"Pitch", "PitchDrum"})
ENDS = frozenset({TRACK_END, FILL_END, INFILL_BAR})


class PublishedLanguage(Language):
    """The dialect of a :class:`~mmmlib.tokens.published.PublishedTokenizer`."""

    name = "published"
    markers = frozenset({LOOP_START, LOOP_END})
    default_repetition_penalty = 1.2

    def __init__(self, tok: PublishedTokenizer) -> None:
        """Wrap the published tokenizer.

        :param tok: the tokenizer.
        """
        super().__init__(tok)
        specials = frozenset(tok.config["special_tokens"])
        self.whole_tokens = specials | {LOOP_START, LOOP_END, METASPACE_TOKEN, POSITION_0}
        self.non_content = (specials | {"Program", METASPACE_TOKEN}) - {BAR}
        self._id_tokens: list[tuple[str, ...]] | None = None

    @property
    def vocab_size(self) -> int:
        """Number of ids (16,000 for the published file)."""
        return len(self.tok)

    def id_tokens(self) -> list[tuple[str, ...]]:
        """Per id, its base tokens; the id of ``▁`` alone is the pseudo token ``▁``."""
        if self._id_tokens is None:
            self._id_tokens = [tokens or (METASPACE_TOKEN,) for tokens in self.tok.id_tokens()]
        return self._id_tokens

    def pseudo_tokens(self) -> frozenset[str]:
        """``▁``: the id that stands for no base token."""
        return frozenset({METASPACE_TOKEN})

    def token_id(self, token: str) -> int:
        """The single id of a base token (base ids are BPE ids)."""
        if token == METASPACE_TOKEN:
            if "metaspace_id" not in self.cache:
                self.cache["metaspace_id"] = self.id_tokens().index((METASPACE_TOKEN,))
            return self.cache["metaspace_id"]
        return self.tok.vocab.token_to_id[token]

    def base_tokens(self) -> list[str]:
        """Every base token."""
        return list(self.tok.vocab.id_to_token)

    def tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids as MMM's training windows have them (see :meth:`~mmmlib.tokens.published.PublishedTokenizer.tokens_to_ids`)."""
        return self.tok.tokens_to_ids([t for t in tokens if t != METASPACE_TOKEN])

    @property
    def positions_per_quarter(self) -> int:
        """``Position`` steps per quarter (12)."""
        return int(self.tok.vocab.grids.res)

    def _ac_types(self, bar: bool) -> list[str]:
        seen: list[str] = []
        for token in self.tok.vocab.id_to_token:
            kind = token.split("_", 1)[0]
            if kind.startswith("AC") and kind.startswith("ACBar") == bar and kind not in seen:
                seen.append(kind)
        return seen

    def track_control_types(self) -> list[str]:
        """Track control types in the encoder's order (the vocabulary's)."""
        return self._ac_types(bar=False)

    def grammar(self) -> dict[str, frozenset[str]]:
        """The published layout (see the module doc), as families."""
        track_acs, bar_acs = set(self.track_control_types()), set(self._ac_types(bar=True))
        positions = {"Position", POSITION_0}
        onset = {"Tempo", *NOTE_STARTS, LOOP_START, LOOP_END}
        after_event = {*positions, "Bar", *ENDS}
        g: dict[str, set[str]] = {
            TRACK_START: {"Program", METASPACE_TOKEN}, METASPACE_TOKEN: {"Program"},
            "Program": {*track_acs, "Bar", INFILL_BAR}, "Bar": {"TimeSig"},
            "TimeSig": {*bar_acs, *positions, "Bar", *ENDS},
            "Position": {"DeltaDirection", "Delta", *onset}, POSITION_0: {"Delta", *onset},
            "DeltaDirection": {"Delta"}, "Delta": onset, "Tempo": {*NOTE_STARTS, LOOP_START, LOOP_END, *after_event},
            "Pitch": {"Velocity"}, "PitchDrum": {"Velocity"}, "Velocity": {"Duration"},
            "Duration": {*NOTE_STARTS, LOOP_START, LOOP_END, *after_event},
            LOOP_START: {LOOP_START, *after_event}, LOOP_END: {LOOP_START, LOOP_END, *after_event},
            INFILL_BAR: {INFILL_BAR, "Bar", TRACK_END},
            TRACK_END: {TRACK_START, INFILL_TRACK, FILL_START, "EOS_None", "PAD_None"},
            INFILL_TRACK: {TRACK_START}, FILL_START: {"Bar", FILL_END},
            FILL_END: {FILL_START, "EOS_None", "PAD_None"},
            "BOS_None": {TRACK_START}, "EOS_None": {"PAD_None"}, "PAD_None": {"PAD_None"},
        }
        for kind in track_acs:
            g[kind] = {*track_acs, "Bar", INFILL_BAR}
        for kind in bar_acs:
            g[kind] = {*bar_acs, *positions, "Bar", *ENDS}
        return {k: frozenset(v) for k, v in g.items()}

    # ------------------------------------------------------------------ requests
    def track_header(self, program: int, controls: Mapping[str, Any] | None = None) -> list[str]:
        """``Track_Start Program_P <controls>``; a control type may leave out its ``AC`` prefix
        (``{"MedianMetricLevel": 4}``), and ``ACLoopDurationQuantile`` may hold several bins."""
        types = self.track_control_types()
        wanted: dict[str, list[str]] = {}
        for kind, value in (controls or {}).items():
            full = kind if kind.startswith("AC") else f"AC{kind}"
            values = value if isinstance(value, (list, tuple)) else [value]
            tokens = [f"{full}_{v}" for v in sorted(values, key=str)]
            if full not in types:
                raise ConfigError("controls", f"are not track controls of the published tokenizer: {full!r} "
                                  f"(track controls: {types})")
            missing = [t for t in tokens if not self.has_token(t)]
            if missing:
                raise ConfigError("controls", f"has an unknown control value: no token {missing[0]!r} in the vocabulary")
            wanted[full] = tokens
        if not self.has_token(f"Program_{program}"):
            raise ConfigError("program", f"must be a program of the published tokenizer (0-126, or -1 for drums), "
                              f"got {program}")
        return [TRACK_START, f"Program_{program}", *(t for kind in types for t in wanted.get(kind, []))]

    def new_track_header(self, program: int, controls: Mapping[str, Any] | None = None) -> list[str]:
        """``Infill_Track`` then :meth:`track_header`, as MMM marks a track to generate in a piece."""
        return [INFILL_TRACK, *self.track_header(program, controls)]

    def supports(self, control: str) -> bool:
        """Whether the vocabulary has the control's tokens."""
        return control in CONTROL_TYPES and CONTROL_TYPES[control] in self.track_control_types()

    def control_values(self, nomml: int | None = None, loop_count: int | None = None,
                       loop_duration_beats: float | None = None) -> dict[str, Any]:
        """``ACMedianMetricLevel``, ``ACLoopCount`` (``5+`` from 5) and ``ACLoopDurationQuantile`` (bin 1-7)."""
        out: dict[str, Any] = {}
        if nomml is not None:
            out[CONTROL_TYPES["nomml"]] = int(nomml)
        if loop_count is not None:
            out[CONTROL_TYPES["loop_count"]] = f"{MAX_LOOPS}+" if loop_count >= MAX_LOOPS else str(int(loop_count))
        if loop_duration_beats is not None:
            out[CONTROL_TYPES["loop_duration"]] = loop_bin(float(loop_duration_beats))
        return out

    # ------------------------------------------------------------------ infill layout
    def fill_layout(self, timesigs: Sequence[str], bar_controls: Sequence[list[str]]) -> list[FillSegment]:
        """One ``FillBar_Start`` span holding every bar (each with its ``Bar_None``)."""
        if any(bar_controls):
            raise ValueError("bar controls are not supported in the published dialect")
        return [FillSegment([FILL_START], len(timesigs))]

    def fill_contents(self, tokens: Sequence[str]) -> list[list[str]]:
        """The bars of the ``FillBar_Start ... FillBar_End`` spans (``TimeSig_x ...`` each)."""
        bars: list[list[str]] = []
        for span in split_at(tokens, FILL_START, FILL_END):
            bars += split_at(span, BAR, FILL_END)
        return bars

    # ------------------------------------------------------------------ reading back
    def encode_piece(self, score: Score) -> list[PieceTrackTokens]:
        """The published encoding (no controls), cut into tracks and bars."""
        encoding = self.tok.encode_full(score, controls="none")
        tracks = split_at(encoding.tokens, TRACK_START, TRACK_END)
        out = []
        for source, tokens in zip(encoding.kept_tracks, tracks, strict=False):
            if not tokens or not tokens[0].startswith("Program_"):
                continue
            program = int(tokens[0].split("_", 1)[1])
            out.append(PieceTrackTokens(int(source), program, [[BAR, *bar] for bar in split_at(tokens, BAR, TRACK_END)]))
        return out

    def decode(self, tokens: Sequence[str]) -> Decoded:
        """The reference's decoding, with loops still open at a track's end closed there."""
        segments = [_close_loops(seg) for seg in split_tracks([t for t in tokens if t != METASPACE_TOKEN])]
        report = Report()
        default = float(self.tok.vocab.grids.tempos[self.tok.vocab.grids.default_tempo_idx])
        score, loops = decode_segments(segments, default, report)
        kept = [i for i, seg in enumerate(segments) if _has_note(seg)]
        index = {seq: i for i, seq in enumerate(kept)}
        marked = [MarkedLoop(index[lp.track_idx], lp.start, lp.end) for lp in loops
                  if lp.track_idx in index and lp.end > lp.start]
        return Decoded(score, sum(report.values()), marked)

    @property
    def output_tpq(self) -> int:
        """1920 ticks per quarter."""
        return TPQ


def _close_loops(segment: list[str]) -> list[str]:
    """The segment with its open loops ended at the start of the bar after its last one."""
    open_loops, timesig = 0, "TimeSig_4/4"
    for token in segment:
        if token == LOOP_START:
            open_loops += 1
        elif token == LOOP_END:
            open_loops = max(0, open_loops - 1)
        elif token.startswith("TimeSig_"):
            timesig = token
    if not open_loops:
        return segment
    end = len(segment) - 1 if segment and segment[-1] == TRACK_END else len(segment)
    return [*segment[:end], BAR, timesig, POSITION_0, *[LOOP_END] * open_loops, *segment[end:]]


def _has_note(segment: Sequence[str]) -> bool:
    """Whether the decoder makes a note of the segment (a pitch followed by velocity and duration)."""
    return any(t.split("_", 1)[0] in NOTE_STARTS and i + 2 < len(segment) and segment[i + 1].startswith("Velocity_")
               and segment[i + 2].startswith("Duration_") for i, t in enumerate(segment))
