"""The BPE step in the published dialect, and what the notebook shows of its tokenizer.

Same contract as :mod:`mmmlib.tokens.bpe` (BPE once, before any sample; ``tokenizer.json``
written once, atomically; the sample step only reads it), for a tokenizer that speaks the
published MIDI-GPT-Loop language (:mod:`mmmlib.tokens.published.build`):

- :func:`train_published_bpe` encodes a seeded sample of train files as the sample step
  will (every track control, the loops 01 found), cuts each track into the bar words that
  :meth:`~mmmlib.tokens.published.PublishedTokenizer.tokens_to_ids` hands to BPE, learns
  merges on them and writes the file. With ``base_tokenizer`` it instead freezes a copy of
  an existing file of the dialect (the published one, to fine-tune its model: ids must
  stay the model's);
- :func:`load_frozen_published` is how the sample step reads it back;
- :func:`roundtrip_published` measures encode -> ids -> decode per track.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mmmlib.core.errors import ConfigError, DataError
from mmmlib.core.files import copy_atomic
from mmmlib.core.midi import read_score
from mmmlib.tokens.bpe import bpe_files
from mmmlib.tokens.corpus import ordered_map
from mmmlib.tokens.decoding import roundtrip_row
from mmmlib.tokens.loading import dialect_of
from mmmlib.tokens.published import PublishedTokenizer, load_published
from mmmlib.tokens.published.build import (
    SPECIAL_TOKENS,
    base_vocabulary,
    byte_of,
    dialect_config,
    tokenizer_file,
    train_bpe_model,
    write_tokenizer_file,
)
from mmmlib.tokens.published_samples import encode_tracks, loops_of_task

if TYPE_CHECKING:
    from collections.abc import Sequence

    from symusic import Score

    from mmmlib.tokens.corpus import FileTask

_WORKER: dict = {}


def _init_worker(tokenizer_path: str) -> None:
    _WORKER["tok"] = load_published(tokenizer_path)


def published_words(task: FileTask) -> list[str]:
    """Worker: the bar words (two base tokens or more) of one file; none for an unreadable file."""
    tok: PublishedTokenizer = _WORKER["tok"]
    index = tok.vocab.token_to_id
    try:
        tracks, _ = encode_tracks(tok, read_score(task.path, task.row), loops_of_task(task.loops))
    except Exception:  # one bad file must not stop a corpus; the sample step reports it
        return []
    return ["".join(byte_of(index[t]) for t in bar) for track in tracks for bar in track.bars if len(bar) > 1]


def train_published_bpe(tokenizer_path: str | Path, tasks: Sequence[FileTask], vocab_size: int, max_files: int,
                        seed: int, workers: int = 1, base_tokenizer: str | Path = "") -> PublishedTokenizer:
    """Make and freeze a published-dialect ``tokenizer.json`` (see the module doc).

    :param tokenizer_path: the file to write, once, when training is over.
    :param tasks: the corpus; only train files are used.
    :param vocab_size: ids after BPE; 0 (or not above the base vocabulary plus ``▁``): no merge.
    :param max_files: most train files to learn from (a seeded sample).
    :param seed: seed of the file sample.
    :param workers: processes that encode the files.
    :param base_tokenizer: an existing file of the dialect to freeze as it is ("" to train).
    :return: the frozen tokenizer.
    :raises ConfigError: for a negative ``vocab_size``, ``max_files`` below 1, or a
        ``base_tokenizer`` that is not a published-dialect file.
    """
    if vocab_size < 0:
        raise ConfigError("vocab_size", f"must be >= 0 (0: no BPE), got {vocab_size}")
    if max_files < 1:
        raise ConfigError("max_files", f"must be >= 1, got {max_files}")
    tokenizer_path = Path(tokenizer_path)
    if base_tokenizer:
        source = Path(base_tokenizer)
        if not source.is_file() or dialect_of(source) != "published":
            raise ConfigError("base_tokenizer", f"must be a tokenizer file of the published dialect, got {source}")
        return load_published(copy_atomic(source, tokenizer_path))
    config = dialect_config()
    base_size = len(base_vocabulary(config))
    untrained = tokenizer_file(config, train_bpe_model([], 0, base_size, SPECIAL_TOKENS))
    train = bpe_files(tasks, max_files, seed)
    model = untrained
    if vocab_size > base_size + 1 and train:
        with tempfile.TemporaryDirectory(prefix="mmm-bpe-") as private:
            copy = write_tokenizer_file(Path(private) / "tokenizer.json", untrained)
            words: list[str] = []
            for file_words in ordered_map(published_words, train, _init_worker, (str(copy),), workers, "bpe"):
                words += file_words
        model = tokenizer_file(config, train_bpe_model(words, vocab_size, base_size, SPECIAL_TOKENS))
    write_tokenizer_file(tokenizer_path, model)
    return load_published(tokenizer_path)


def load_frozen_published(path: str | Path, vocab_size: int | None = None,
                          base_tokenizer: str | Path = "") -> PublishedTokenizer:
    """The published-dialect tokenizer the BPE step froze, checked against the reader's settings.

    :param path: the frozen ``tokenizer.json``.
    :param vocab_size: the reader's vocabulary size (checked unless a ``base_tokenizer`` is used).
    :param base_tokenizer: the reader's ``base_tokenizer`` ("" for none).
    :raises DataError: when there is no file at ``path``.
    :raises ConfigError: when the file is of the other dialect or has another vocabulary size.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no frozen tokenizer at {path}: train it first with the BPE step")
    if dialect_of(path) != "published":
        raise ConfigError("dialect", f"is 'published' but the frozen tokenizer {path} is in mmmlib's dialect: "
                                     "use dialect='mmmlib', or train BPE again")
    tok = load_published(path)
    base_size = len(base_vocabulary(dialect_config())) + 1
    if not base_tokenizer and vocab_size is not None and len(tok) != max(vocab_size, base_size):
        raise ConfigError("vocab_size", f"is {vocab_size} but the frozen tokenizer {path} has {len(tok)} ids: "
                                        "use its vocabulary size, or train BPE again")
    return tok


def roundtrip_published(tok: PublishedTokenizer, score: Score, loops: dict | None = None) -> list[dict]:
    """Encode a score (no controls, its loops marked), decode the ids, compare each track.

    :param tok: the tokenizer.
    :param score: the raw tick-time score.
    :param loops: the task's loops (``{track: rows}``), or None.
    :return: the rows of :func:`mmmlib.tokens.decoding.roundtrip_file`.
    """
    encoding = tok.encode_full(score, controls="none", loops=loops_of_task(loops or {}), loop_tracks="source")
    decoded = tok.decode_full(encoding.ids)
    raw_tpq, out_tpq = score.ticks_per_quarter, decoded.score.ticks_per_quarter
    errors = sum(decoded.report.values())
    rows = []
    for k, source in enumerate(encoding.kept_tracks):
        out = decoded.score.tracks[k] if k < len(decoded.score.tracks) else None
        # decoding problems are counted once per file
        rows.append(roundtrip_row(source, score.tracks[source], raw_tpq, out, out_tpq, errors if k == 0 else 0))
    return rows
