"""Model presets, construction, saving and loading (Hugging Face ``transformers``).

A preset is a plain dict of ``transformers`` config values; the vocabulary size and the
special token ids always come from the trained tokenizer, never from the preset, so a
model and its tokenizer cannot drift apart. A trained model is one folder::

    model_dir/config.json  generation_config.json  model.safetensors  tokenizer.json  params.json

and :func:`load` turns it back into ``(model, tokenizer)`` ready for ``model.generate``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmmlib.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from miditok import MusicTokenizer
    from transformers import PretrainedConfig, PreTrainedModel

    from mmmlib.core.params import Params
    from mmmlib.tokens.published import PublishedTokenizer

# Architecture presets. `max_position_embeddings` (gpt2: `n_positions`) is set from the
# `max_seq_len` parameter; vocabulary size and special ids from the tokenizer.
PRESETS: dict[str, dict[str, Any]] = {
    # CPU demo and tests: ~1M parameters with a ~500-token vocabulary.
    "tiny": dict(model_type="mistral", hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=384, sliding_window=384),
    # The MMM model of MIDI-GPT-Loop: Mistral blocks with grouped-query and sliding-window attention.
    "mistral-small": dict(model_type="mistral", hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                          num_key_value_heads=4, intermediate_size=1536, sliding_window=384),
    # Larger runs: ~100M parameters with a ~10k-token vocabulary.
    "mistral-medium": dict(model_type="mistral", hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           num_key_value_heads=4, intermediate_size=2560, sliding_window=1024),
    # The original MMM architecture (GPT-2 small, learned positions, full attention).
    "gpt2-small": dict(model_type="gpt2", n_embd=768, n_layer=12, n_head=12),
}
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA when visible, else CPU; ``"cuda"`` without a GPU is an error.

    :param device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    :return: the torch device.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "device", f"is {device!r} but no CUDA GPU is visible (torch.cuda.is_available() is False): "
            "use device 'cpu' or 'auto', or run on a GPU node")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError("device", f"must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` → ``"bf16"`` on a GPU that supports it, else ``"no"`` (fp32).

    :param precision: ``"auto"``, ``"no"``, ``"bf16"`` or ``"fp16"`` (accelerate's names).
    :param device: where the model runs.
    :return: the mixed-precision mode for accelerate.
    """
    if precision == "auto":
        is_bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if is_bf16_gpu else "no"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("mixed_precision", "'fp16' needs a CUDA GPU; use 'no' or 'bf16' on CPU")
    return precision


def check_attn_implementation(attn_implementation: str, device: torch.device) -> None:
    """Fail early, with a fix, when the attention kernel cannot run here."""
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ConfigError("attn_implementation", f"must be one of {ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}")
    if attn_implementation != "flash_attention_2":
        return
    if device.type != "cuda":
        raise ConfigError("attn_implementation", "'flash_attention_2' needs a CUDA GPU; use 'sdpa'")
    if importlib.util.find_spec("flash_attn") is None:
        raise ConfigError("attn_implementation", "is 'flash_attention_2' but flash-attn is not installed "
                          "(pip install -e '.[gpu]' or environment.yml); use 'sdpa'")


def load_tokenizer(path: str | Path) -> MusicTokenizer | PublishedTokenizer:
    """Load a tokenizer file of either dialect, recognised by its content.

    mmmlib's own ``tokenizer.json`` (02_tokenizer) or the published MIDI-GPT-Loop JSON
    (``MMM_epl_mistral_tokenizer_with_acs.json``); see :func:`mmmlib.tokens.loading.load_any_tokenizer`.

    :param path: the JSON file (or a folder holding one).
    :return: the tokenizer (``len()`` is its vocabulary size).
    """
    from mmmlib.tokens.loading import load_any_tokenizer

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer not found: {path} (train one with 02_tokenizer)")
    return load_any_tokenizer(path)


def special_token_ids(tokenizer: MusicTokenizer | PublishedTokenizer) -> dict[str, int | None]:
    """``pad_token_id``, ``bos_token_id``, ``eos_token_id`` of a tokenizer of either dialect (None if absent)."""
    vocab = getattr(tokenizer.vocab, "token_to_id", tokenizer.vocab)  # the published vocabulary is an object
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": vocab.get("BOS_None"),
        "eos_token_id": vocab.get("EOS_None"),
    }


def model_config(preset: str, vocab_size: int, max_seq_len: int, dropout: float = 0.0,
                 **token_ids: int | None) -> PretrainedConfig:
    """The ``transformers`` config of a preset.

    :param preset: a key of :data:`PRESETS`.
    :param vocab_size: ``len(tokenizer)``.
    :param max_seq_len: longest sequence the model accepts (position limit).
    :param dropout: attention (Mistral) or all (GPT-2) dropout probability.
    :param token_ids: ``pad_token_id``, ``bos_token_id``, ``eos_token_id``.
    """
    from transformers import AutoConfig

    if preset not in PRESETS:
        raise ConfigError("preset", f"must be one of {sorted(PRESETS)}, got {preset!r}")
    values = dict(PRESETS[preset])
    model_type = values.pop("model_type")
    if model_type == "gpt2":
        values.update(n_positions=max_seq_len, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
    else:
        values.update(max_position_embeddings=max_seq_len, attention_dropout=dropout)
    return AutoConfig.for_model(model_type, vocab_size=vocab_size, use_cache=True, **values, **token_ids)


def build_model(preset: str, tokenizer: MusicTokenizer, max_seq_len: int = 2048, dropout: float = 0.0,
                attn_implementation: str = "sdpa") -> PreTrainedModel:
    """A freshly initialised causal LM for ``tokenizer`` (fp32, on CPU).

    :param preset: a key of :data:`PRESETS`.
    :param tokenizer: the trained tokenizer; gives the vocabulary size and special ids.
    :param max_seq_len: longest sequence the model accepts.
    :param dropout: dropout probability (see :func:`model_config`).
    :param attn_implementation: ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"``.
    """
    from transformers import AutoModelForCausalLM

    ids = special_token_ids(tokenizer)
    config = model_config(preset, len(tokenizer), max_seq_len, dropout, **ids)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation,
                                             dtype=torch.float32)
    for name, value in ids.items():  # generate() reads these, not the model config
        setattr(model.generation_config, name, value)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_token(model: PreTrainedModel, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward), PaLM-paper convention.

    ``6 * N`` for the matmul weights (input and position embeddings are lookups, so
    excluded; the output projection counts even when tied) plus ``12 * layers * hidden *
    context`` for attention scores and values, where ``context`` is the sequence length
    capped at the sliding window. Causal masking is not halved, as in PaLM and nanoGPT.
    """
    config = model.config
    embeddings = {id(model.get_input_embeddings().weight)}
    n_matmul = sum(p.numel() for name, p in model.named_parameters()
                   if p.dim() >= 2 and id(p) not in embeddings and "wpe" not in name)
    if getattr(config, "tie_word_embeddings", False):
        n_matmul += config.vocab_size * config.hidden_size
    window = getattr(config, "sliding_window", None) or seq_len
    context = min(seq_len, window)
    return 6.0 * n_matmul + 12.0 * config.num_hidden_layers * config.hidden_size * context


def save(model: PreTrainedModel, folder: str | Path, tokenizer_path: str | Path,
         params: Params | None = None) -> Path:
    """Write the model (safetensors), its tokenizer JSON and params into ``folder``.

    The files are written to a temporary folder inside ``folder`` first and moved in one
    by one with atomic renames, so an interrupted save never leaves a half-written file.

    :return: ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-save-", dir=folder))
    try:
        model.save_pretrained(staging)  # safetensors, no pickles
        shutil.copyfile(tokenizer_path, staging / "tokenizer.json")
        if params is not None:
            params.save(staging)
        for path in staging.iterdir():
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def weights_file(path: str | Path) -> Path:
    """The weights of a model folder: ``model.safetensors`` (or its index) first, else ``pytorch_model.bin``.

    :param path: a Hugging Face model folder.
    :return: the file.
    :raises FileNotFoundError: when the folder holds none of them.
    """
    for name in WEIGHT_FILES:
        if (Path(path) / name).is_file():
            return Path(path) / name
    raise FileNotFoundError(f"{path} has no model weights ({' or '.join(WEIGHT_FILES)})")


def load_weights(path: str | Path, dtype: torch.dtype = torch.float32,
                 attn_implementation: str = "sdpa") -> PreTrainedModel:
    """A causal LM from a Hugging Face folder: ``config.json`` with safetensors or a ``.bin``.

    A ``pytorch_model.bin`` is read with ``torch.load(weights_only=True)``: tensors only, so no
    pickled code in a downloaded file can run.

    :param path: the model folder.
    :param dtype: the parameters' dtype.
    :param attn_implementation: see :func:`build_model`.
    :return: the model (train mode, on CPU).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a model folder (no config.json): train one with 03_train")
    weights = weights_file(path)
    if weights.suffix != ".bin":
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation,
                                                    use_safetensors=True)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    config = AutoConfig.from_pretrained(path)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation, dtype=dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise DataError(f"{weights} does not fit {path / 'config.json'}: missing {sorted(set(missing) - tied)[:5]}, "
                        f"unexpected {sorted(unexpected)[:5]}")
    if tied:
        model.tie_weights()
    return model


def tokenizer_file(path: str | Path, tokenizer_path: str | Path | None = None) -> Path:
    """The tokenizer of a model folder: ``tokenizer_path`` when given, else the one the folder holds.

    :param path: the model folder.
    :param tokenizer_path: a tokenizer file anywhere (e.g. the published JSON), or None.
    :return: the file.
    :raises FileNotFoundError: when neither gives one.
    """
    from mmmlib.tokens.loading import PUBLISHED_NAME, find_tokenizer_file

    if tokenizer_path:
        if not Path(tokenizer_path).is_file():
            raise FileNotFoundError(f"no tokenizer file at {tokenizer_path}")
        return Path(tokenizer_path)
    found = find_tokenizer_file(path)
    if found is None:
        raise FileNotFoundError(f"{path} holds no tokenizer (tokenizer.json or {PUBLISHED_NAME}): "
                                "give its tokenizer file (tokenizer_path)")
    return found


def load(path: str | Path, tokenizer_path: str | Path | None = None, device: str = "auto", dtype: str = "auto",
         attn_implementation: str = "sdpa") -> tuple[PreTrainedModel, MusicTokenizer | PublishedTokenizer]:
    """Load a model folder: the output of ``03_train``, or a published MIDI-GPT-Loop folder.

    :param path: the model folder (``config.json`` with ``model.safetensors`` or ``pytorch_model.bin``).
    :param tokenizer_path: its tokenizer file, from anywhere (the published JSON or an mmmlib
        ``tokenizer.json``, recognised by content); None: the one in the folder.
    :param device: ``"auto"`` (GPU when visible), ``"cpu"`` or ``"cuda[:N]"``.
    :param dtype: ``"auto"`` (bf16 on a GPU that supports it, else fp32), ``"fp32"``,
        ``"bf16"`` or ``"fp16"``.
    :param attn_implementation: see :func:`build_model`.
    :return: ``(model, tokenizer)``, the model in eval mode on ``device``.
    :raises DataError: when the model's vocabulary and the tokenizer's differ.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a model folder (no config.json): train one with 03_train")
    torch_device = resolve_device(device)
    check_attn_implementation(attn_implementation, torch_device)
    if dtype == "auto":
        dtype = "bf16" if resolve_precision("auto", torch_device) == "bf16" else "fp32"
    if dtype not in DTYPES:
        raise ConfigError("dtype", f"must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    tok_file = tokenizer_file(path, tokenizer_path)
    tokenizer = load_tokenizer(tok_file)
    model = load_weights(path, DTYPES[dtype], attn_implementation)
    if model.config.vocab_size != len(tokenizer):
        raise DataError(f"{path}: the model's vocabulary ({model.config.vocab_size}) differs from its tokenizer "
                        f"{tok_file} ({len(tokenizer)}): they are not one model's")
    for name, value in special_token_ids(tokenizer).items():  # generate() reads these
        setattr(model.generation_config, name, value)
    return model.to(torch_device).eval(), tokenizer


def check_init_from(init_from: str | Path, tokenizer_path: str | Path, max_seq_len: int,
                    tokens_dir: str | Path | None = None) -> None:
    """Refuse to fine-tune ``init_from`` on tokens that are not in its token language.

    Reads ``config.json`` and the tokenizer files only, never the weights. The checks: the
    folder is a model folder with weights; the model's vocabulary is the size of the
    tokenizer's; when the folder ships a tokenizer, it is the same language as
    ``tokenizer_path`` (:func:`mmmlib.tokens.loading.language_fingerprint`); the tokens were
    made with that language (``tokens_dir/tokenizer.json``, the copy 02 keeps); the model's
    positions hold ``max_seq_len``.

    :param init_from: the model folder to start from.
    :param tokenizer_path: the tokenizer of the training tokens.
    :param max_seq_len: longest training sample.
    :param tokens_dir: the token datasets' folder (None: not checked).
    :raises ConfigError: naming ``init_from``, ``tokens_dir`` or ``max_seq_len``.
    """
    from mmmlib.tokens.loading import find_tokenizer_file, language_fingerprint

    folder = Path(init_from)
    if not (folder / "config.json").is_file():
        raise ConfigError("init_from", f"is not a model folder (no config.json): {str(init_from)!r}")
    try:
        weights_file(folder)
    except FileNotFoundError as exc:
        raise ConfigError("init_from", str(exc)) from exc
    config = json.loads((folder / "config.json").read_text())
    size = len(load_tokenizer(tokenizer_path))
    if config.get("vocab_size") != size:
        raise ConfigError("init_from", f"is a model of {config.get('vocab_size')} token ids but the tokenizer "
                          f"{str(tokenizer_path)!r} has {size}: the model speaks another token language "
                          "(use the tokenizer it was trained with, and tokens made with it)")
    wanted = language_fingerprint(tokenizer_path)
    shipped = find_tokenizer_file(folder)
    if shipped is not None and language_fingerprint(shipped) != wanted:
        raise ConfigError("init_from", f"ships the tokenizer {shipped.name}, another token language than "
                          f"{str(tokenizer_path)!r}: fine-tune with the model's own tokenizer and tokens made with it")
    made_with = Path(tokens_dir) / "tokenizer.json" if tokens_dir else None
    if made_with is not None and made_with.is_file() and language_fingerprint(made_with) != wanted:
        raise ConfigError("tokens_dir", f"holds tokens made with another tokenizer ({made_with}) than "
                          f"{str(tokenizer_path)!r}, the language of init_from")
    positions = config.get("max_position_embeddings") or config.get("n_positions") or 0
    if max_seq_len > positions:
        raise ConfigError("max_seq_len", f"({max_seq_len}) is longer than the positions of the init_from model "
                          f"({positions})")
