"""The tokenizer: MidiTok's MMM, extended with MIDI-GPT-Loop's controls, microtiming and infill.

:class:`MMMLoop` subclasses ``miditok.MMM`` (REMI inside each track, tracks one after
another between ``Track_Start`` / ``Track_End``, a ``Program`` token per track, time
signatures, tempos, velocities). What it adds, through MidiTok's extension points only:

- attribute controls (``add_attribute_control``): MidiTok's track controls (note density,
  onset polyphony, note duration, repetition) and bar controls (note density, polyphony,
  pitch class, note duration), plus NOMML and loop count / loop duration
  (:mod:`mmmlib.tokens.controls`), each switched on or off in :class:`ControlSwitches`;
- bar infill tokens ``Infill_Bar`` (placeholder), ``FillBar_Start``, ``FillBar_End``;
- in expressive mode, ``MicroTiming_d`` tokens after a note's ``Duration`` with its offset
  from the grid and 127 velocities (:mod:`mmmlib.tokens.microtiming`);
- BPE with MidiTok's trainer, but on "words" that never contain a control, placeholder or
  structural token (:data:`MERGEABLE_TYPES`), so that each of those is exactly one id:
  the loss mask is per id, and prompts end on clean boundaries.

Ids: before BPE training the ids are MidiTok's base ids; after it, the BPE model's ids,
which keep the base ids for single tokens (HF puts the special tokens then the alphabet
first) and number merges after them. ``len(tok)`` is the vocabulary size.

Encoding goes through :mod:`mmmlib.tokens.encoding`, decoding through :mod:`mmmlib.tokens.decoding`,
vocabulary tables and prompts through :mod:`mmmlib.tokens.vocab`; token names live in
:mod:`mmmlib.tokens.special`. ``mmmlib tokenizer roundtrip`` is :func:`mmmlib.tokens.stats.main` (either dialect).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miditok import MMM, TokenizerConfig, TokSequence
from miditok.attribute_controls import BarAttributeControl
from symusic import Score
from symusic.core import ScoreTick
from tokenizers.models import BPE

from mmmlib.core.midi import read_score
from mmmlib.tokens.controls import TrackLoopCount, TrackLoopDuration, TrackNOMML
from mmmlib.tokens.decoding import DecodeResult, decode_tokens
from mmmlib.tokens.encoding import EncodedTrack, PreparedScore, encode_prepared, prepare_score
from mmmlib.tokens.fast_controls import fast_version
from mmmlib.tokens.microtiming import MICROTIMING_TYPE, check_resolution, microtiming_values
from mmmlib.tokens.special import (  # noqa: F401 (token names: generation imports them from here too)
    BAR,
    FILL_END,
    FILL_START,
    INFILL_BAR,
    INFILL_TOKENS,
    MERGEABLE_TYPES,
    TRACK_END,
    TRACK_START,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

POSITIONS_PER_BEAT = 12  # 16ths and 8th-note triplets on the grid, like MIDI-GPT
BEAT_RES = {(0, 4): POSITIONS_PER_BEAT, (4, 16): 4}
TIME_SIGNATURE_RANGE = {8: [3, 6, 9, 12], 4: [1, 2, 3, 4, 5, 6, 7]}
DEFAULT_MICROTIMING_RESOLUTION = 192
NUM_VELOCITIES = 32  # non-expressive; expressive mode keeps all 127


@dataclass(frozen=True)
class ControlSwitches:
    """Which attribute controls the tokenizer has (all on by default)."""

    track_note_density: bool = True
    track_polyphony: bool = True
    track_note_duration: bool = True
    track_repetition: bool = True
    bar_note_density: bool = True
    bar_polyphony: bool = True
    bar_pitch_class: bool = True
    bar_note_duration: bool = True
    nomml: bool = True
    loops: bool = True

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ControlSwitches:
        """Build from a mapping holding (some of) the field names, bare or with a ``use_``
        prefix (notebook params: ``use_nomml``, ``use_bar_pitch_class``...)."""
        found = {}
        for f in fields(cls):
            for key in (f.name, f"use_{f.name}"):
                if key in values:
                    found[f.name] = bool(values[key])
        return cls(**found)


def tokenizer_config(
    expressive: bool = True,
    microtiming_resolution: int = DEFAULT_MICROTIMING_RESOLUTION,
    controls: ControlSwitches | None = None,
) -> TokenizerConfig:
    """The MidiTok configuration of an :class:`MMMLoop` tokenizer.

    :param expressive: microtiming tokens and 127 velocities (else 32 velocity bins).
    :param microtiming_resolution: microtiming ticks per beat (multiple of 96, >= 192).
    :param controls: attribute controls to include (default: all).
    :return: the configuration; our own options live in ``additional_params["mmmlib"]``.
    """
    c = controls or ControlSwitches()
    return TokenizerConfig(
        pitch_range=(21, 109),
        beat_res=BEAT_RES,
        num_velocities=127 if expressive else NUM_VELOCITIES,
        special_tokens=["PAD", "BOS", "EOS"],
        use_velocities=True,
        use_tempos=True,
        use_time_signatures=True,
        use_programs=True,
        num_tempos=32,
        tempo_range=(40, 250),
        time_signature_range=TIME_SIGNATURE_RANGE,
        encode_ids_split="no",  # we split into words ourselves (see encode_token_ids)
        ac_polyphony_track=c.track_polyphony,
        ac_polyphony_bar=c.bar_polyphony,
        ac_pitch_class_bar=c.bar_pitch_class,
        ac_note_density_track=c.track_note_density,
        ac_note_density_bar=c.bar_note_density,
        ac_note_duration_bar=c.bar_note_duration,
        ac_note_duration_track=c.track_note_duration,
        ac_repetition_track=c.track_repetition,
        base_tokenizer="REMI",
        mmmlib={
            "expressive": expressive,
            "microtiming_resolution": microtiming_resolution,
            "nomml": c.nomml,
            "loops": c.loops,
        },
    )


class MMMLoop(MMM):
    """MidiTok's MMM with MIDI-GPT-Loop controls, microtiming and bar infill (see module doc)."""

    def __init__(self, tokenizer_config: TokenizerConfig = None, params: str | Path | None = None) -> None:
        self._id_table: list[tuple[str, ...]] | None = None
        self._chars: dict[str, str] | None = None
        super().__init__(tokenizer_config, params)
        if self.is_expressive:
            check_resolution(self.microtiming_resolution, self.time_division)

    # ------------------------------------------------------------------ MidiTok hooks
    def _tweak_config_before_creating_voc(self) -> None:
        for token in INFILL_TOKENS:
            if token not in self.config.special_tokens:
                self.config.special_tokens.append(token)
        options = self.config.additional_params.setdefault("mmmlib", {})
        for key, default in (("expressive", False), ("microtiming_resolution", DEFAULT_MICROTIMING_RESOLUTION),
                             ("nomml", True), ("loops", True)):
            options.setdefault(key, default)
        super()._tweak_config_before_creating_voc()

    def _create_base_vocabulary(self) -> list[str]:
        vocab = super()._create_base_vocabulary()
        if self.is_expressive:
            vocab += [f"{MICROTIMING_TYPE}_{d}" for d in microtiming_values(self.max_microtiming_offset)]
        return vocab

    def _initialize_attribute_controls(self) -> None:
        super()._initialize_attribute_controls()
        # same tokens and settings, vectorized (see mmmlib.tokens.fast_controls)
        self.attribute_controls = [fast_version(c) for c in self.attribute_controls]
        if self.options["nomml"]:
            self.add_attribute_control(TrackNOMML())
        if self.options["loops"]:
            self.add_attribute_control(TrackLoopCount())
            self.add_attribute_control(TrackLoopDuration())

    def encode_token_ids(self, seq: TokSequence | list[TokSequence]) -> None:
        """Encode ``seq.ids`` with the BPE model, word by word (see :meth:`tokens_to_ids`)."""
        for one in seq if isinstance(seq, list) else [seq]:
            one.ids = self.tokens_to_ids(one.tokens)
            one.are_ids_encoded = True

    def _tokens_to_score(self, tokens: TokSequence, _: None = None) -> Score:
        """MidiTok's decoding entry point: our tolerant decoder, errors dropped."""
        return self.decode_tokens(list(tokens.tokens)).score

    def encode(
        self,
        score: Score | Path,
        encode_ids: bool = True,
        no_preprocess_score: bool = False,
        attribute_controls_indexes: Mapping[int, Mapping[int, Sequence[int] | bool]] | None = None,
        concatenate_track_sequences: bool = True,
    ) -> TokSequence | list[TokSequence]:
        """MidiTok's ``encode``, going through :meth:`encode_score` (all controls, microtiming).

        With ``no_preprocess_score`` or explicit ``attribute_controls_indexes`` the caller
        manages preprocessing and controls itself, and MidiTok's MMM encoding is used.
        """
        if no_preprocess_score or attribute_controls_indexes is not None:
            return super().encode(score, encode_ids, no_preprocess_score, attribute_controls_indexes,
                                  concatenate_track_sequences)
        score = score if isinstance(score, ScoreTick) else read_score(score)
        seqs = [TokSequence(tokens=t.tokens()) for t in self.encode_score(score)]
        for seq in seqs:
            self.complete_sequence(seq)
            if encode_ids and self.is_trained:
                self.encode_token_ids(seq)
        if not concatenate_track_sequences:
            return seqs
        return sum(seqs[1:], seqs[0]) if seqs else TokSequence(tokens=[], ids=[])

    # ------------------------------------------------------------------ options
    @property
    def options(self) -> dict[str, Any]:
        """Our options (``expressive``, ``microtiming_resolution``, ``nomml``, ``loops``)."""
        return self.config.additional_params["mmmlib"]

    @property
    def bar_controls(self) -> list:
        """The bar-level attribute controls, in vocabulary order."""
        return [c for c in self.attribute_controls if isinstance(c, BarAttributeControl)]

    @property
    def track_controls(self) -> list:
        """The track-level attribute controls, in vocabulary order (the order of a track's header)."""
        return [c for c in self.attribute_controls if not isinstance(c, BarAttributeControl)]

    @property
    def is_expressive(self) -> bool:
        return bool(self.options["expressive"])

    @property
    def microtiming_resolution(self) -> int:
        """Microtiming ticks per beat: the ticks per quarter of decoded scores in expressive mode."""
        return int(self.options["microtiming_resolution"])

    @property
    def max_microtiming_offset(self) -> int:
        """Largest offset from the grid, in microtiming ticks: half a grid step."""
        return self.microtiming_resolution // (2 * self.config.max_num_pos_per_beat)

    @property
    def output_tpq(self) -> int:
        """Ticks per quarter of the scores :meth:`decode_ids` returns."""
        return self.microtiming_resolution if self.is_expressive else self.time_division

    # ------------------------------------------------------------------ encoding
    def prepare(self, score: Score, loops: Mapping[int, Any] | None = None) -> PreparedScore:
        """Quantize a raw score, keeping each note's raw onset and microtiming offset.

        :param score: tick-time score as read from the file (not modified).
        :param loops: per raw track index, its loops as ``(start_tick, end_tick,
            duration_beats)`` rows (e.g. from ``loops.parquet``); None: no loop controls.
        """
        return prepare_score(self, score, loops)

    def encode_prepared(self, prepared: PreparedScore, bar_controls: bool = True) -> list[EncodedTrack]:
        """Tokens of every track of a prepared score, with all its controls."""
        return encode_prepared(self, prepared, bar_controls)

    def encode_score(self, score: Score, loops: Mapping[int, Any] | None = None,
                     bar_controls: bool = True) -> list[EncodedTrack]:
        """:meth:`prepare` then :meth:`encode_prepared`: one :class:`EncodedTrack` per kept track."""
        return self.encode_prepared(self.prepare(score, loops), bar_controls)

    def quantized_tokens(self, score: Score, controls_indexes: Mapping[int, Any]) -> list[list[str]]:
        """MidiTok's per-track tokens of an already preprocessed score (one list per track)."""
        if len(score.tracks) == 0:
            return []
        return [list(seq.tokens) for seq in self._score_to_tokens(score, controls_indexes)]

    # ------------------------------------------------------------------ ids
    def _token_chars(self) -> dict[str, str]:
        if self._chars is None:
            self._chars = {tok: self._vocab_base_id_to_byte[i] for tok, i in self.vocab.items()}
        return self._chars

    def words(self, tokens: Sequence[str]) -> list[str]:
        """Split tokens into BPE words (strings of byte chars): runs of mergeable tokens,
        every other token alone."""
        chars, words, run = self._token_chars(), [], []
        for token in tokens:
            if token.split("_", 1)[0] in MERGEABLE_TYPES:
                run.append(chars[token])
                continue
            if run:
                words.append("".join(run))
                run = []
            words.append(chars[token])
        if run:
            words.append("".join(run))
        return words

    def tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of a token sequence (BPE-encoded when the tokenizer is trained)."""
        if not self.is_trained:
            return [self.vocab[t] for t in tokens]
        return self._model.encode(self.words(tokens), is_pretokenized=True).ids if tokens else []

    def tokens_to_ids_batch(self, sequences: Sequence[Sequence[str]]) -> list[list[int]]:
        """:meth:`tokens_to_ids` of many sequences at once (batched in the BPE model)."""
        if not self.is_trained:
            return [[self.vocab[t] for t in seq] for seq in sequences]
        encoded = self._model.encode_batch([self.words(s) for s in sequences], is_pretokenized=True)
        return [e.ids if len(s) else [] for e, s in zip(encoded, sequences, strict=False)]

    def id_tokens(self) -> list[tuple[str, ...]]:
        """Per id, the base tokens it stands for (one token, or several for a BPE merge)."""
        if self._id_table is None:
            if self.is_trained:
                table = self._vocab_learned_bytes_to_tokens
                self._id_table = [tuple(table[self._model.id_to_token(i)]) for i in range(len(self))]
            else:
                self._id_table = [(self[i],) for i in range(len(self))]
        return self._id_table

    def ids_to_tokens(self, ids: Iterable[int]) -> tuple[list[str], int]:
        """Base tokens of an id sequence and the number of ids outside the vocabulary."""
        table, tokens, unknown = self.id_tokens(), [], 0
        for i in ids:
            i = int(i)
            if 0 <= i < len(table):
                tokens.extend(table[i])
            else:
                unknown += 1
        return tokens, unknown

    def train_bpe(self, vocab_size: int, words: Iterable[str]) -> None:
        """Learn BPE merges with MidiTok's trainer (HF ``tokenizers``) from BPE words.

        :param vocab_size: target vocabulary size (no training when it is not above the
            base vocabulary size).
        :param words: words from :meth:`words` of token sequences (e.g. the train split's);
            single-token words are skipped: they never merge.
        """
        corpus = [w for w in words if len(w) > 1]
        batches = [corpus[i:i + 1000] for i in range(0, len(corpus), 1000)]  # sized, as MidiTok's trainer wants
        self.train(vocab_size, model=BPE(), iterator=batches)
        self._id_table = None

    # ------------------------------------------------------------------ decoding
    def decode_tokens(self, tokens: Sequence[str]) -> DecodeResult:
        """Score of a base token sequence; never raises (see :mod:`mmmlib.tokens.decoding`)."""
        return decode_tokens(self, tokens)

    def decode_ids(self, ids: Iterable[int]) -> DecodeResult:
        """Score of an id sequence (e.g. generated), with the number of errors met."""
        tokens, unknown = self.ids_to_tokens(ids)
        result = self.decode_tokens(tokens)
        result.num_errors += unknown
        return result


def build_tokenizer(
    expressive: bool = True,
    microtiming_resolution: int = DEFAULT_MICROTIMING_RESOLUTION,
    controls: ControlSwitches | None = None,
) -> MMMLoop:
    """A new (untrained) tokenizer; see :func:`tokenizer_config` for the arguments."""
    return MMMLoop(tokenizer_config(expressive, microtiming_resolution, controls))


def load_tokenizer(path: str | Path) -> MMMLoop:
    """Load a tokenizer saved with ``tok.save(path)`` (one JSON file, BPE model included).

    :param path: the JSON file (or a folder holding ``tokenizer.json``).
    :return: the tokenizer; ``len(tok)`` is the vocabulary size, ``tok.pad_token_id`` the padding id.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file at {path}")
    return MMMLoop(params=path)


def save_tokenizer(tok: MMMLoop, path: str | Path) -> Path:
    """Write the tokenizer to ``path`` atomically: a uniquely named temporary file beside it,
    then ``os.replace``, so that a reader never sees half a file.

    :param tok: the tokenizer.
    :param path: the JSON file to write (its folder is created).
    :return: ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        tok.save(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path

