"""Parameters of ``03_train.ipynb``: typed, checked before any work (see :mod:`mmmlib.core.params`)."""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from pathlib import Path
from typing import ClassVar

from mmmlib.core.params import Params, as_param_error, require

# Library settings that reach training under another name than the notebook parameter they come from.
PARAMETER_OF_SETTING = {"vocab_size": "tokenizer_path"}


@dataclasses.dataclass
class TrainParams(Params):
    """Parameters of ``03_train.ipynb`` (see the notebook for their meaning)."""

    stage: ClassVar[str] = "03_train"

    model_dir: str
    tokenizer_path: str
    tokens_dir: str
    preset: str
    max_seq_len: int
    dropout: float
    attn_implementation: str
    device: str
    mixed_precision: str
    use_gradient_checkpointing: bool
    use_compile: bool
    batch_size: int
    grad_accum_steps: int
    group_by_length: bool
    max_steps: int
    learning_rate: float
    min_lr_ratio: float
    warmup_steps: int
    weight_decay: float
    adam_beta1: float
    adam_beta2: float
    max_grad_norm: float
    log_every_steps: int
    eval_every_steps: int
    eval_max_batches: int
    save_every_steps: int
    keep_checkpoints: int
    resume: bool
    seed: int
    num_workers: int
    launcher: str
    num_processes: int
    num_machines: int
    use_deepspeed: bool
    init_from: str = ""  # last, with a default: callers written before it keep working

    def check(self) -> None:
        from mmmlib.training.model import (  # torch: only once a notebook validates
            ATTN_IMPLEMENTATIONS,
            PRESETS,
        )

        self._check_paths()
        if self.init_from:
            from mmmlib.training.model import check_init_from

            with self.param_errors():
                check_init_from(self.init_from, self.tokenizer_path, self.max_seq_len, self.tokens_dir)
        require(self.preset in PRESETS, "preset", f"must be one of {sorted(PRESETS)}, got {self.preset!r}")
        require(self.attn_implementation in ATTN_IMPLEMENTATIONS, "attn_implementation",
                f"must be one of {ATTN_IMPLEMENTATIONS}, got {self.attn_implementation!r}")
        require(self.device in ("auto", "cpu") or self.device.startswith("cuda"), "device",
                f"must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        require(self.mixed_precision in ("auto", "no", "bf16", "fp16"), "mixed_precision",
                f"must be 'auto', 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        require(self.max_seq_len >= 8, "max_seq_len", f"must be >= 8, got {self.max_seq_len}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        for name in ("batch_size", "grad_accum_steps", "max_steps", "log_every_steps", "eval_every_steps",
                     "eval_max_batches", "save_every_steps", "keep_checkpoints", "num_processes", "num_machines"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        require(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        require(0 <= self.warmup_steps <= self.max_steps, "warmup_steps",
                f"must be in [0, max_steps={self.max_steps}], got {self.warmup_steps}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        for name in ("adam_beta1", "adam_beta2"):
            require(0.0 <= getattr(self, name) < 1.0, name, f"must be in [0, 1), got {getattr(self, name)}")
        require(self.max_grad_norm > 0, "max_grad_norm", f"must be > 0, got {self.max_grad_norm}")
        require(self.num_workers >= 0, "num_workers", f"must be >= 0, got {self.num_workers}")
        self._check_launch()

    @staticmethod
    def param_errors() -> AbstractContextManager[None]:
        """Re-raise the library's ``ConfigError`` as a ``ParamError`` naming the 03 notebook's parameter.

        :return: a context manager: ``with p.param_errors(): ...``
            (see :func:`mmmlib.core.params.as_param_error`).
        """
        return as_param_error(PARAMETER_OF_SETTING)

    def _check_paths(self) -> None:
        require(bool(self.model_dir), "model_dir", "must not be empty")
        require(Path(self.tokenizer_path).is_file(), "tokenizer_path",
                f"is not a file: {self.tokenizer_path!r} (the tokenizer.json written by 02_tokenizer)")
        for split in ("train", "valid"):
            require((Path(self.tokens_dir) / split).is_dir(), "tokens_dir",
                    f"has no {split}/ dataset: {self.tokens_dir!r} (the tokens folder written by 02_tokenizer)")

    def _check_launch(self) -> None:
        require(self.launcher in ("auto", "inprocess", "accelerate"), "launcher",
                f"must be 'auto', 'inprocess' or 'accelerate', got {self.launcher!r}")
        require(self.num_processes % self.num_machines == 0, "num_processes",
                f"(all processes, all machines) must be a multiple of num_machines={self.num_machines}, "
                f"got {self.num_processes}")
        require(self.launcher != "inprocess" or self.num_processes == 1, "launcher",
                "is 'inprocess' but num_processes > 1: use 'auto' or 'accelerate' for several processes")
        require(not (self.use_deepspeed and self.device == "cpu"), "use_deepspeed",
                "needs GPUs (device 'cuda' or 'auto'); set it to false on CPU")
