"""Checkpoints of a training run: atomic saves, the latest one to resume from, and what resuming must keep.

A checkpoint is ``model_dir/checkpoints/step-N/``: what ``accelerator.save_state`` writes
(weights, optimizer, scheduler, RNG states and the :class:`TrainState` position in the data)
plus ``run.json``, the settings a resumed run must share with it (:func:`run_info`).
It is written to ``tmp-step-N`` and renamed when complete, so a killed run never leaves a
half-written "latest" checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmmlib.core.errors import ConfigError
from mmmlib.training.logs import LOG_CSV, SUMMARY_JSON, TENSORBOARD

if TYPE_CHECKING:
    from accelerate import Accelerator

    from mmmlib.training.params import TrainParams

CHECKPOINTS = "checkpoints"
RUN_JSON = "run.json"  # in each checkpoint: what must not change when resuming from it

# Settings a resumed run must share with its checkpoint: the model's shape, the data order,
# the global batch, and the optimizer and schedule. A resumed LambdaLR would silently reshape
# the schedule to new step counts, and the optimizer's saved param groups would silently win
# over new AdamW values, so a change is refused rather than half applied.
RESUME_SETTINGS = ("preset", "max_seq_len", "seed", "group_by_length", "batch_size", "grad_accum_steps",
                   "max_steps", "warmup_steps", "learning_rate", "min_lr_ratio", "weight_decay",
                   "adam_beta1", "adam_beta2")
_DESCRIPTIONS = {"vocab_size": "the tokenizer's vocabulary size", "num_processes": "training processes"}


@dataclass
class TrainState:
    """Position of the run, saved in every checkpoint (accelerate calls ``state_dict``)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed by this process

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        for name, value in state.items():
            setattr(self, name, value)


def checkpoint_dirs(model_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (staging ``tmp-*`` folders are never listed).

    :param model_dir: the run's output folder.
    :return: the ``checkpoints/step-N`` folders.
    """
    root = Path(model_dir) / CHECKPOINTS
    found = [d for d in root.glob("step-*") if re.fullmatch(r"step-\d+", d.name)] if root.is_dir() else []
    return sorted(found, key=lambda d: int(d.name.split("-")[1]))


def run_info(p: TrainParams, vocab_size: int, num_processes: int) -> dict[str, Any]:
    """What a run resumed from a checkpoint must share with it (saved as ``run.json``).

    :param p: the run's parameters.
    :param vocab_size: ``len(tokenizer)``.
    :param num_processes: processes actually training (``accelerator.num_processes``): with the
        batch size and gradient accumulation, it sets the global batch.
    :return: ``{setting: value}``.
    """
    info = {name: getattr(p, name) for name in RESUME_SETTINGS}
    return {**info, "vocab_size": vocab_size, "num_processes": num_processes}


def check_resumable(checkpoint: Path, info: dict[str, Any]) -> None:
    """Refuse to resume from ``checkpoint`` when a setting of ``info`` differs from its ``run.json``.

    :param checkpoint: a ``checkpoints/step-N`` folder.
    :param info: this run's :func:`run_info`.
    :raise ConfigError: naming the first changed setting, with both values (and the others that changed).
    """
    saved = json.loads((checkpoint / RUN_JSON).read_text())
    # a setting missing from an older checkpoint's run.json counts as changed: it cannot be checked
    changed = [name for name, value in info.items() if name not in saved or saved[name] != value]
    if not changed:
        return

    def was(name: str) -> str:
        return f"was {saved[name]!r}" if name in saved else "is not recorded"

    first = changed[0]
    what = f"({_DESCRIPTIONS[first]}) " if first in _DESCRIPTIONS else ""
    also = "".join(f"; `{n}` also {was(n)}, now {info[n]!r}" for n in changed[1:])
    raise ConfigError(first, f"{what}changed since {checkpoint}: it {was(first)}, now {info[first]!r}{also}. "
                             "Resuming would silently change the run: set `resume` to false to start over, "
                             "or train into another `model_dir`")


def save_checkpoint(accelerator: Accelerator, p: TrainParams, info: dict[str, Any], step: int) -> Path:
    """Write ``checkpoints/step-N`` atomically and keep only the last ``keep_checkpoints``.

    :param accelerator: the run's accelerator (every process takes part).
    :param p: the run's parameters.
    :param info: the run's :func:`run_info`, written as ``run.json``.
    :param step: the optimizer step just completed.
    :return: the checkpoint folder.
    """
    root = Path(p.model_dir) / CHECKPOINTS
    staging, final = root / f"tmp-step-{step:08d}", root / f"step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / RUN_JSON).write_text(json.dumps(info, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)  # the rename is the commit: step-N is complete or absent
        for old in checkpoint_dirs(p.model_dir)[:-p.keep_checkpoints]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def start_or_resume(accelerator: Accelerator, p: TrainParams, info: dict[str, Any]) -> Path | None:
    """Load the latest checkpoint when ``resume`` (and one exists); else clear the old run's files.

    :param accelerator: the run's accelerator, with model, optimizer, scheduler and
        :class:`TrainState` registered (they are loaded in place).
    :param p: the run's parameters.
    :param info: the run's :func:`run_info`, checked against the checkpoint's first.
    :return: the checkpoint resumed from, or ``None`` for a fresh start.
    :raise ConfigError: when a setting of :data:`RESUME_SETTINGS` (or the vocabulary, or the
        number of processes) changed since the checkpoint; nothing is deleted then.
    """
    model_dir = Path(p.model_dir)
    checkpoint = checkpoint_dirs(model_dir)[-1] if p.resume and checkpoint_dirs(model_dir) else None
    if checkpoint is not None:
        check_resumable(checkpoint, info)
    if accelerator.is_main_process:
        model_dir.mkdir(parents=True, exist_ok=True)
        for stale in (model_dir / CHECKPOINTS).glob("tmp-*"):  # a save that was killed half-way
            shutil.rmtree(stale)
        if checkpoint is None:
            for name in (CHECKPOINTS, TENSORBOARD, LOG_CSV, SUMMARY_JSON):
                path = model_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    if checkpoint is None:
        return None
    accelerator.load_state(str(checkpoint))
    return checkpoint
