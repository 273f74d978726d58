"""Start training: in this process, or as several processes through ``accelerate launch``.

:func:`run` is what ``03_train.ipynb`` calls. With one process it runs
:func:`mmmlib.training.trainer.train` in the notebook's own process; with several (GPUs,
nodes) it starts ``accelerate launch -m mmmlib.training --params model_dir/params.json``
(through ``srun`` on several nodes) and streams its log. The accelerate and DeepSpeed configs
it passes are package data (``mmmlib/training/configs/``), so an installed package finds them.
"""

from __future__ import annotations

import importlib.resources
import os
import shlex
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

from mmmlib.training import model as mmm_model
from mmmlib.training.checkpoints import check_resumable, checkpoint_dirs, run_info
from mmmlib.training.logs import summarize
from mmmlib.training.params import TrainParams
from mmmlib.training.trainer import preflight, train

CONFIGS = "configs"  # package data of mmmlib.training: accelerate yaml and DeepSpeed json


def config_file(name: str) -> Path:
    """A packaged accelerate or DeepSpeed config (``mmmlib/training/configs/name``) as a file path.

    :param name: e.g. ``"accelerate_multi_gpu.yaml"``.
    :return: its path.
    :raise FileNotFoundError: when the package was installed without it.
    """
    resource = importlib.resources.files("mmmlib.training") / CONFIGS / name
    # accelerate reads it by path in another process, so it must be a real file (pip unpacks packages)
    if not isinstance(resource, Path) or not resource.is_file():
        raise FileNotFoundError(f"{name} is not installed with mmmlib.training ({resource}): reinstall mmmlib")
    return resource


def uses_launcher(p: TrainParams) -> bool:
    """Whether :func:`run` goes through ``accelerate launch`` rather than this process.

    :param p: the run's parameters (``launcher``, ``num_processes``).
    :return: ``True`` for ``accelerate launch``.
    """
    return p.launcher == "accelerate" or (p.launcher == "auto" and p.num_processes > 1)


def launch_command(p: TrainParams, params_path: str | Path) -> list[str]:
    """The ``accelerate launch`` command (wrapped in ``srun`` on several nodes) for ``params_path``.

    :param p: the run's parameters.
    :param params_path: the ``params.json`` each process reads.
    :return: the command, one argument per item.
    """
    device = mmm_model.resolve_device(p.device)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(p.num_processes),
           "--num_machines", str(p.num_machines), "--mixed_precision",
           mmm_model.resolve_precision(p.mixed_precision, device), "--dynamo_backend", "no"]
    if device.type == "cpu":
        # several CPU processes: torchrun (--multi_gpu) starts them and each joins a gloo group
        cmd += ["--multi_gpu"] if p.num_processes > 1 else ["--cpu"]
    elif p.use_deepspeed:
        cmd += ["--config_file", str(config_file("accelerate_ds_zero2.yaml")),
                "--deepspeed_config_file", str(config_file("ds_zero2.json"))]
    elif p.num_processes > 1:
        cmd += ["--config_file", str(config_file("accelerate_multi_gpu.yaml"))]
    if p.num_machines > 1:  # expanded by bash on each node: srun sets SLURM_NODEID, the sbatch MASTER_*
        cmd += ["--machine_rank", "$SLURM_NODEID", "--main_process_ip", "$MASTER_ADDR",
                "--main_process_port", "$MASTER_PORT", "--rdzv_backend", "c10d"]
    cmd += ["-m", "mmmlib.training", "--params", str(params_path)]  # runs mmmlib/training/__main__.py
    if p.num_machines > 1:
        inner = " ".join(a if a.startswith("$") else shlex.quote(a) for a in cmd)
        cmd = ["srun", f"--nodes={p.num_machines}", "--ntasks-per-node=1", "bash", "-c", inner]
    return cmd


def launch(p: TrainParams) -> dict[str, Any]:
    """Run training through ``accelerate launch``, streaming its output (also to ``launch.log``).

    :param p: the run's parameters (saved as ``model_dir/params.json`` for the processes).
    :return: the summary the run wrote.
    :raise RuntimeError: when the launched processes fail (with the last lines of their log).
    """
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
    """Train as ``p`` says, in this process or through ``accelerate launch``; return the summary.

    :param p: the 03 notebook's parameters.
    :return: the summary also written to ``model_dir/train_summary.json``.
    :raise ParamError: naming the notebook parameter when a setting cannot work (checked
        before training starts), or when resuming would change a setting of the checkpoint.
    """
    with p.param_errors():
        if not uses_launcher(p):
            return train(p)
        # bad inputs, or a resume that changes the run, fail here rather than in N subprocesses
        tokenizer, _, _ = preflight(p)
        if p.resume and checkpoint_dirs(p.model_dir):
            check_resumable(checkpoint_dirs(p.model_dir)[-1], run_info(p, len(tokenizer), p.num_processes))
    return launch(p)
