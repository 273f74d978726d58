"""The training loop: one code path from one CPU to many GPUs (every process of a launch runs :func:`train`).

:func:`train` is an accelerate loop (:func:`mmmlib.training.launch.run` calls it in this
process, or starts ``accelerate launch -m mmmlib.training`` whose processes each call it):

- data order is a function of (seed, epoch) only, so a resumed run sees the same batches;
- the loss of an optimizer step is the mean over every loss token of its global batch (all
  micro-batches, all processes), whatever their lengths (:func:`accumulate_gradients`);
- checkpoints are atomic and resumable, and a resumed run must keep the settings that shape
  it (:mod:`mmmlib.training.checkpoints`);
- a NaN/inf loss stops training before the optimizer step, keeping the last good checkpoint;
- losses go to ``train_log.csv`` and TensorBoard (:mod:`mmmlib.training.logs`);
- the final model is saved with :func:`mmmlib.training.model.save` (load it with :func:`mmmlib.training.model.load`).
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmmlib.core.errors import ConfigError
from mmmlib.training import model as mmm_model
from mmmlib.training.checkpoints import (
    TrainState,
    checkpoint_dirs,
    run_info,
    save_checkpoint,
    start_or_resume,
)
from mmmlib.training.collator import (
    MMMCollator,
    check_token_dataset,
    count_loss_tokens,
    epoch_batches,
    load_token_split,
)
from mmmlib.training.logs import LossLog, read_log, write_summary
from mmmlib.training.params import TrainParams

if TYPE_CHECKING:
    import datasets
    from accelerate import Accelerator


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint is kept."""


# --------------------------------------------------------------------------- data


def preflight(p: TrainParams) -> tuple[Any, dict[str, datasets.Dataset], dict[str, np.ndarray]]:
    """Every check that can fail before training starts: device, kernels, tokenizer, data.

    :param p: the run's parameters.
    :return: ``(tokenizer, datasets by split, sample lengths by split)``.
    :raise ConfigError: naming the setting that cannot work (see :func:`mmmlib.training.launch.run`
        for the notebook's view of it).
    """
    device = mmm_model.resolve_device(p.device)
    mmm_model.check_attn_implementation(p.attn_implementation, device)
    precision = mmm_model.resolve_precision(p.mixed_precision, device)
    if p.attn_implementation == "flash_attention_2" and precision == "no":
        raise ConfigError("attn_implementation", "'flash_attention_2' needs mixed_precision bf16 or fp16")
    if p.use_deepspeed and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("use_deepspeed", "is true but deepspeed is not installed (pip install -e '.[gpu]')")
    tokenizer = mmm_model.load_tokenizer(p.tokenizer_path)
    splits, lengths = {}, {}
    for split in ("train", "valid"):
        splits[split] = load_token_split(p.tokens_dir, split)
        lengths[split] = check_token_dataset(splits[split], Path(p.tokens_dir) / split, len(tokenizer), p.max_seq_len)
    if len(splits["train"]) < p.batch_size * p.num_processes:
        raise ConfigError("batch_size", f"is too large: {len(splits['train'])} training samples cannot fill one "
                                        f"batch of {p.batch_size} on each of {p.num_processes} process(es)")
    return tokenizer, splits, lengths


def micro_batches(ds: datasets.Dataset, lengths: np.ndarray, collator: MMMCollator, p: TrainParams,
                  state: TrainState, accelerator: Accelerator) -> Iterator[dict[str, torch.Tensor]]:
    """Endless training batches from ``state``'s position on; advances ``state`` as they are consumed.

    :param ds: the training split.
    :param lengths: the length of each of its samples.
    :param collator: pads samples into a batch.
    :param p: the run's parameters (batch size, seed, grouping, workers).
    :param state: where the run is (epoch, micro-batches of the epoch already consumed).
    :param accelerator: gives this process's rank among ``num_processes``.
    :return: micro-batches of this process, in the order of :func:`~mmmlib.training.collator.epoch_batches`.
    """
    from torch.utils.data import DataLoader

    while True:
        batches = epoch_batches(lengths, p.batch_size, state.epoch, p.seed, accelerator.process_index,
                                accelerator.num_processes, p.group_by_length)
        # its own generator: a loader seeds its workers from the global RNG otherwise, and
        # a resumed run (which starts a loader mid-epoch) would then draw other dropout masks
        loader = DataLoader(ds, batch_sampler=batches[state.batch_in_epoch:], collate_fn=collator,
                            num_workers=p.num_workers, generator=torch.Generator().manual_seed(p.seed))
        for batch in loader:
            state.batch_in_epoch += 1
            yield batch
        state.epoch += 1
        state.batch_in_epoch = 0


@torch.no_grad()
def evaluate(model: torch.nn.Module, ds: datasets.Dataset, collator: MMMCollator, batch_size: int,
             max_batches: int, accelerator: Accelerator) -> float:
    """Mean loss per predicted token over the first ``max_batches`` batches of each process.

    :param model: the model (put back in train mode afterwards).
    :param ds: the validation split.
    :param collator: pads samples into a batch.
    :param batch_size: samples per batch.
    :param max_batches: batches per process.
    :param accelerator: shards the samples over processes and sums their losses.
    :return: the loss per predicted token over all processes (NaN when nothing is predicted).
    """
    from torch.utils.data import DataLoader

    mine = list(range(accelerator.process_index, len(ds), accelerator.num_processes))
    batches = [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)][:max_batches]
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)  # loss sum, predicted tokens
    model.eval()
    for batch in DataLoader(ds, batch_sampler=batches, collate_fn=collator, generator=torch.Generator()):
        num_predicted = count_loss_tokens(batch["labels"]).item()
        if num_predicted > 0:
            loss = model(**{k: v.to(accelerator.device) for k, v in batch.items()}).loss
            total += torch.stack([loss.double() * num_predicted, loss.new_tensor(num_predicted, dtype=torch.float64)])
    model.train()
    total = accelerator.reduce(total, "sum")
    return (total[0] / total[1]).item() if total[1] > 0 else float("nan")


def make_optimizer(model: torch.nn.Module, p: TrainParams) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (decaying norms and biases only hurts).

    :param model: the model to train.
    :param p: learning rate, weight decay and betas.
    :return: the optimizer.
    """
    params = [q for q in model.parameters() if q.requires_grad]
    groups = [{"params": [q for q in params if q.dim() >= 2], "weight_decay": p.weight_decay},
              {"params": [q for q in params if q.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=p.learning_rate, betas=(p.adam_beta1, p.adam_beta2))


def make_accelerator(p: TrainParams) -> Accelerator:
    """The accelerator of this process (its distributed setup comes from ``accelerate launch``).

    :param p: device, precision and gradient accumulation.
    :return: the accelerator.
    """
    from accelerate import Accelerator

    device = mmm_model.resolve_device(p.device)
    precision = mmm_model.resolve_precision(p.mixed_precision, device)
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=precision,
                              gradient_accumulation_steps=p.grad_accum_steps)
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:  # our loaders are not prepared by accelerate, so DeepSpeed is told these
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = p.batch_size
        plugin.deepspeed_config["gradient_clipping"] = p.max_grad_norm
    return accelerator


def build_or_load(p: TrainParams, tokenizer: Any) -> torch.nn.Module:
    """A new model of ``p.preset``, or the model of ``p.init_from`` to fine-tune (fp32, train mode).

    :param p: the run's parameters.
    :param tokenizer: the tokenizer of the training tokens (sizes a new model).
    :return: the model.
    """
    if not p.init_from:
        return mmm_model.build_model(p.preset, tokenizer, p.max_seq_len, p.dropout, p.attn_implementation)
    mmm_model.check_init_from(p.init_from, p.tokenizer_path, p.max_seq_len, p.tokens_dir)
    model = mmm_model.load_weights(p.init_from, torch.float32, p.attn_implementation)
    for name, value in mmm_model.special_token_ids(tokenizer).items():
        setattr(model.generation_config, name, value)
    return model.train()


@dataclass
class Session:
    """What one training process holds, built by :func:`setup`."""

    p: TrainParams
    accelerator: Accelerator
    model: torch.nn.Module  # prepared (DDP/DeepSpeed): what checkpoints save
    forward: torch.nn.Module  # the same model, or its torch.compile'd version: what batches go through
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    state: TrainState
    collator: MMMCollator
    splits: dict[str, datasets.Dataset]
    lengths: dict[str, np.ndarray]
    run_info: dict[str, Any]  # what a resumed run must keep (written into each checkpoint)


def setup(p: TrainParams) -> Session:
    """Check inputs, build model and optimizer, and resume from the latest checkpoint if asked.

    :param p: the run's parameters.
    :return: the session :func:`loop` trains.
    """
    from accelerate.utils import set_seed
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    accelerator = make_accelerator(p)
    tokenizer, splits, lengths = preflight(p)
    set_seed(p.seed)
    model = build_or_load(p, tokenizer)
    if p.use_gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    optimizer = make_optimizer(model.to(accelerator.device), p)
    # stepped by hand once per optimizer step: accelerate's wrapper would step it once per process
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(optimizer, p.warmup_steps, p.max_steps,
                                                            min_lr_rate=p.min_lr_ratio)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = TrainState()
    accelerator.register_for_checkpointing(scheduler, state)
    info = run_info(p, len(tokenizer), accelerator.num_processes)
    checkpoint = start_or_resume(accelerator, p, info)
    accelerator.print(f"{p.init_from or p.preset}: {mmm_model.count_parameters(model):,} parameters, vocabulary {len(tokenizer)}; "
                      f"{len(splits['train']):,} train / {len(splits['valid']):,} valid samples; "
                      f"{accelerator.num_processes} process(es) on {accelerator.device}, precision "
                      f"{accelerator.mixed_precision}; " + (f"resumed from {checkpoint}" if checkpoint else "from scratch"))
    collator = MMMCollator(tokenizer.pad_token_id, pad_to_multiple_of=8, max_length=p.max_seq_len)
    forward = torch.compile(model) if p.use_compile else model
    return Session(p, accelerator, model, forward, optimizer, scheduler, state, collator, splits, lengths, info)


def accumulate_gradients(s: Session, micro: list[dict[str, torch.Tensor]]) -> float:
    """Forward and backward passes of one optimizer step, leaving its gradients in the model.

    Each micro-batch's loss is the sum of its per-token losses divided by the number of loss
    tokens in the whole global batch (every micro-batch of the step, on every process), as
    HF Trainer does with ``num_items_in_batch``: the gradients are then those of the mean loss
    over the global batch's tokens. Averaging each micro-batch on its own instead would give
    the tokens of a short micro-batch more weight than those of a long one.

    :param s: the training session.
    :param micro: the ``grad_accum_steps`` micro-batches of this process for the step.
    :return: the step's loss per loss token, over all micro-batches and processes.
    :raise TrainingDiverged: on a NaN or infinite loss, before its backward pass.
    """
    accelerator = s.accelerator
    num_tokens = torch.stack([count_loss_tokens(b["labels"]) for b in micro]).sum().to(accelerator.device)
    num_tokens = accelerator.reduce(num_tokens, "sum")
    # accelerate's backward divides by the accumulation steps, and DDP (and DeepSpeed) average
    # gradients over processes: undo both, since dividing by num_tokens already normalises
    scale = accelerator.gradient_accumulation_steps * accelerator.num_processes
    loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    for batch in micro:
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
        with accelerator.accumulate(s.model):
            loss = s.forward(**batch, num_items_in_batch=num_tokens).loss
            num_bad = accelerator.reduce((~torch.isfinite(loss.detach())).float().reshape(1), "sum")
            if num_bad.item() > 0:  # checked before backward: the weights stay those of a finite loss
                last = checkpoint_dirs(s.p.model_dir)
                raise TrainingDiverged(
                    f"loss is {loss.item()} at step {s.state.step + 1}: training stopped; the last good "
                    f"checkpoint is {last[-1] if last else 'none (no checkpoint yet)'}. Lower learning_rate "
                    "or check the data, then rerun with resume: true")
            accelerator.backward(loss * scale)
        loss_sum += loss.detach().double() * num_tokens
    return (accelerator.reduce(loss_sum, "sum") / num_tokens).item()


def train_step(s: Session, micro: list[dict[str, torch.Tensor]]) -> float:
    """One optimizer step over ``grad_accum_steps`` micro-batches.

    :param s: the training session.
    :param micro: this process's micro-batches for the step.
    :return: the step's loss per loss token (see :func:`accumulate_gradients`).
    """
    loss = accumulate_gradients(s, micro)
    # the last micro-batch turned gradient sync on, so the gradients are complete here
    s.accelerator.clip_grad_norm_(s.model.parameters(), s.p.max_grad_norm)
    s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    s.scheduler.step()
    s.state.step += 1
    return loss


def validate(s: Session, log: LossLog) -> float:
    """Valid loss now, logged at the current step.

    :param s: the training session.
    :param log: where the loss is logged.
    :return: the loss per predicted token.
    """
    loss = evaluate(s.forward, s.splits["valid"], s.collator, s.p.batch_size, s.p.eval_max_batches, s.accelerator)
    log.loss(s.state.step, "valid", loss)
    s.accelerator.print(f"step {s.state.step}/{s.p.max_steps}  valid loss {loss:.4f}")
    return loss


def loop(s: Session, log: LossLog) -> float:
    """Train from ``s.state`` up to ``max_steps``: log, evaluate and checkpoint on schedule.

    The train loss logged every ``log_every_steps`` is the mean of the steps' losses per token.

    :param s: the training session.
    :param log: where losses are logged.
    :return: the wall time in seconds.
    """
    p, state = s.p, s.state
    batches = micro_batches(s.splits["train"], s.lengths["train"], s.collator, p, state, s.accelerator)
    if state.step == 0:
        validate(s, log)
    start = window_start = time.time()
    window_losses, window_tokens = [], 0
    while state.step < p.max_steps:
        micro = [next(batches) for _ in range(p.grad_accum_steps)]
        window_tokens += sum(int(b["attention_mask"].sum()) for b in micro)
        window_losses.append(train_step(s, micro))
        is_last = state.step == p.max_steps
        if state.step % p.log_every_steps == 0 or is_last:
            tokens_per_s = window_tokens * s.accelerator.num_processes / (time.time() - window_start)
            lr = s.scheduler.get_last_lr()[0]
            log.loss(state.step, "train", float(np.mean(window_losses)))
            log.scalar("lr", lr, state.step)
            log.scalar("throughput/tokens_per_s", tokens_per_s, state.step)
            s.accelerator.print(f"step {state.step}/{p.max_steps}  train loss {np.mean(window_losses):.4f}  "
                                f"lr {lr:.2e}  {tokens_per_s:,.0f} tokens/s")
            window_start, window_losses, window_tokens = time.time(), [], 0
        if state.step % p.eval_every_steps == 0 or is_last:
            validate(s, log)
        if state.step % p.save_every_steps == 0 or is_last:
            save_checkpoint(s.accelerator, p, s.run_info, state.step)
    return time.time() - start


def train(p: TrainParams) -> dict[str, Any]:
    """Train (or resume) as ``p`` says; every process of a launch runs this.

    :param p: the run's parameters.
    :return: the summary also written to ``model_dir/train_summary.json``.
    """
    s = setup(p)
    log = LossLog(p.model_dir, s.state.step, s.accelerator.is_main_process)
    try:
        seconds = loop(s, log)
    finally:
        log.close()
    return _finish(s.accelerator.unwrap_model(s.model), p, s.accelerator, s.state, seconds)


def _finish(model: torch.nn.Module, p: TrainParams, accelerator: Accelerator, state: TrainState,
            seconds: float) -> dict[str, Any]:
    """Save the final model and write the summary (main process)."""
    summary: dict[str, Any] = {}
    if accelerator.is_main_process:
        mmm_model.save(model, p.model_dir, p.tokenizer_path, p)
        log = read_log(p.model_dir)
        valid = log[log["split"] == "valid"].sort_values("step")
        summary = {
            "step": state.step, "preset": p.preset, "num_parameters": mmm_model.count_parameters(model),
            "initial_valid_loss": float(valid["loss"].iloc[0]), "final_valid_loss": float(valid["loss"].iloc[-1]),
            "final_valid_perplexity": math.exp(float(valid["loss"].iloc[-1])),
            "train_seconds": round(seconds, 2), "num_processes": accelerator.num_processes,
            "device": str(accelerator.device), "mixed_precision": accelerator.mixed_precision,
        }
        write_summary(p.model_dir, summary)
        accelerator.print(f"saved {p.model_dir}: valid loss {summary['initial_valid_loss']:.4f} -> "
                          f"{summary['final_valid_loss']:.4f} (perplexity {summary['final_valid_perplexity']:.2f})")
    accelerator.wait_for_everyone()
    return summary


