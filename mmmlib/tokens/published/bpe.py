"""BPE over bar words: base ids -> BPE ids, and back.

Each base token is one character (the JSON's ``_vocab_base_byte_to_token``). The
reference cuts every track's characters into *words* at the score's bar lines (MidiTok's
``get_bars_ticks(score, only_notes_onsets=True)``): a word starts at the first token whose
event tick reaches the next bar line, so the track header (``Track_Start``, ``Program``,
controls) shares the first bar's word, and bar lines past the track's last token make no
word. The words go through the 🤗 ``tokenizers`` model of the JSON as pre-tokenized input:
its special tokens (``Track_Start``, ``Track_End``...) are matched first, then the
Metaspace pre-tokenizer prefixes each remaining piece with ``▁`` and BPE merges within it.
That is why a track starts with the ids of ``Track_Start``, ``▁`` (alone: the published
merges never join ``▁`` and a ``Program``), and ``Program_x``.

Decoding maps each BPE id to its characters (without the ``▁``) and each character to its
base token; the id of ``▁`` alone decodes to no base token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmmlib.tokens.published.vocab import METASPACE, PublishedVocab


class BPE:
    """Encoder and decoder of the published BPE model."""

    def __init__(self, vocab: PublishedVocab) -> None:
        """Precompute the character of each base id and the base ids of each BPE id.

        :param vocab: the published vocabulary.
        """
        self.vocab = vocab
        self.codepoints = np.array([ord(b) for b in vocab.id_to_byte], dtype=np.uint32)
        pieces: list[np.ndarray] = []
        for piece in (vocab.hf.id_to_token(i) for i in range(vocab.size)):
            piece = piece[len(METASPACE) :] if piece and piece.startswith(METASPACE) else (piece or "")
            pieces.append(np.array([vocab.byte_to_id.get(ch, -1) for ch in piece], dtype=np.int64))
        self.pieces = pieces
        self.lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        self.flat = np.concatenate(pieces)
        self.starts = np.concatenate(([0], np.cumsum(self.lengths)[:-1]))

    def words(self, ids: np.ndarray, ticks: np.ndarray, bar_ticks: Sequence[int]) -> list[str]:
        """Cut one track's base ids into bar words, as the reference does.

        :param ids: base ids of the whole track (``Track_Start`` ... ``Track_End``).
        :param ticks: event tick of each id, non-decreasing (header ids at 0).
        :param bar_ticks: the score's bar ticks.
        :return: the words, as strings of base characters.
        """
        text = self.codepoints[ids].tobytes().decode("utf-32-le")
        cuts = np.searchsorted(ticks, np.asarray(bar_ticks[1:], dtype=np.int64), side="left")
        cuts = cuts[cuts < len(ids)]  # the reference stops at the first bar past the last token
        bounds = [0, *cuts.tolist(), len(ids)]
        return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def encode(self, tracks_words: Sequence[list[str]]) -> list[int]:
        """BPE ids of the tracks' words, the tracks concatenated.

        :param tracks_words: one list of words per track.
        :return: the ids.
        """
        out: list[int] = []
        for encoding in self.vocab.hf.encode_batch(
            list(tracks_words), is_pretokenized=True, add_special_tokens=False
        ):
            out += encoding.ids
        return out

    def decode(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Base ids of BPE ids; unknown ids (out of range) decode to nothing and are counted.

        :param ids: BPE ids.
        :return: ``(base_ids, unknown)``: the base ids, and the positions of unknown ids.
        """
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        bad = (arr < 0) | (arr >= len(self.pieces))
        good = arr[~bad]
        lengths = self.lengths[good]
        if lengths.sum() == 0:
            return np.zeros(0, dtype=np.int64), np.flatnonzero(bad)
        # gather the pieces: a run of consecutive indices per id
        run_starts = np.repeat(self.starts[good] - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        base = self.flat[run_starts + np.arange(lengths.sum())]
        return base, np.flatnonzero(bad)
