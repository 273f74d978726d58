"""The tokens stage (notebook 02): the MMM tokenizer, its BPE, and the training samples.

Two steps, in this order:

1. **BPE** (:mod:`~mmmlib.tokens.steps`): build a tokenizer, learn BPE merges on the train
   split, and freeze ``tokenizer.json`` (written once, atomically). The default dialect is the
   published MIDI-GPT-Loop one (:mod:`~mmmlib.tokens.published_build`: its base vocabulary,
   new merges; or the published file itself, to fine-tune its model); ``dialect="mmmlib"``
   builds mmmlib's :class:`MMMLoop` (:mod:`~mmmlib.tokens.bpe`);
2. **samples** (:mod:`~mmmlib.tokens.dataset`, with :mod:`~mmmlib.tokens.published_samples`
   or :mod:`~mmmlib.tokens.samples` by dialect): cut, mask and tokenise every file into
   ``tokens/{train,valid,test}`` with a private copy of the frozen tokenizer, in one process
   or as shards that :func:`merge_shards` joins (refusing shards of different tokenizers).

Modules: ``tokenizer`` (:class:`MMMLoop`, one job each below it: ``special`` token names,
``controls`` / ``fast_controls``, ``microtiming``, ``encoding``, ``decoding``, ``vocab``
grammar rules and prompts), ``corpus`` (files as tasks), ``bpe``, ``samples``, ``dataset``,
``stats`` and ``figures`` (what the notebook shows), ``params`` (:class:`TokenizerParams`),
``published`` (the published MIDI-GPT-Loop tokenizer) and ``loading`` (a tokenizer file of either
dialect, recognised by its content: :func:`load_any_tokenizer`).
Submodules import each other directly, never through this package.
"""

from __future__ import annotations

from mmmlib.tokens.bpe import load_frozen_tokenizer, tokenizer_sha256, train_bpe
from mmmlib.tokens.corpus import SPLITS, FileTask, tasks_of
from mmmlib.tokens.dataset import build_splits, load_tokens, merge_shards, tokens_dir
from mmmlib.tokens.decoding import DecodeResult, roundtrip_file
from mmmlib.tokens.figures import piano_roll_pair, sequence_length_histogram
from mmmlib.tokens.loading import language_fingerprint, load_any_tokenizer
from mmmlib.tokens.params import TokenizerParams
from mmmlib.tokens.samples import SampleOptions, augmentations, file_samples
from mmmlib.tokens.special import BAR, FILL_END, FILL_START, INFILL_BAR, TRACK_END, TRACK_START
from mmmlib.tokens.stats import (
    control_shares,
    length_table,
    roundtrip_example,
    roundtrip_summary,
    roundtrip_table,
    sample_rows,
    vocab_by_family,
)
from mmmlib.tokens.steps import tokenizer_step
from mmmlib.tokens.tokenizer import (
    ControlSwitches,
    MMMLoop,
    build_tokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_config,
)
from mmmlib.tokens.vocab import (
    control_ids,
    count_grammar_errors,
    grammar_rules,
    special_ids,
    track_prompt_ids,
    track_prompt_tokens,
    vocab_table,
)

__all__ = [
    "BAR", "FILL_END", "FILL_START", "INFILL_BAR", "SPLITS", "TRACK_END", "TRACK_START",
    "ControlSwitches", "DecodeResult", "FileTask", "MMMLoop", "SampleOptions", "TokenizerParams",
    "augmentations", "build_splits", "build_tokenizer", "control_ids", "control_shares", "count_grammar_errors",
    "file_samples", "grammar_rules", "language_fingerprint", "length_table", "load_any_tokenizer", "load_frozen_tokenizer", "load_tokenizer", "load_tokens",
    "merge_shards", "piano_roll_pair", "roundtrip_example", "roundtrip_file", "roundtrip_summary", "roundtrip_table", "sample_rows",
    "save_tokenizer", "sequence_length_histogram", "special_ids", "tasks_of", "tokenizer_config",
    "tokenizer_sha256", "tokenizer_step", "tokens_dir", "track_prompt_ids", "track_prompt_tokens", "train_bpe", "vocab_by_family",
    "vocab_table",
]
