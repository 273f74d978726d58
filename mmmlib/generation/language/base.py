"""The token language generation talks to: one interface, one implementation per dialect.

A :class:`Language` is everything the generation engine needs to know about a token
dialect, and nothing else:

- the *vocabulary as the grammar sees it*: each id's base tokens (:meth:`Language.id_tokens`,
  whatever BPE merged into it, a pseudo token for an id that stands for no base token), each
  token's family and which family may follow which (:meth:`Language.grammar`), the families
  that never appear inside generated music (:attr:`Language.non_content`) and the optional
  markup a closing segment never writes (:attr:`Language.markers`);
- *prompts*: track headers (:meth:`Language.track_header`, :meth:`Language.new_track_header`),
  controls by meaning (:meth:`Language.control_values`), the layout of a bar infill
  (:meth:`Language.fill_layout`, :meth:`Language.fill_contents`) and base tokens to ids;
- *reading back*: a piece as per-track bars (:meth:`Language.encode_piece`) and token
  sequences as scores with the loops they mark (:meth:`Language.decode`).

:class:`~mmmlib.generation.language.mmm.MMMLoopLanguage` speaks mmmlib's dialect and
:class:`~mmmlib.generation.language.published.PublishedLanguage` the published MIDI-GPT-Loop
one; :func:`mmmlib.generation.language.language_of` picks the one of a tokenizer.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from symusic import Score


@dataclass(frozen=True)
class MarkedLoop:
    """A loop a sequence marks (``Loop_Start`` ... ``Loop_End``): its track in the decoded
    score and its span in that score's ticks."""

    track_idx: int
    start_tick: int
    end_tick: int


@dataclass
class Decoded:
    """A token sequence read back: the score, the problems met, the loops it marks."""

    score: Score
    num_errors: int = 0
    loops: list[MarkedLoop] = field(default_factory=list)


@dataclass
class PieceTrackTokens:
    """One track of a piece as a language encodes it: its source index, program and bars
    (each ``Bar_None TimeSig_x ...``, controls left out)."""

    track_idx: int
    program: int
    bars: list[list[str]]


@dataclass(frozen=True)
class FillSegment:
    """One forced header and the free segment after it, in a bar infill's layout."""

    header: list[str]  # forced base tokens (``FillBar_Start`` ...)
    num_bars: int  # ``Bar_None`` the free segment holds before ``FillBar_End``


class Language(metaclass=ABCMeta):
    """What generation needs from a token dialect (see the module doc)."""

    name: str = ""
    #: families that are whole tokens rather than token types (``Track_Start``, ``Loop_End``...)
    whole_tokens: frozenset[str] = frozenset()
    #: families never written inside a free segment (structure, programs, headers)
    non_content: frozenset[str] = frozenset()
    #: content families a closing segment never writes (optional markup such as loop markers)
    markers: frozenset[str] = frozenset()
    #: repetition penalty when the caller leaves it to the dialect (MMM's published default: 1.2)
    default_repetition_penalty: float = 1.0

    def __init__(self, tok: Any) -> None:
        """Wrap a tokenizer.

        :param tok: the tokenizer of this dialect.
        """
        self.tok = tok
        self.cache: dict[str, Any] = {}  # grammar tables per device, built once

    # ------------------------------------------------------------------ vocabulary
    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids."""

    @abstractmethod
    def id_tokens(self) -> list[tuple[str, ...]]:
        """Per id, its base tokens (a pseudo token for an id that stands for none).

        :return: one non-empty tuple per id.
        """

    @abstractmethod
    def grammar(self) -> dict[str, frozenset[str]]:
        """Which families may follow each family.

        :return: ``{family: next families}``.
        """

    @abstractmethod
    def token_id(self, token: str) -> int:
        """The single id of a base token (``KeyError`` when the vocabulary lacks it).

        :param token: a base token.
        :return: its id.
        """

    @abstractmethod
    def base_tokens(self) -> list[str]:
        """Every base token of the vocabulary.

        :return: the tokens.
        """

    @abstractmethod
    def tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of a prompt's base tokens (BPE as the dialect's training data has it).

        :param tokens: base tokens.
        :return: the ids.
        """

    @property
    def eos_id(self) -> int:
        """Id ending a generated sequence."""
        return self.token_id("EOS_None")

    @property
    def pad_id(self) -> int:
        """Padding id of batched prompts."""
        return self.token_id("PAD_None")

    def family(self, token: str) -> str:
        """Family of a base token: the token itself for :attr:`whole_tokens`, else its type.

        :param token: a base token.
        :return: its family.
        """
        return token if token in self.whole_tokens else token.split("_", 1)[0]

    def has_token(self, token: str) -> bool:
        """Whether the vocabulary holds a base token.

        :param token: a base token.
        :return: True when it has an id.
        """
        try:
            self.token_id(token)
        except KeyError:
            return False
        return True

    def values_of(self, kind: str) -> list[str]:
        """Values of the base tokens of one type, e.g. ``values_of("TimeSig")`` -> ``["4/4", ...]``.

        :param kind: the token type.
        :return: the values, in vocabulary order.
        """
        return [t.split("_", 1)[1] for t in self.base_tokens() if t.split("_", 1)[0] == kind and "_" in t]

    def ids_to_tokens(self, ids: Sequence[int]) -> tuple[list[str], int]:
        """Base tokens of ids (pseudo tokens left out) and the number of ids outside the vocabulary.

        :param ids: ids.
        :return: ``(tokens, unknown)``.
        """
        table, tokens, unknown = self.id_tokens(), [], 0
        pseudo = self.pseudo_tokens()
        for i in ids:
            i = int(i)
            if 0 <= i < len(table):
                tokens.extend(t for t in table[i] if t not in pseudo)
            else:
                unknown += 1
        return tokens, unknown

    def pseudo_tokens(self) -> frozenset[str]:
        """Tokens :meth:`id_tokens` uses for ids that stand for no base token.

        :return: the pseudo tokens (none by default).
        """
        return frozenset()

    def bar_positions(self, time_signature: str) -> int:
        """``Position`` values in a bar of ``"n/d"`` (positions at or past it fall in the next bar).

        :param time_signature: e.g. ``"6/8"``.
        :return: the number of positions.
        """
        numerator, denominator = (int(x) for x in time_signature.split("/"))
        return numerator * self.positions_per_quarter * 4 // denominator

    @property
    def positions_per_quarter(self) -> int:
        """``Position`` steps per quarter note."""
        return 12

    # ------------------------------------------------------------------ requests
    @abstractmethod
    def track_header(self, program: int, controls: Mapping[str, Any] | None = None) -> list[str]:
        """``Track_Start Program_P <track controls>`` of a track generated in a new sequence.

        :param program: GM program, ``-1`` for drums.
        :param controls: ``{control type: value}`` in this dialect's names (see :meth:`control_values`).
        :return: base tokens.
        :raises ConfigError: for an unknown program, control or value.
        """

    def new_track_header(self, program: int, controls: Mapping[str, Any] | None = None) -> list[str]:
        """The header of a track added to (or rewritten in) an existing piece, after its other tracks.

        :param program: GM program, ``-1`` for drums.
        :param controls: see :meth:`track_header`.
        :return: base tokens (the dialect's marker of a new track, if it has one, then the header).
        """
        return self.track_header(program, controls)

    @abstractmethod
    def control_values(self, nomml: int | None = None, loop_count: int | None = None,
                       loop_duration_beats: float | None = None) -> dict[str, Any]:
        """Track controls by meaning, in this dialect's names (None: no such control).

        :param nomml: NOMML level 0-12.
        :param loop_count: number of loops (5 or more share one value).
        :param loop_duration_beats: loop duration in quarter notes.
        :return: ``{control type: value}`` for :meth:`track_header`.
        :raises ConfigError: when the dialect lacks the control.
        """

    @abstractmethod
    def supports(self, control: str) -> bool:
        """Whether the dialect has a control: ``"nomml"``, ``"loop_count"`` or ``"loop_duration"``.

        :param control: the control's meaning.
        :return: True when :meth:`control_values` can express it.
        """

    @abstractmethod
    def track_control_types(self) -> list[str]:
        """Types of the track controls, in the order a header writes them.

        :return: the types.
        """

    def bar_control_tokens(self, controls: Mapping[str, Any] | None) -> list[str]:
        """Bar control tokens of a filled bar (none by default: the dialect has no bar controls here).

        :param controls: ``{control type: value}``.
        :return: base tokens.
        :raises ValueError: when controls are given and the dialect cannot write them.
        """
        if controls:
            raise ValueError(f"bar controls are not supported in the {self.name} dialect, got {dict(controls)}")
        return []

    # ------------------------------------------------------------------ infill layout
    @abstractmethod
    def fill_layout(self, timesigs: Sequence[str], bar_controls: Sequence[list[str]]) -> list[FillSegment]:
        """How bars to fill are asked for after a prompt whose target bars are ``Infill_Bar``.

        :param timesigs: the ``TimeSig_x`` token of each bar to fill.
        :param bar_controls: the bar control tokens of each bar to fill.
        :return: the forced headers and free segments, in order (each ends with ``FillBar_End``).
        """

    @abstractmethod
    def fill_contents(self, tokens: Sequence[str]) -> list[list[str]]:
        """The filled bars of generated tokens (the fill headers and ends included).

        :param tokens: base tokens generated after the prompt.
        :return: one list per bar, starting with its ``TimeSig_x``.
        """

    # ------------------------------------------------------------------ reading back
    @abstractmethod
    def encode_piece(self, score: Score) -> list[PieceTrackTokens]:
        """A piece as per-track bars of base tokens, without controls.

        :param score: the piece.
        :return: one entry per kept track.
        """

    @abstractmethod
    def decode(self, tokens: Sequence[str]) -> Decoded:
        """A base token sequence (``Track_Start ... Track_End`` tracks) as a score; never raises.

        :param tokens: base tokens.
        :return: the score, its problems and the loops it marks.
        """

    @property
    @abstractmethod
    def output_tpq(self) -> int:
        """Ticks per quarter of decoded scores."""


def split_at(tokens: Sequence[str], start: str, end: str) -> list[list[str]]:
    """Pieces of ``tokens`` that begin with ``start`` (excluded), up to ``end`` (excluded).

    :param tokens: base tokens.
    :param start: the token opening a piece.
    :param end: a token left out wherever it is.
    :return: the pieces.
    """
    pieces: list[list[str]] = []
    for token in tokens:
        if token == start:
            pieces.append([])
        elif token == end:
            continue
        elif pieces:
            pieces[-1].append(token)
    return pieces
