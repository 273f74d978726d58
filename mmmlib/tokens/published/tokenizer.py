"""``PublishedTokenizer``: encode a score into the published model's ids, decode ids back.

Encoding follows the reference's REAPER path (see :mod:`~mmmlib.tokens.published.preprocess`): the score is
preprocessed at 1920 ticks per quarter, each kept track becomes ``Track_Start Program_p
[controls] <bars> Track_End`` (:mod:`~mmmlib.tokens.published.encoder`, :mod:`~mmmlib.tokens.published.controls`), and the tracks' bar
words go through the BPE model (:mod:`~mmmlib.tokens.published.bpe`). Odd input never raises: unsupported time
signatures, programs and pitches are dropped, and counted in :class:`.Report`.

Loops are given as ``track_idx``, ``start_tick``, ``end_tick`` (dicts or
:class:`mmmlib.data.loops.Loop`) in the ticks of the source file (``tpq``). The reference
reads ``track_idx`` as an index into the *kept* tracks, which shifts loops to the wrong
track when preprocessing drops a track before theirs; ``loop_tracks="reference"`` (the
default) does the same, ``loop_tracks="source"`` maps source indices to kept tracks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from miditok.utils import get_bars_ticks
from symusic import Score

from mmmlib.tokens.published.bpe import BPE
from mmmlib.tokens.published.controls import track_controls
from mmmlib.tokens.published.decoder import DecodedLoop, decode_segments, reference_segments, split_tracks
from mmmlib.tokens.published.encoder import BarGrid, Tables, track_stream
from mmmlib.tokens.published.preprocess import Prepared, preprocess_score
from mmmlib.tokens.published.report import Report
from mmmlib.tokens.published.vocab import TPQ, PublishedVocab, load_vocab

Controls = Literal["none", "track"]
LoopTracks = Literal["reference", "source"]


@dataclass
class Encoding:
    """Everything one encoding produced."""

    ids: list[int]  # BPE ids, what the model reads
    base_ids: list[int]  # base token ids, before BPE
    tokens: list[str]  # base tokens
    kept_tracks: list[int]  # source index of each encoded track
    report: Report = field(default_factory=Report)
    bar_ticks: np.ndarray | None = None  # start tick of each bar, at 1920 ticks per quarter


@dataclass
class Decoded:
    """Everything one decoding produced."""

    score: Score  # 1920 ticks per quarter
    loops: list[DecodedLoop]
    tokens: list[str]
    report: Report = field(default_factory=Report)


def _is_header(token: str) -> bool:
    """A track header token (``Program`` or a track control): a single id in prompts."""
    kind = token.split("_", 1)[0]
    return kind == "Program" or (kind.startswith("AC") and not kind.startswith("ACBar"))


def _loop_fields(loop: Any) -> tuple[int, int, int]:
    """``(track_idx, start_tick, end_tick)`` of a loop given as a dict or an object."""
    if isinstance(loop, dict):
        return int(loop["track_idx"]), int(loop["start_tick"]), int(loop["end_tick"])
    return int(loop.track_idx), int(loop.start_tick), int(loop.end_tick)


def _detect_loops(score: Score, report: Report) -> list[Any]:
    """The GigaMIDI loops of a tick-time score; none (counted) if the detector fails."""
    from mmmlib.data.loops import detect_loops

    try:
        return detect_loops(score)
    except Exception:  # the detector's input checks are not ours to enforce here
        report.add("loop_detection_failed")
        return []


class PublishedTokenizer:
    """The published MIDI-GPT-Loop tokenizer (MMM + REAPER, microtiming, loops, BPE)."""

    def __init__(self, vocab: PublishedVocab) -> None:
        """Build lookup tables and the BPE codec of a loaded vocabulary.

        :param vocab: see :func:`mmmlib.tokens.published.vocab.load_vocab`.
        """
        self.vocab = vocab
        self.tables = Tables.build(vocab)
        self.bpe = BPE(vocab)
        self._id_tokens: list[tuple[str, ...]] | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> PublishedTokenizer:
        """Load ``MMM_epl_mistral_tokenizer_with_acs.json`` (or a file like it).

        :param path: path of the JSON file.
        :return: the tokenizer.
        """
        return cls(load_vocab(path))

    def __len__(self) -> int:
        """Number of ids of the BPE model."""
        return self.vocab.size

    @property
    def config(self) -> dict:
        """The ``config`` entry of the JSON file."""
        return self.vocab.config

    @property
    def pad_token_id(self) -> int:
        """Id of ``PAD_None`` (the padding of training batches and of batched generation)."""
        return self.vocab.token_to_id["PAD_None"]

    def id_tokens(self) -> list[tuple[str, ...]]:
        """Per BPE id, the base tokens it stands for (none for the id of ``▁`` alone).

        :return: one tuple per id.
        """
        if self._id_tokens is None:
            names = self.vocab.id_to_token
            self._id_tokens = [tuple(names[i] for i in piece) for piece in self.bpe.pieces]
        return self._id_tokens

    def tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """BPE ids of base tokens laid out as MMM's training windows are.

        Special tokens (``Track_Start``, ``Infill_Bar``, ``FillBar_Start``...) and the track
        header (``Program``, track controls) keep their single ids; every bar, from its
        ``Bar_None`` to the next one, is one BPE word (``▁``-prefixed, merges inside it), as
        the encoder's bar words are.

        :param tokens: base tokens.
        :return: the ids.
        :raises KeyError: for a token outside the base vocabulary.
        """
        pieces: list[int | list[str]] = []  # a single id, or a word of base tokens
        word: list[str] = []
        index = self.vocab.token_to_id
        singles = set(self.config["special_tokens"])

        def flush() -> None:
            if word:
                pieces.append(list(word))
                word.clear()

        for token in tokens:
            if token == "Bar_None" or token in singles:
                flush()
            if token in singles or (not word and _is_header(token)):
                pieces.append(index[token])
            else:
                word.append(token)
        flush()
        encoded = iter(self.encode_words([p for p in pieces if isinstance(p, list)]))
        ids: list[int] = []
        for piece in pieces:
            if isinstance(piece, list):
                ids.extend(next(encoded))
            else:
                ids.append(piece)
        return ids

    def encode_words(self, words: Sequence[Sequence[str]]) -> list[list[int]]:
        """BPE ids of words of base tokens, each its own ``▁``-prefixed word, in one batched call.

        :param words: words (a bar: ``Bar_None`` and the tokens up to the next bar), no special token.
        :return: the ids of each word.
        """
        index, chars = self.vocab.token_to_id, self.vocab.id_to_byte
        texts = [["".join(chars[index[t]] for t in word)] for word in words]
        return [e.ids for e in self.vocab.hf.encode_batch(texts, is_pretokenized=True, add_special_tokens=False)]

    def preprocess(self, score: Score, report: Report | None = None) -> Prepared:
        """The reference's REAPER preprocessing (:func:`.preprocess.preprocess_score`).

        :param score: tick-time score; not modified.
        :param report: problems are counted here.
        :return: the preprocessed score and what the encoder needs.
        """
        return preprocess_score(score, self.vocab.grids, report)

    def _loops_by_track(
        self, loops: Iterable[Any] | None, kept: Sequence[int], mode: LoopTracks, report: Report
    ) -> list[list[tuple[int, int]]] | None:
        """Each kept track's loops in source ticks, or None when no loops were given."""
        if loops is None:
            return None
        out: list[list[tuple[int, int]]] = [[] for _ in kept]
        where = {src: i for i, src in enumerate(kept)} if mode == "source" else None
        for loop in loops:
            track_idx, start, end = _loop_fields(loop)
            if start < 0 or end < 0:
                report.add("loop_negative_skipped")
                continue
            idx = where.get(track_idx, -1) if where is not None else track_idx
            if 0 <= idx < len(out):
                out[idx].append((start, end))
            else:
                report.add("loop_track_missing")
        return out

    def encode_full(
        self,
        score: Score | str | Path,
        controls: Controls = "none",
        loops: Iterable[Any] | None = None,
        tpq: int | None = None,
        loop_tracks: LoopTracks = "reference",
    ) -> Encoding:
        """Encode a score; never raises on odd content (see the module doc).

        :param score: a tick-time ``symusic.Score`` or the path of a MIDI file.
        :param controls: ``"none"``, or ``"track"`` for every track-level control of the
            tokenizer (polyphony, density, durations, repetition, NOMML, loops) on every track.
        :param loops: loops to mark with ``Loop_Start``/``Loop_End`` (and count in the loop
            controls). None with ``controls="track"`` detects them with
            :func:`mmmlib.data.loops.detect_loops`; None otherwise marks none.
        :param tpq: ticks per quarter of the loops' ticks (default: the score's).
        :param loop_tracks: how ``track_idx`` is read (see the module doc).
        :return: ids, base ids and tokens, kept tracks and the problem counts.
        """
        if isinstance(score, (str, Path)):
            score = Score(str(score))
        if type(score).__name__ != "ScoreTick":  # a score in seconds or quarters
            score = score.to("tick")
        report = Report()
        if loops is None and controls == "track":
            loops = _detect_loops(score, report)
        source_tpq = int(tpq or score.ticks_per_quarter)
        prepared = self.preprocess(score, report)
        tracks_loops = self._loops_by_track(loops, prepared.kept, loop_tracks, report)
        out = prepared.score
        bars = get_bars_ticks(out, only_notes_onsets=True)
        scale = TPQ / source_tpq
        loop_ticks = [
            [(round(s * scale), round(e * scale)) for s, e in spans]
            for spans in (tracks_loops or [[] for _ in out.tracks])
        ]
        until = [int(prepared.tempo_times.max()), prepared.time_signatures[-1][0]]
        until += [int(t.notes.numpy()["time"].max()) for t in out.tracks]
        until += [max(max(span) for span in spans) for spans in loop_ticks if spans]
        grid = BarGrid.build(prepared.time_signatures, max(until), self.tables)
        special = self.tables.special
        words, base_ids = [], []
        # a score without tracks still gives one sequence (its tempos and time signatures)
        track_indices: list[int | None] = list(range(len(out.tracks))) or [None]
        for ti in track_indices:
            head = [special["Track_Start"]]
            if ti is not None:
                track = out.tracks[ti]
                head.append(self.tables.program[-1 if track.is_drum else track.program])
                if controls == "track":
                    spans = tracks_loops[ti] if tracks_loops is not None else None
                    head += self._control_ids(
                        track_controls(track, bars, self.config, spans, source_tpq), report
                    )
            ids, ticks = track_stream(
                prepared, ti, loop_ticks[ti] if ti is not None else [], grid, self.tables, self.vocab, report
            )
            all_ids = np.concatenate((head, ids, [special["Track_End"]])).astype(np.int64)
            all_ticks = np.concatenate((np.zeros(len(head), dtype=np.int64), ticks, [ticks[-1] + 1]))
            words.append(self.bpe.words(all_ids, all_ticks, bars))
            base_ids += all_ids.tolist()
        tokens = [self.vocab.id_to_token[i] for i in base_ids]
        return Encoding(self.bpe.encode(words), base_ids, tokens, prepared.kept, report, grid.ticks)

    def _control_ids(self, tokens: Sequence[str], report: Report) -> list[int]:
        """Ids of control tokens; a value the vocabulary lacks is dropped and counted."""
        ids = []
        for tok in tokens:
            if tok in self.vocab.token_to_id:
                ids.append(self.vocab.token_to_id[tok])
            else:
                report.add("control_not_in_vocab")
        return ids

    def encode(
        self,
        score: Score | str | Path,
        controls: Controls = "none",
        loops: Iterable[Any] | None = None,
        tpq: int | None = None,
        loop_tracks: LoopTracks = "reference",
    ) -> list[int]:
        """BPE ids of a score (see :meth:`encode_full` for the parameters).

        :return: the ids.
        """
        return self.encode_full(score, controls, loops, tpq, loop_tracks).ids

    def ids_to_tokens(self, ids: Sequence[int], report: Report | None = None) -> list[str]:
        """Base tokens of BPE ids (unknown ids are dropped and counted).

        :param ids: BPE ids.
        :param report: problems are counted here.
        :return: base tokens.
        """
        base, bad = self.bpe.decode(ids)
        if report is not None:
            report.add("id_unknown", len(bad))
        return [self.vocab.id_to_token[i] for i in base.tolist() if i >= 0]

    def decode_tokens(
        self, tokens: Sequence[str], report: Report | None = None
    ) -> tuple[Score, list[DecodedLoop]]:
        """Decode base tokens (see :mod:`.decoder`).

        :param tokens: base tokens.
        :param report: problems are counted here.
        :return: ``(score, loops)``.
        """
        default = float(self.vocab.grids.tempos[self.vocab.grids.default_tempo_idx])
        return decode_segments(split_tracks(tokens), default, report)

    def decode_full(self, ids: Sequence[int]) -> Decoded:
        """Decode BPE ids; never raises.

        :param ids: BPE ids (a generated sequence, a prompt, or :meth:`encode`'s output).
        :return: score (1920 ticks per quarter), loops, base tokens and problem counts.
        """
        report = Report()
        tokens = self.ids_to_tokens(ids, report)
        score, loops = self.decode_tokens(tokens, report)
        return Decoded(score, loops, tokens, report)

    def decode(self, ids: Sequence[int]) -> tuple[Score, list[DecodedLoop]]:
        """Decode BPE ids into a score and the loops they mark.

        :param ids: BPE ids.
        :return: ``(score, loops)``: the score at 1920 ticks per quarter, and each loop's
            ``start``, ``end`` (ticks) and ``track_idx`` (index of its track in the sequence).
        """
        decoded = self.decode_full(ids)
        return decoded.score, decoded.loops

    def decode_like_reference(
        self, ids: Sequence[int], tokens: Sequence[str]
    ) -> tuple[Score, list[DecodedLoop]]:
        """Decode as the reference decoded the golden files (misaligned tracks; tests only).

        :param ids: BPE ids of an encoding.
        :param tokens: its base tokens.
        :return: ``(score, loops)``, equal to the golden ``decoded_*`` entries.
        """
        default = float(self.vocab.grids.tempos[self.vocab.grids.default_tempo_idx])
        segments = reference_segments(ids, tokens, self.tables.special["Track_Start"])
        return decode_segments(segments, default, clamp_negative=False)


def load_published(path: str | Path) -> PublishedTokenizer:
    """Load the published tokenizer JSON file.

    :param path: path of ``MMM_epl_mistral_tokenizer_with_acs.json``.
    :return: the tokenizer.
    """
    return PublishedTokenizer.from_file(path)
