"""Model presets, a few training steps on CPU, save → load, the loss mask, early errors."""

from __future__ import annotations

import miditok
import pytest
import torch

from mmmlib import training
from mmmlib.core.errors import ConfigError
from mmmlib.training import MMMCollator


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    """A stand-in tokenizer JSON (plain MidiTok MMM), loaded through mmmlib like a trained one."""
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    miditok.MMM(miditok.TokenizerConfig(base_tokenizer="REMI")).save(path)
    return path


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    return training.load_tokenizer(tokenizer_path)


def fixed_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Four repetitive sequences (easy to fit) with two control tokens each, not predicted."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for length in (40, 33, 28, 40):
        motif = torch.randint(10, 200, (5,), generator=generator)
        ids = motif.repeat(8)[:length].tolist()
        samples.append({"input_ids": ids, "loss_mask": [0, 0] + [1] * (length - 2)})
    return MMMCollator(pad_token_id=0)(samples)


def test_vocabulary_and_special_ids_come_from_the_tokenizer(tokenizer):
    torch.manual_seed(0)
    model = training.build_model("tiny", tokenizer, max_seq_len=256)
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == tokenizer.vocab["EOS_None"]
    assert model.config.max_position_embeddings == 256
    assert 0.5e6 < training.count_parameters(model) < 1.5e6  # "about 1M"


def test_mistral_small_is_the_mmm_architecture(tokenizer):
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = training.build_model("mistral-small", tokenizer)
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (512, 8, 8)
    assert (config.num_key_value_heads, config.intermediate_size, config.sliding_window) == (4, 1536, 384)
    assert training.flops_per_token(model, 2048) > 6 * 25e6


def test_unknown_preset_and_unavailable_kernels_are_clear_errors(tokenizer):
    # the library names its own setting; the 03 notebook's run() turns these into ParamErrors
    with pytest.raises(ConfigError, match="`preset` must be one of") as error:
        training.build_model("gpt5", tokenizer)
    assert error.value.setting == "preset"
    with pytest.raises(ConfigError, match="`attn_implementation` 'flash_attention_2' needs a CUDA GPU"):
        training.check_attn_implementation("flash_attention_2", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="`device` is 'cuda' but no CUDA GPU is visible"):
            training.resolve_device("cuda")


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(tokenizer):
    torch.manual_seed(0)
    model = training.build_model("tiny", tokenizer, max_seq_len=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = fixed_batch()
    losses = []
    for _ in range(8):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0, losses


def test_loss_is_computed_on_loss_mask_tokens_only(tokenizer):
    torch.manual_seed(0)
    model = training.build_model("tiny", tokenizer, max_seq_len=64).eval()
    batch = fixed_batch()
    with torch.no_grad():
        loss = model(**batch).loss
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # by hand: position i predicts token i + 1, counted only where the collator kept a label
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    manual = torch.nn.functional.cross_entropy(logits[:, :-1][keep], targets[keep])
    assert torch.allclose(loss, manual, atol=1e-5)
    num_masked = int((batch["attention_mask"] == 1).sum() - (batch["labels"] != -100).sum())
    assert num_masked == 2 * 4, "the two control tokens of each sample are context, not targets"


def test_save_then_load_gives_identical_logits(tokenizer, tokenizer_path, tmp_path):
    torch.manual_seed(0)
    model = training.build_model("tiny", tokenizer, max_seq_len=64).eval()
    batch = fixed_batch()
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    folder = training.save(model, tmp_path / "model", tokenizer_path)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt")), "no pickles"
    loaded, loaded_tokenizer = training.load(folder, device="cpu")
    assert len(loaded_tokenizer) == len(tokenizer) and not loaded.training
    with torch.no_grad():
        logits = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(logits, expected)


def test_load_rejects_a_folder_without_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        training.load(tmp_path)
