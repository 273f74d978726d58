"""The BPE step of 02 in either dialect: make (or read back) the frozen ``tokenizer.json``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmmlib.tokens.bpe import load_frozen_tokenizer, train_bpe
from mmmlib.tokens.published.build import base_vocabulary, dialect_config
from mmmlib.tokens.published_build import load_frozen_published, train_published_bpe
from mmmlib.tokens.tokenizer import build_tokenizer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mmmlib.tokens.corpus import FileTask
    from mmmlib.tokens.params import TokenizerParams
    from mmmlib.tokens.published import PublishedTokenizer
    from mmmlib.tokens.tokenizer import MMMLoop


def tokenizer_step(p: TokenizerParams, tasks: Sequence[FileTask]) -> tuple[MMMLoop | PublishedTokenizer, int]:
    """Steps ``all``/``bpe``: train BPE and freeze ``p.tokenizer_path``; step ``samples``: read it back.

    :param p: the notebook's parameters (``dialect``, ``vocab_size``, ``base_tokenizer``...).
    :param tasks: the whole corpus (BPE learns on a sample of its train files).
    :return: the frozen tokenizer and the size of its base vocabulary.
    :raises mmmlib.core.errors.ConfigError: for settings the frozen tokenizer contradicts.
    """
    if p.dialect == "published":
        base_size = len(base_vocabulary(dialect_config()))
        if p.step == "samples":
            return load_frozen_published(p.tokenizer_path, p.vocab_size, p.base_tokenizer), base_size
        return train_published_bpe(p.tokenizer_path, tasks, p.vocab_size, p.bpe_max_files, p.seed, p.workers,
                                   p.base_tokenizer), base_size
    tok = build_tokenizer(p.expressive, p.microtiming_resolution, p.control_switches())
    base_size = len(tok)
    if p.step == "samples":
        return load_frozen_tokenizer(p.tokenizer_path, like=tok, vocab_size=p.vocab_size), base_size
    return train_bpe(tok, p.tokenizer_path, tasks, p.vocab_size, p.bpe_max_files, p.seed, p.workers), base_size
