"""Helpers of the generation tests: a small trained tokenizer and a random tiny model folder.

Built once per test session (a few seconds): the synthetic data folder of
:mod:`tests.tokenizer_fixtures`, BPE to 1000 ids, and a randomly initialised ``tiny``
model saved with :func:`mmmlib.training.model.save`. Constraints must give valid output even from
random weights, so no training is needed.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from pathlib import Path

import torch

from mmmlib.tokens import build_tokenizer, tasks_of, train_bpe
from mmmlib.training import model as mmm_model
from tests.tokenizer_fixtures import make_data_dir

MAX_SEQ_LEN = 1024


@functools.cache
def tiny_model_dir() -> Path:
    """A model folder (config, weights, tokenizer.json) with random ``tiny`` weights."""
    root = Path(tempfile.mkdtemp(prefix="mmm-gen-"))
    data_dir = make_data_dir(root / "data", num_files=10, seed=3)
    tokenizer_path = root / "tokenizer.json"
    train_bpe(build_tokenizer(expressive=True), tokenizer_path, tasks_of(data_dir),
              vocab_size=1000, max_files=100, seed=0)
    tok = mmm_model.load_tokenizer(tokenizer_path)
    torch.manual_seed(0)
    model = mmm_model.build_model("tiny", tok, max_seq_len=MAX_SEQ_LEN)
    return mmm_model.save(model, root / "model", tokenizer_path)


@functools.cache
def tiny_model():
    """``(model, tokenizer)`` of :func:`tiny_model_dir` on CPU (shared: do not modify)."""
    return mmm_model.load(tiny_model_dir(), device="cpu")


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread (tiny matrices: more threads only add contention on shared CPUs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def midi_of(folder: Path) -> Path:
    """A synthetic MIDI file of the fixture corpus."""
    return sorted((folder.parent / "data" / "midi").glob("*.mid"))[0]
