"""Helpers of the published-model tests: model folders of the published configuration, and tokens.

The published MIDI-GPT-Loop checkpoint cannot be downloaded here, so its folder is imitated
by a randomly initialised ``MistralForCausalLM`` of the same configuration (vocabulary 16000,
hidden 512, 8 layers, 8 heads with 4 KV heads, FF 1536, sliding window 384, 8192 positions,
bf16: 41.6M parameters), or of a tiny one with the same vocabulary where the size does not
matter. Tests that need the published tokenizer (``../shared/published``) skip without it.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOKENIZER = SHARED / "published" / "MMM_epl_mistral_tokenizer_with_acs.json"
VOCAB_SIZE = 16000
SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
FEATURES = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                              "loss_mask": datasets.Sequence(datasets.Value("int8"))})

needs_published = pytest.mark.skipif(not TOKENIZER.is_file(),
                                     reason=f"published tokenizer not found at {TOKENIZER}")


def published_config(tiny: bool = False):
    """The published model's configuration, or a tiny one with its vocabulary and special ids."""
    from transformers import MistralConfig

    from mmmlib.training.model import model_config

    if not tiny:
        return model_config("mistral-small", VOCAB_SIZE, 8192, **SPECIAL_IDS)
    return MistralConfig(vocab_size=VOCAB_SIZE, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=4096,
                         sliding_window=384, **SPECIAL_IDS)


def save_model_folder(folder: Path, tiny: bool = False, weights: str = "safetensors", seed: int = 0) -> Path:
    """A published-style folder: ``config.json`` with ``model.safetensors`` or ``pytorch_model.bin`` (bf16)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(published_config(tiny), dtype=torch.bfloat16)
    model.save_pretrained(folder)
    if weights == "bin":
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@functools.cache
def tiny_published_dir() -> Path:
    """A tiny published-vocabulary model folder (random weights), made once per session."""
    return save_model_folder(Path(tempfile.mkdtemp(prefix="mmm-pub-")) / "model", tiny=True)


@functools.cache
def tiny_published_model():
    """``(model, tokenizer)`` of :func:`tiny_published_dir` on CPU, fp32 (shared: do not modify)."""
    from mmmlib.training.model import load

    return load(tiny_published_dir(), TOKENIZER, device="cpu", dtype="fp32")


def write_published_tokens(folder: Path, midi_files: list[Path]) -> Path:
    """Token datasets in the published language (train and valid: the same files), as 02 lays them out.

    Every file is encoded with its track controls and loops; controls are context, never predicted.
    """
    from mmmlib.tokens.published import load_published

    tok = load_published(TOKENIZER)
    ids, masks = [], []
    for path in midi_files:
        encoding = tok.encode_full(path, controls="track")
        sample = encoding.ids[:256]
        ids.append(sample)
        masks.append([0 if len(tok.id_tokens()[i]) == 1 and tok.id_tokens()[i][0].startswith("AC") else 1
                      for i in sample])
    for split in ("train", "valid"):
        datasets.Dataset.from_dict({"input_ids": ids, "loss_mask": masks}, features=FEATURES).save_to_disk(
            str(folder / split))
    shutil.copyfile(TOKENIZER, folder / "tokenizer.json")
    assert max(max(s) for s in ids) < VOCAB_SIZE and np.mean([len(s) for s in ids]) > 16
    return folder
