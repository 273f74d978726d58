"""Train a model on the token datasets: one code path from one CPU to many GPUs.

:func:`run` is what ``03_train.ipynb`` calls. With one process it runs :func:`train` in
the notebook's own process; with several (GPUs, nodes) it starts ``accelerate launch -m
mmmlib.training.trainer --params model_dir/params.json`` (through ``srun`` on several nodes) and
streams its log. Every process then runs the same :func:`train`, an accelerate loop:

- data order is a function of (seed, epoch) only, so a resumed run sees the same batches;
- checkpoints (``model_dir/checkpoints/step-N``: weights, optimizer, scheduler, RNG and
  the position in the data) are written to ``tmp-step-N`` and renamed when complete, so
  a killed run never leaves a half-written "latest" checkpoint;
- a NaN/inf loss stops training before the optimizer step, keeping the last good checkpoint;
- losses go to ``train_log.csv`` (``step, split, loss``) and TensorBoard (``tensorboard/``);
- the final model is saved with :func:`mmmlib.training.model.save` (load it with :func:`mmmlib.training.model.load`).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmmlib.core.params import ParamError, project_root
from mmmlib.training import model as mmm_model
from mmmlib.training.collator import (
    IGNORE_INDEX,
    MMMCollator,
    check_token_dataset,
    epoch_batches,
    load_token_split,
)
from mmmlib.training.params import TrainParams

if TYPE_CHECKING:
    import datasets
    import pandas as pd
    from accelerate import Accelerator
    from matplotlib.figure import Figure

CHECKPOINTS = "checkpoints"
LOG_CSV = "train_log.csv"
SUMMARY_JSON = "train_summary.json"
TENSORBOARD = "tensorboard"
RUN_JSON = "run.json"  # in each checkpoint: what must not change when resuming from it
SLURM_DIR = project_root() / "slurm"  # accelerate and DeepSpeed configs


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint is kept."""


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


# --------------------------------------------------------------------------- data


def preflight(p: TrainParams) -> tuple[Any, dict[str, datasets.Dataset], dict[str, np.ndarray]]:
    """Every check that can fail before training starts: device, kernels, tokenizer, data.

    :return: ``(tokenizer, datasets by split, sample lengths by split)``.
    """
    device = mmm_model.resolve_device(p.device)
    mmm_model.check_attn_implementation(p.attn_implementation, device)
    precision = mmm_model.resolve_precision(p.mixed_precision, device)
    if p.attn_implementation == "flash_attention_2" and precision == "no":
        raise ParamError("parameter `attn_implementation` 'flash_attention_2' needs mixed_precision bf16 or fp16")
    if p.use_deepspeed and importlib.util.find_spec("deepspeed") is None:
        raise ParamError("parameter `use_deepspeed` is true but deepspeed is not installed (pip install -e '.[gpu]')")
    tokenizer = mmm_model.load_tokenizer(p.tokenizer_path)
    splits, lengths = {}, {}
    for split in ("train", "valid"):
        splits[split] = load_token_split(p.tokens_dir, split)
        lengths[split] = check_token_dataset(splits[split], Path(p.tokens_dir) / split, len(tokenizer), p.max_seq_len)
    if len(splits["train"]) < p.batch_size * p.num_processes:
        raise ParamError(f"parameter `batch_size`: {len(splits['train'])} training samples cannot fill one batch "
                         f"of {p.batch_size} on each of {p.num_processes} process(es)")
    return tokenizer, splits, lengths


def micro_batches(ds: datasets.Dataset, lengths: np.ndarray, collator: MMMCollator, p: TrainParams,
                  state: TrainState, accelerator: Accelerator) -> Iterator[dict[str, torch.Tensor]]:
    """Endless training batches from ``state``'s position on; advances ``state`` as they are consumed."""
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
    """Mean loss per predicted token over the first ``max_batches`` batches of each process."""
    from torch.utils.data import DataLoader

    mine = list(range(accelerator.process_index, len(ds), accelerator.num_processes))
    batches = [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)][:max_batches]
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)  # loss sum, predicted tokens
    model.eval()
    for batch in DataLoader(ds, batch_sampler=batches, collate_fn=collator, generator=torch.Generator()):
        num_predicted = (batch["labels"][:, 1:] != IGNORE_INDEX).sum().item()  # the model shifts labels
        if num_predicted > 0:
            loss = model(**{k: v.to(accelerator.device) for k, v in batch.items()}).loss
            total += torch.stack([loss.double() * num_predicted, loss.new_tensor(num_predicted, dtype=torch.float64)])
    model.train()
    total = accelerator.reduce(total, "sum")
    return (total[0] / total[1]).item() if total[1] > 0 else float("nan")


# ----------------------------------------------------------------- checkpoints, logs


def checkpoint_dirs(model_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (staging ``tmp-*`` folders are never listed)."""
    root = Path(model_dir) / CHECKPOINTS
    found = [d for d in root.glob("step-*") if re.fullmatch(r"step-\d+", d.name)] if root.is_dir() else []
    return sorted(found, key=lambda d: int(d.name.split("-")[1]))


def save_checkpoint(accelerator: Accelerator, p: TrainParams, run_info: dict[str, Any], step: int) -> Path:
    """Write ``checkpoints/step-N`` atomically and keep only the last ``keep_checkpoints``."""
    root = Path(p.model_dir) / CHECKPOINTS
    staging, final = root / f"tmp-step-{step:08d}", root / f"step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / RUN_JSON).write_text(json.dumps(run_info, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)  # the rename is the commit: step-N is complete or absent
        for old in checkpoint_dirs(p.model_dir)[:-p.keep_checkpoints]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def start_or_resume(accelerator: Accelerator, p: TrainParams, run_info: dict[str, Any]) -> Path | None:
    """Load the latest checkpoint when ``resume`` (and one exists); else clear the old run's files."""
    model_dir = Path(p.model_dir)
    checkpoint = checkpoint_dirs(model_dir)[-1] if p.resume and checkpoint_dirs(model_dir) else None
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
    saved = json.loads((checkpoint / RUN_JSON).read_text())
    for name, value in run_info.items():
        if saved.get(name) != value:
            raise ParamError(f"cannot resume from {checkpoint}: `{name}` was {saved.get(name)!r}, now {value!r} "
                             "(set resume: false to start over, or use another model_dir)")
    accelerator.load_state(str(checkpoint))
    return checkpoint


class LossLog:
    """``train_log.csv`` (``step, split, loss``) and TensorBoard scalars; main process only.

    On resume from step N, rows after N (written by the interrupted run after its last
    checkpoint, and about to be redone) are dropped, and TensorBoard purges them too.
    """

    def __init__(self, model_dir: str | Path, start_step: int, enabled: bool) -> None:
        self.path, self.enabled, self.writer = Path(model_dir) / LOG_CSV, enabled, None
        if not enabled:
            return
        rows = []
        if self.path.exists() and start_step > 0:
            rows = [r for r in csv.DictReader(self.path.open()) if int(r["step"]) <= start_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", "split", "loss"])
            writer.writeheader()
            writer.writerows(rows)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(model_dir) / TENSORBOARD), purge_step=start_step + 1 if start_step else None)

    def loss(self, step: int, split: str, value: float) -> None:
        if self.enabled:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerow([step, split, f"{value:.6f}"])
            self.writer.add_scalar(f"loss/{split}", value, step)

    def scalar(self, name: str, value: float, step: int) -> None:
        if self.enabled:
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ----------------------------------------------------------------------- training


def make_optimizer(model: torch.nn.Module, p: TrainParams) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (decaying norms and biases only hurts)."""
    params = [q for q in model.parameters() if q.requires_grad]
    groups = [{"params": [q for q in params if q.dim() >= 2], "weight_decay": p.weight_decay},
              {"params": [q for q in params if q.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=p.learning_rate, betas=(p.adam_beta1, p.adam_beta2))


def make_accelerator(p: TrainParams) -> Accelerator:
    """The accelerator of this process (its distributed setup comes from ``accelerate launch``)."""
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
    run_info: dict[str, Any]


def setup(p: TrainParams) -> Session:
    """Check inputs, build model and optimizer, and resume from the latest checkpoint if asked."""
    from accelerate.utils import set_seed
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    accelerator = make_accelerator(p)
    tokenizer, splits, lengths = preflight(p)
    set_seed(p.seed)
    model = mmm_model.build_model(p.preset, tokenizer, p.max_seq_len, p.dropout, p.attn_implementation)
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
    run_info = {"preset": p.preset, "max_seq_len": p.max_seq_len, "vocab_size": len(tokenizer),
                "batch_size": p.batch_size, "num_processes": accelerator.num_processes, "seed": p.seed}
    checkpoint = start_or_resume(accelerator, p, run_info)
    accelerator.print(f"{p.preset}: {mmm_model.count_parameters(model):,} parameters, vocabulary {len(tokenizer)}; "
                      f"{len(splits['train']):,} train / {len(splits['valid']):,} valid samples; "
                      f"{accelerator.num_processes} process(es) on {accelerator.device}, precision "
                      f"{accelerator.mixed_precision}; " + (f"resumed from {checkpoint}" if checkpoint else "from scratch"))
    collator = MMMCollator(tokenizer.pad_token_id, pad_to_multiple_of=8, max_length=p.max_seq_len)
    forward = torch.compile(model) if p.use_compile else model
    return Session(p, accelerator, model, forward, optimizer, scheduler, state, collator, splits, lengths, run_info)


def train_step(s: Session, micro: list[dict[str, torch.Tensor]]) -> float:
    """One optimizer step over ``grad_accum_steps`` micro-batches; returns the mean loss."""
    losses = []
    for batch in micro:
        batch = {k: v.to(s.accelerator.device, non_blocking=True) for k, v in batch.items()}
        with s.accelerator.accumulate(s.model):
            loss = s.forward(**batch).loss
            num_bad = s.accelerator.reduce((~torch.isfinite(loss.detach())).float().reshape(1), "sum")
            if num_bad.item() > 0:  # checked before backward: the weights stay those of a finite loss
                last = checkpoint_dirs(s.p.model_dir)
                raise TrainingDiverged(
                    f"loss is {loss.item()} at step {s.state.step + 1}: training stopped; the last good "
                    f"checkpoint is {last[-1] if last else 'none (no checkpoint yet)'}. Lower learning_rate "
                    "or check the data, then rerun with resume: true")
            s.accelerator.backward(loss)
            if s.accelerator.sync_gradients:
                s.accelerator.clip_grad_norm_(s.model.parameters(), s.p.max_grad_norm)
            s.optimizer.step()
            s.optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach().float())
    s.scheduler.step()
    s.state.step += 1
    return s.accelerator.reduce(torch.stack(losses).mean(), "mean").item()


def validate(s: Session, log: LossLog) -> float:
    """Valid loss now, logged at the current step."""
    loss = evaluate(s.forward, s.splits["valid"], s.collator, s.p.batch_size, s.p.eval_max_batches, s.accelerator)
    log.loss(s.state.step, "valid", loss)
    s.accelerator.print(f"step {s.state.step}/{s.p.max_steps}  valid loss {loss:.4f}")
    return loss


def loop(s: Session, log: LossLog) -> float:
    """Train from ``s.state`` up to ``max_steps``: log, evaluate and checkpoint on schedule.

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
        (Path(p.model_dir) / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
        accelerator.print(f"saved {p.model_dir}: valid loss {summary['initial_valid_loss']:.4f} -> "
                          f"{summary['final_valid_loss']:.4f} (perplexity {summary['final_valid_perplexity']:.2f})")
    accelerator.wait_for_everyone()
    return summary


# ------------------------------------------------------------------ launch, results


def uses_launcher(p: TrainParams) -> bool:
    """Whether :func:`run` goes through ``accelerate launch`` rather than this process."""
    return p.launcher == "accelerate" or (p.launcher == "auto" and p.num_processes > 1)


def launch_command(p: TrainParams, params_path: str | Path) -> list[str]:
    """The ``accelerate launch`` command (wrapped in ``srun`` on several nodes) for ``params_path``."""
    device = mmm_model.resolve_device(p.device)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(p.num_processes),
           "--num_machines", str(p.num_machines), "--mixed_precision",
           mmm_model.resolve_precision(p.mixed_precision, device), "--dynamo_backend", "no"]
    if device.type == "cpu":
        # several CPU processes: torchrun (--multi_gpu) starts them and each joins a gloo group
        cmd += ["--multi_gpu"] if p.num_processes > 1 else ["--cpu"]
    elif p.use_deepspeed:
        cmd += ["--config_file", str(SLURM_DIR / "accelerate_ds_zero2.yaml"),
                "--deepspeed_config_file", str(SLURM_DIR / "ds_zero2.json")]
    elif p.num_processes > 1:
        cmd += ["--config_file", str(SLURM_DIR / "accelerate_multi_gpu.yaml")]
    if p.num_machines > 1:  # expanded by bash on each node: srun sets SLURM_NODEID, the sbatch MASTER_*
        cmd += ["--machine_rank", "$SLURM_NODEID", "--main_process_ip", "$MASTER_ADDR",
                "--main_process_port", "$MASTER_PORT", "--rdzv_backend", "c10d"]
    cmd += ["-m", "mmmlib.training.trainer", "--params", str(params_path)]
    if p.num_machines > 1:
        inner = " ".join(a if a.startswith("$") else shlex.quote(a) for a in cmd)
        cmd = ["srun", f"--nodes={p.num_machines}", "--ntasks-per-node=1", "bash", "-c", inner]
    return cmd


def launch(p: TrainParams) -> dict[str, Any]:
    """Run training through ``accelerate launch``, streaming its output (also to ``launch.log``)."""
    params_path = p.save(p.model_dir).resolve()
    cmd = launch_command(p, params_path)
    print("$ " + shlex.join(cmd), flush=True)
    tail: deque[str] = deque(maxlen=30)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc,
          (Path(p.model_dir) / "launch.log").open("w") as log_file):
        for line in proc.stdout:
            print(line, end="", flush=True)
            log_file.write(line)
            tail.append(line)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed (exit code {proc.returncode}); last lines:\n{''.join(tail)}")
    return summarize(p.model_dir)


def run(p: TrainParams) -> dict[str, Any]:
    """Train as ``p`` says, in this process or through ``accelerate launch``; return the summary."""
    if not uses_launcher(p):
        return train(p)
    preflight(p)  # bad inputs fail here, not in N subprocesses
    return launch(p)


def summarize(model_dir: str | Path) -> dict[str, Any]:
    """The summary a finished run wrote (``train_summary.json``)."""
    return json.loads((Path(model_dir) / SUMMARY_JSON).read_text())


def read_log(model_dir: str | Path) -> pd.DataFrame:
    """``train_log.csv`` as a table (columns ``step, split, loss``)."""
    import pandas as pd

    return pd.read_csv(Path(model_dir) / LOG_CSV)


def plot_loss_curves(log: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Train and valid loss against step (seaborn), saved as PNG when ``path`` is given."""

    # (no backend forced: scripts fall back to Agg without a display, notebooks stay inline)
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=log, x="step", y="loss", hue="split", hue_order=["train", "valid"], marker="o", markersize=3, ax=ax)
    ax.set(title="Loss per predicted token", ylabel="cross-entropy (nats)")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def main(argv: list[str] | None = None) -> None:
    """``python -m mmmlib.training.trainer --params params.json``: the entry that ``accelerate launch`` runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params.json written by 03_train (all TrainParams fields)")
    args = parser.parse_args(argv)
    values = json.loads(Path(args.params).read_text())
    values.pop("stage", None)
    train(TrainParams(**values))


if __name__ == "__main__":
    main()
