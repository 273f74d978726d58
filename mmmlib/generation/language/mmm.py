"""mmmlib's own dialect (:class:`~mmmlib.tokens.tokenizer.MMMLoop`, written by 02_tokenizer).

BPE never merges structure or control tokens here, each bar of a bar infill is its own
``FillBar_Start TimeSig_x <bar controls> ... FillBar_End`` span (without ``Bar_None``), and a
new track is a plain header after the other tracks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mmmlib.core.errors import ConfigError
from mmmlib.generation.language.base import Decoded, FillSegment, Language, PieceTrackTokens, split_at
from mmmlib.tokens.controls import (
    LOOP_COUNT_TYPE,
    LOOP_DURATION_TYPE,
    NOMML_TYPE,
    loop_count_value,
    loop_duration_value,
)
from mmmlib.tokens.special import BAR, FILL_END, FILL_START
from mmmlib.tokens.vocab import (
    STRUCTURE_TOKENS,
    control_ids,
    control_types,
    grammar_rules,
    track_prompt_tokens,
)

if TYPE_CHECKING:
    from symusic import Score

    from mmmlib.tokens.tokenizer import MMMLoop

CONTROL_TYPES = {"nomml": NOMML_TYPE, "loop_count": LOOP_COUNT_TYPE, "loop_duration": LOOP_DURATION_TYPE}


class MMMLoopLanguage(Language):
    """The dialect of an :class:`MMMLoop` tokenizer."""

    name = "mmmlib"
    non_content = frozenset({*STRUCTURE_TOKENS, "Program"}) - {BAR}

    def __init__(self, tok: MMMLoop) -> None:
        """Wrap an mmmlib tokenizer.

        :param tok: the tokenizer.
        """
        super().__init__(tok)
        self.whole_tokens = frozenset(tok.special_tokens)

    @property
    def vocab_size(self) -> int:
        """Number of ids."""
        return len(self.tok)

    def id_tokens(self) -> list[tuple[str, ...]]:
        """Per id, its base tokens."""
        return self.tok.id_tokens()

    def grammar(self) -> dict[str, frozenset[str]]:
        """:func:`mmmlib.tokens.vocab.grammar_rules` of the tokenizer."""
        return grammar_rules(self.tok)

    def token_id(self, token: str) -> int:
        """The single id of a base token."""
        return self.tok.vocab[token]

    def base_tokens(self) -> list[str]:
        """Every base token."""
        return list(self.tok.vocab)

    def tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of base tokens (BPE words of mergeable tokens)."""
        return self.tok.tokens_to_ids(tokens)

    def bar_positions(self, time_signature: str) -> int:
        """Positions of a bar: the numerator's beats (of the denominator) times the positions per beat."""
        return int(time_signature.split("/")[0]) * self.tok.config.max_num_pos_per_beat

    # ------------------------------------------------------------------ requests
    def track_header(self, program: int, controls: Mapping[str, Any] | None = None) -> list[str]:
        """:func:`mmmlib.tokens.vocab.track_prompt_tokens` (control types with or without ``ACTrack``)."""
        return track_prompt_tokens(self.tok, program, controls)

    def supports(self, control: str) -> bool:
        """Whether the tokenizer was built with this control."""
        return CONTROL_TYPES.get(control) in control_ids(self.tok)

    def control_values(self, nomml: int | None = None, loop_count: int | None = None,
                       loop_duration_beats: float | None = None) -> dict[str, Any]:
        """``ACTrackNOMML``, ``ACTrackLoopCount`` and ``ACTrackLoopDuration`` values."""
        wanted = {"nomml": None if nomml is None else int(nomml),
                  "loop_count": None if loop_count is None else loop_count_value(loop_count),
                  "loop_duration": None if loop_duration_beats is None else loop_duration_value(loop_duration_beats)}
        out = {}
        for meaning, value in wanted.items():
            if value is None:
                continue
            if not self.supports(meaning):
                raise ConfigError(meaning, f"is a control this tokenizer lacks (no {CONTROL_TYPES[meaning]} tokens)")
            out[CONTROL_TYPES[meaning]] = value
        return out

    def track_control_types(self) -> list[str]:
        """Track control types, in the encoder's order."""
        return control_types(self.tok)[0]

    def bar_control_tokens(self, controls: Mapping[str, Any] | None) -> list[str]:
        """Bar control tokens, in the order the encoder writes them (``ACBar`` prefix optional)."""
        _, bar_types = control_types(self.tok)
        tokens: dict[str, list[str]] = {}
        for kind, value in (controls or {}).items():
            full = kind if kind.startswith("AC") else f"ACBar{kind}"
            values = value if isinstance(value, (list, tuple)) else [value]  # pitch classes: several
            for v in values:
                if full not in bar_types or f"{full}_{v}" not in self.tok.vocab:
                    raise ValueError(f"unknown bar control {full}_{v} (bar controls of this tokenizer: {bar_types})")
            tokens[full] = [f"{full}_{v}" for v in values]
        return [t for k in bar_types for t in tokens.get(k, [])]

    # ------------------------------------------------------------------ infill layout
    def fill_layout(self, timesigs: Sequence[str], bar_controls: Sequence[list[str]]) -> list[FillSegment]:
        """One ``FillBar_Start TimeSig_x <bar controls>`` span per bar, without ``Bar_None``."""
        return [FillSegment([FILL_START, ts, *controls], 0) for ts, controls in zip(timesigs, bar_controls, strict=True)]

    def fill_contents(self, tokens: Sequence[str]) -> list[list[str]]:
        """Each fill span's tokens (``TimeSig_x ...``)."""
        return split_at(tokens, FILL_START, FILL_END)

    # ------------------------------------------------------------------ reading back
    def encode_piece(self, score: Score) -> list[PieceTrackTokens]:
        """:meth:`~mmmlib.tokens.tokenizer.MMMLoop.encode_score` without bar controls; control tokens left out."""
        return [PieceTrackTokens(e.track_idx, e.program, [[t for t in bar if not t.startswith("AC")] for bar in e.bars])
                for e in self.tok.encode_score(score, bar_controls=False)]

    def decode(self, tokens: Sequence[str]) -> Decoded:
        """:meth:`~mmmlib.tokens.tokenizer.MMMLoop.decode_tokens` (this dialect marks no loops)."""
        result = self.tok.decode_tokens(tokens)
        return Decoded(result.score, result.num_errors)

    @property
    def output_tpq(self) -> int:
        """Ticks per quarter of decoded scores."""
        return self.tok.output_tpq
