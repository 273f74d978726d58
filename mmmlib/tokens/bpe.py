"""The BPE step: learn merges on the train split once, then freeze ``tokenizer.json``.

BPE is a step of its own, run before any sample is built, because the sample step may run
as many shards at once (a SLURM array): they must all read one finished tokenizer, never
one that a sibling is still training or rewriting. So:

- :func:`train_bpe` encodes a seeded sample of at most ``max_files`` train files (in a
  worker pool that loads a *private* temporary copy of the untrained tokenizer: nothing is
  written to ``tokenizer_path`` before training ends), learns the merges, and writes
  ``tokenizer_path`` exactly once, atomically (temporary file, then ``os.replace``);
- :func:`load_frozen_tokenizer` is how the sample step reads it: a clear error when the
  BPE step has not run, or when its tokenizer was built with other settings;
- :func:`tokenizer_sha256` identifies a tokenizer file: every shard records the one it
  used, and merging refuses shards built with different ones.

Deterministic (seeded file sample, MidiTok's trainer on words in file order): the same
inputs give the same ``tokenizer.json``, byte for byte.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmmlib.core.errors import ConfigError, DataError
from mmmlib.core.midi import read_score
from mmmlib.tokens.corpus import ordered_map
from mmmlib.tokens.tokenizer import load_tokenizer, save_tokenizer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mmmlib.tokens.corpus import FileTask
    from mmmlib.tokens.tokenizer import MMMLoop

_WORKER: dict = {}


def bpe_files(tasks: Sequence[FileTask], max_files: int, seed: int) -> list[FileTask]:
    """The train files BPE learns from: all of them, or a seeded sample of ``max_files`` kept in order."""
    train = [t for t in tasks if t.split == "train"]
    if len(train) > max_files:
        keep = np.random.default_rng(seed).choice(len(train), size=max_files, replace=False)
        train = [train[i] for i in sorted(keep)]
    return train


def _init_worker(tokenizer_path: str) -> None:
    _WORKER["tok"] = load_tokenizer(tokenizer_path)


def bpe_words(task: FileTask) -> list[str]:
    """Worker: the BPE words (two tokens or more) of one file's tracks; none for an unreadable file."""
    tok = _WORKER["tok"]
    try:
        tracks = tok.encode_score(read_score(task.path, task.row), bar_controls=False)
    except Exception:  # one bad file must not stop a corpus; the sample step reports it
        return []
    return [w for t in tracks for w in tok.words(t.tokens()) if len(w) > 1]


def train_bpe(tok: MMMLoop, tokenizer_path: str | Path, tasks: Sequence[FileTask], vocab_size: int,
              max_files: int, seed: int, workers: int = 1) -> MMMLoop:
    """Train BPE on (a seeded sample of at most ``max_files``) train files, freeze it, return it.

    :param tok: a new, untrained tokenizer (see :func:`~mmmlib.tokens.tokenizer.build_tokenizer`).
    :param tokenizer_path: the ``tokenizer.json`` to write, once, when training is over.
    :param tasks: the corpus (:func:`~mmmlib.tokens.corpus.tasks_of`); only train files are used.
    :param vocab_size: target vocabulary size; not above the base vocabulary: no BPE.
    :param max_files: most train files to learn from.
    :param seed: seed of the file sample.
    :param workers: processes that encode the files.
    :return: ``tok``, trained.
    :raises ConfigError: for a negative ``vocab_size`` or a ``max_files`` below 1.
    """
    if vocab_size < 0:
        raise ConfigError("vocab_size", f"must be >= 0 (0: no BPE), got {vocab_size}")
    if max_files < 1:
        raise ConfigError("max_files", f"must be >= 1, got {max_files}")
    train = bpe_files(tasks, max_files, seed)
    if vocab_size > len(tok) and train:
        # The workers load a private copy: the shared path only ever holds a finished tokenizer.
        with tempfile.TemporaryDirectory(prefix="mmm-bpe-") as private:
            copy = save_tokenizer(tok, Path(private) / "tokenizer.json")
            words: list[str] = []
            for file_words in ordered_map(bpe_words, train, _init_worker, (str(copy),), workers, "bpe"):
                words += file_words
        tok.train_bpe(vocab_size, words)
    save_tokenizer(tok, tokenizer_path)
    return tok


def tokenizer_sha256(path: str | Path) -> str:
    """Hex sha256 of a tokenizer file: what identifies the tokenizer a dataset was built with."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def settings_of(tok: MMMLoop) -> dict[str, object]:
    """What a frozen tokenizer must share with the settings of a run that reads it."""
    return {
        "expressive": tok.is_expressive,
        "microtiming_resolution": tok.microtiming_resolution if tok.is_expressive else None,
        "controls": sorted({t.split("_", 1)[0] for c in tok.attribute_controls for t in c.tokens}),
    }


def load_frozen_tokenizer(path: str | Path, like: MMMLoop | None = None, vocab_size: int | None = None) -> MMMLoop:
    """The tokenizer the BPE step froze, checked against the settings of the run that reads it.

    :param path: the ``tokenizer.json`` :func:`train_bpe` wrote.
    :param like: an untrained tokenizer built with the reader's settings (expressive mode,
        microtiming resolution, controls); None: no check.
    :param vocab_size: the reader's target vocabulary size; None: no check.
    :return: the tokenizer.
    :raises DataError: when there is no tokenizer at ``path`` (run the BPE step first).
    :raises ConfigError: naming the first setting that differs from the frozen tokenizer's.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no frozen tokenizer at {path}: train it first with the BPE step")
    frozen = load_tokenizer(path)
    if like is not None:
        theirs, ours = settings_of(frozen), settings_of(like)
        for name, value in ours.items():
            if theirs[name] != value:
                raise ConfigError(name, f"is {value!r} but the frozen tokenizer {path} was built with "
                                        f"{theirs[name]!r}: use its settings, or train BPE again")
    if vocab_size is not None and like is not None:
        expect_bpe = vocab_size > len(like)
        if expect_bpe != frozen.is_trained or (expect_bpe and len(frozen) > vocab_size):
            raise ConfigError("vocab_size", f"is {vocab_size} but the frozen tokenizer {path} has {len(frozen)} ids "
                                            f"({'with' if frozen.is_trained else 'without'} BPE): use its "
                                            "vocabulary size, or train BPE again")
    return frozen
