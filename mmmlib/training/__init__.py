"""Training (03): a causal transformer on the token datasets, from one CPU to many GPUs.

- :mod:`~mmmlib.training.model`: architecture presets, building, saving and loading a model
  folder (``load`` gives ``(model, tokenizer)`` ready for generation);
- :mod:`~mmmlib.training.collator`: token datasets into padded batches, their checks and order;
- :mod:`~mmmlib.training.trainer`: the accelerate loop (gradient accumulation normalised by
  the global batch's loss tokens, NaN stop, validation);
- :mod:`~mmmlib.training.checkpoints`: atomic checkpoints, and the settings a resume must keep;
- :mod:`~mmmlib.training.logs`: ``train_log.csv``, TensorBoard, the summary, loss curves;
- :mod:`~mmmlib.training.launch`: :func:`run`, in this process or through ``accelerate launch``
  (whose processes run ``python -m mmmlib.training``);
- :mod:`~mmmlib.training.params`: :class:`TrainParams`, the 03 notebook's parameters.

torch is imported with the package; transformers, accelerate, datasets and matplotlib only
when a function needs them.
"""

from mmmlib.training.checkpoints import (
    RESUME_SETTINGS,
    TrainState,
    check_resumable,
    checkpoint_dirs,
    run_info,
)
from mmmlib.training.collator import (
    IGNORE_INDEX,
    MMMCollator,
    check_token_dataset,
    count_loss_tokens,
    epoch_batches,
    load_token_split,
)
from mmmlib.training.launch import config_file, launch_command, run, uses_launcher
from mmmlib.training.logs import LossLog, plot_loss_curves, read_log, summarize
from mmmlib.training.model import (
    ATTN_IMPLEMENTATIONS,
    DTYPES,
    PRESETS,
    build_model,
    check_attn_implementation,
    count_parameters,
    flops_per_token,
    load,
    load_tokenizer,
    model_config,
    resolve_device,
    resolve_precision,
    save,
    special_token_ids,
)
from mmmlib.training.params import TrainParams
from mmmlib.training.trainer import TrainingDiverged, accumulate_gradients, setup, train, train_step

__all__ = [
    "ATTN_IMPLEMENTATIONS", "DTYPES", "IGNORE_INDEX", "PRESETS", "RESUME_SETTINGS", "LossLog", "MMMCollator",
    "TrainParams", "TrainState", "TrainingDiverged", "accumulate_gradients", "build_model",
    "check_attn_implementation", "check_resumable", "check_token_dataset", "checkpoint_dirs", "config_file",
    "count_loss_tokens", "count_parameters", "epoch_batches", "flops_per_token", "launch_command", "load",
    "load_token_split", "load_tokenizer", "model_config", "plot_loss_curves", "read_log", "resolve_device",
    "resolve_precision", "run", "run_info", "save", "setup", "special_token_ids", "summarize", "train",
    "train_step", "uses_launcher",
]
