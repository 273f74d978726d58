"""The slurm/*.sbatch scripts, as they are, on a private single-node SLURM cluster (marker ``slurm``).

The cluster (:mod:`tests.slurm_cluster`) needs root and Debian's ``slurmctld slurmd slurm-client munge``
(``.ci/run`` installs them); elsewhere these tests skip and say why. The stages run as one chain on tiny
parameters, each submitted the way the README shows, with the small-node overrides a user would type:
01 prepares a 9-file corpus as 3 shards plus the merge, 02 trains BPE then tokenizes 2 shards plus the
merge, 03 trains on those tokens on the CPU and is requeued mid-run, 04 generates with that model as 2
ranks while 05 evaluates (during and after). Each test compares with a one-process run or counts rows.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from tests.slurm_cluster import FINISHED, REPO_ROOT, Cluster, unavailable_reason

JOB_TIMEOUT_S = 150  # per stage; the stages take 10-40 s on 2 idle cores
NOTEBOOKS = REPO_ROOT / "notebooks"
# The test node has 2 cores and no GPU: every job overrides the cluster defaults of its #SBATCH lines.
SMALL_NODE = ["--cpus-per-task=1", "--mem=2G", "--time=10"]
NUM_TRAIN_STEPS = 120  # about 20 steps/s on one core: the requeue at step 10 comes mid-run
SWEEP_IDS = ["nocontrol_00000", *(f"nomml{level:02d}_00000" for level in range(13))]  # NOMML -2, 1 per level


@pytest.fixture(scope="session")
def cluster():
    """munged, slurmctld and slurmd for this session; stopped by pid, their folder removed."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="mmm-slurm-"))
    running = Cluster(root)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        leftovers = running.leftover_processes()
        shutil.rmtree(root, ignore_errors=True)
    assert not leftovers, f"processes of the test cluster still running: {leftovers}"


def job_env(logs: Path, **extra: str) -> dict[str, str]:
    """What a user exports before ``sbatch``: the interpreter, and options of the jobs the scripts submit."""
    logs.mkdir(parents=True, exist_ok=True)
    return {"MMMLIB_PYTHON": sys.executable, "MMMLIB_LOG_DIR": str(logs), "MMMLIB_SBATCH_ARGS": " ".join(SMALL_NODE),
            "OMP_NUM_THREADS": "1", **extra}


def names_and_states(jobs: list[dict[str, str]]) -> list[tuple[str, str]]:
    return sorted((j["JobName"], j["JobState"]) for j in jobs)


def sorted_frame(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys, kind="mergesort").reset_index(drop=True)


# --------------------------------------------------------------------------- the chain of stages
@pytest.fixture(scope="module")
def prep(cluster, tmp_path_factory):
    """01 as ``sbatch --array=0-2``: 8 synthetic files and a broken one; task 0 queues the merge.

    The one-process run (what the notebook does with one shard) is computed while the jobs run.
    """
    from mmmlib import data
    from mmmlib.core.params import notebook_parameters

    root = tmp_path_factory.mktemp("slurm01")
    corpus, out, logs = root / "corpus", root / "data", root / "logs"
    data.write_corpus(corpus, num_files=8, seed=2)  # seed 2: 5 train, 1 valid, 2 test files
    (corpus / "broken.mid").write_bytes(b"MThd garbage")
    since = cluster.last_job_id()
    cluster.sbatch("--array=0-2", *SMALL_NODE, f"--output={logs}/%x-%A_%a.out", "slurm/01_data_prep.sbatch",
                   str(corpus), str(out), env=job_env(logs))
    defaults = notebook_parameters(NOTEBOOKS / "01_data_prep.ipynb")
    whole = data.prepare(data.list_sources(corpus), min_bars=defaults["min_bars"], max_notes=defaults["max_notes"],
                         workers=1, seed=defaults["seed"])
    cluster.wait_idle(JOB_TIMEOUT_S)
    return SimpleNamespace(corpus=corpus, out=out, whole=whole, jobs=cluster.assert_all_completed(since))


@pytest.fixture(scope="module")
def tokens_run(cluster, prep, tmp_path_factory):
    """02 as ``sbatch slurm/02_bpe.sbatch DATA OUT 2`` with a tiny parameters file.

    The one-process run (what the notebook does with step=all, on the same parameters file) is
    computed while the jobs run.
    """
    from mmmlib import tokens
    from mmmlib.core.params import notebook_parameters

    root = tmp_path_factory.mktemp("slurm02")
    params, out, whole, logs = root / "02_tokenizer.yaml", root / "run", root / "whole", root / "logs"
    params.write_text(yaml.safe_dump({"vocab_size": 950, "bpe_max_files": 100, "max_seq_len": 256, "augment": False,
                                      "roundtrip_files": 0, "make_figures": False}))
    since = cluster.last_job_id()
    cluster.sbatch(*SMALL_NODE, f"--output={logs}/%x-%j.out", "slurm/02_bpe.sbatch", str(prep.out), str(out), "2",
                   env=job_env(logs, PARAMS=str(params)))
    p = tokens.TokenizerParams(**{**notebook_parameters(NOTEBOOKS / "02_tokenizer.ipynb"),
                                  **yaml.safe_load(params.read_text()), "data_dir": str(prep.out),
                                  "output_dir": str(whole)})
    tasks = tokens.tasks_of(p.data_dir)
    tokens.tokenizer_step(p, tasks)  # what the notebook's step=all does, in the notebook's default dialect
    tokens.build_splits(p.tokenizer_path, tasks, tokens.tokens_dir(whole), p.sample_options(), p.seed,
                        p.augment_copies if p.augment else 0, p.workers)
    cluster.wait_idle(JOB_TIMEOUT_S)
    return SimpleNamespace(out=out, whole=whole, jobs=cluster.assert_all_completed(since))


@pytest.fixture(scope="module")
def train_run(cluster, tokens_run, tmp_path_factory):
    """03 on the CPU, ``scontrol requeue``d once its first checkpoint exists; SLURM reruns it."""
    root = tmp_path_factory.mktemp("slurm03")
    params, model_dir, logs = root / "03_train.yaml", root / "model", root / "logs"
    params.write_text(yaml.safe_dump({
        "model_dir": str(model_dir), "tokenizer_path": str(tokens_run.out / "tokenizer.json"),
        "tokens_dir": str(tokens_run.out / "tokens"), "preset": "tiny", "max_seq_len": 256, "batch_size": 2,
        "grad_accum_steps": 1, "max_steps": NUM_TRAIN_STEPS, "learning_rate": 0.003, "warmup_steps": 2,
        "log_every_steps": 1, "eval_every_steps": 40, "eval_max_batches": 1, "save_every_steps": 10,
        "num_workers": 0}))
    since = cluster.last_job_id()
    job = cluster.sbatch("--gpus-per-node=0", *SMALL_NODE, f"--output={logs}/%x-%j.out", "slurm/03_train.sbatch",
                         env=job_env(logs, PARAMS=str(params), RUN_DIR=str(root / "run"), MMMLIB_DEVICE="cpu"))
    # Requeued at its first checkpoint: the remaining 110 steps take seconds, the requeue milliseconds.
    # (`scontrol suspend` cannot pause it here: proctrack/linuxproc misses the notebook's kernel, which
    # runs in a session of its own.)
    checkpoints = model_dir / "checkpoints"  # step-N once complete (written as tmp-step-N, then renamed)
    cluster.wait_for(lambda: checkpoints.is_dir() and any(checkpoints.glob("step-*")), JOB_TIMEOUT_S,
                     "first checkpoint of 03", poll_s=0.05)
    requeued_at = time.time()
    cluster.scontrol("requeue", str(job))
    cluster.wait_for(lambda: cluster.job(job).get("JobState") == "PENDING", JOB_TIMEOUT_S, "03 back in the queue")
    # Rerun it now rather than after the requeue delay, but not within the second of the requeue:
    # slurmd refuses a credential as old as its revocation (whole seconds).
    time.sleep(max(0.0, math.floor(requeued_at) + 2 - time.time()))
    cluster.scontrol("update", f"jobid={job}", "StartTime=now")
    cluster.wait_idle(JOB_TIMEOUT_S)
    return SimpleNamespace(model_dir=model_dir, executed=root / "run" / "03_train.ipynb", job=cluster.job(job),
                           jobs=cluster.assert_all_completed(since))


@pytest.fixture(scope="module")
def generate_run(cluster, prep, train_run, tmp_path_factory):
    """04 as an array of 2 ranks with 05 between them: rank 0, then 05, then rank 1, then 05 (afterok).

    The array is submitted held and its ranks released one at a time, so the first 05 merges while
    the array is half written (a tiny model writes a rank's loops faster than 05 starts).
    """
    root = tmp_path_factory.mktemp("slurm04")
    out, logs = root / "generate", root / "logs"
    since = cluster.last_job_id()
    gen_env = job_env(logs, MMMLIB_DEVICE="cpu", BATCH="1",
                      EXTRA_PARAMS="-p n_tracks 1 -p num_bars 1 -p max_tokens_per_bar 24 -p max_attempts 1 "
                                   "-p num_threads 1 -p num_plots 0")
    array = cluster.sbatch("--array=0-1", "--hold", "--gres=none", *SMALL_NODE, f"--output={logs}/%x-%A_%a.out",
                           "slurm/04_generate.sbatch", str(train_run.model_dir), str(out), "sweep", "-2", "1",
                           env=gen_env)
    eval_env = job_env(logs, EXTRA_PARAMS="-p bootstrap 20 -p max_reference_files 4 -p num_audio 0")

    def evaluate(name: str, *options: str) -> int:
        return cluster.sbatch(*options, *SMALL_NODE, f"--output={logs}/%x-%j.out", "slurm/05_evaluate.sbatch",
                              str(out), "sweep", str(prep.out), str(root / name), env=eval_env)

    def wait_finished(job: int | str, what: str) -> None:
        cluster.wait_for(lambda: cluster.job(job).get("JobState") in FINISHED, JOB_TIMEOUT_S, what)

    cluster.scontrol("release", f"{array}_0")
    wait_finished(f"{array}_0", "rank 0")
    wait_finished(evaluate("evaluate_during"), "05 while rank 1 waits")
    cluster.scontrol("release", f"{array}_1")
    evaluate("evaluate_after", f"--dependency=afterok:{array}")
    cluster.wait_idle(JOB_TIMEOUT_S)
    return SimpleNamespace(label_dir=out / "sweep", root=root, jobs=cluster.assert_all_completed(since))


def read_steps(log_csv: Path, split: str) -> list[int]:
    """The steps of ``split`` rows in a ``train_log.csv``, in file order."""
    with log_csv.open() as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row["split"] == split]


def complete_gen_ids(results_csv: Path) -> set[str]:
    """gen_ids with a complete line in a RESULTS file a rank may be writing."""
    text = results_csv.read_text()
    lines = text[: text.rfind("\n") + 1].splitlines()
    return {row["gen_id"] for row in csv.DictReader(lines)}


# --------------------------------------------------------------------------- 01
@pytest.mark.slurm
def test_01_array_and_merge_equal_one_process(prep):
    from mmmlib import data

    assert names_and_states(prep.jobs) == [("mmm-01-data", "COMPLETED")] * 3 + [("mmm-01-merge", "COMPLETED")]
    tasks = [j for j in prep.jobs if j["JobName"] == "mmm-01-data"]
    merge = next(j for j in prep.jobs if j["JobName"] == "mmm-01-merge")
    assert sorted(j["ArrayTaskId"] for j in tasks) == ["0", "1", "2"]
    assert all(merge["StartTime"] >= j["EndTime"] for j in tasks), "the merge waits for every shard (afterok)"
    for i in range(3):  # every task took its own third of the 9 inputs
        assert data.read_result(data.shard_dir(prep.out, i)).num_inputs == 3, f"shard {i}"
    merged = data.read_result(prep.out)
    assert merged.counts() == prep.whole.counts() == {"inputs": 9, "accepted": 8, "rejected": 1}
    for name, keys in (("files", ["md5"]), ("tracks", ["md5", "track_idx"]),
                       ("loops", ["md5", "track_idx", "start_tick", "end_tick"]), ("rejects", ["path"])):
        pd.testing.assert_frame_equal(sorted_frame(getattr(merged, name), keys),
                                      sorted_frame(getattr(prep.whole, name), keys), obj=name)
    assert (prep.out / "figures" / "nomml_histogram.png").stat().st_size > 1000  # drawn by the merge job


# --------------------------------------------------------------------------- 02
@pytest.mark.slurm
def test_02_bpe_then_shards_equal_one_process(tokens_run):
    from mmmlib import tokens

    assert names_and_states(tokens_run.jobs) == [("mmm-02-bpe", "COMPLETED"), ("mmm-02-merge", "COMPLETED")] + \
        [("mmm-02-tok", "COMPLETED")] * 2
    bpe = next(j for j in tokens_run.jobs if j["JobName"] == "mmm-02-bpe")
    shards = [j for j in tokens_run.jobs if j["JobName"] == "mmm-02-tok"]
    merge = next(j for j in tokens_run.jobs if j["JobName"] == "mmm-02-merge")
    assert sorted(j["ArrayTaskId"] for j in shards) == ["0", "1"]
    assert all(bpe["EndTime"] >= j["SubmitTime"] >= bpe["StartTime"] for j in shards), "the BPE job submits them"
    assert all(merge["StartTime"] >= j["EndTime"] for j in shards), "the merge waits for every shard (afterok)"
    frozen = tokens.tokenizer_sha256(tokens_run.out / "tokenizer.json")
    for i in range(2):
        build = json.loads((tokens.tokens_dir(tokens_run.out, i, 2) / "build.json").read_text())
        assert build["tokenizer_sha256"] == frozen, f"shard {i} used the frozen tokenizer"
    assert tokens.tokenizer_sha256(tokens_run.whole / "tokenizer.json") == frozen, "same BPE as one process"
    sizes = {}
    for split in tokens.SPLITS:  # a split of 8 files may be empty (md5 splits); every split must still agree
        merged, whole = tokens.load_tokens(tokens_run.out, split), tokens.load_tokens(tokens_run.whole, split)
        sizes[split] = len(whole)
        assert merged["input_ids"] == whole["input_ids"], split
        assert merged.to_dict() == whole.to_dict(), split  # every column, in the same order
    assert sizes["train"] > 0 and sum(sizes.values()) > sizes["train"], sizes  # not a comparison of nothing


# --------------------------------------------------------------------------- 03
@pytest.mark.slurm
def test_03_requeued_mid_run_resumes_from_its_checkpoint(train_run):
    assert train_run.job["Restarts"] == "1" and train_run.job["JobState"] == "COMPLETED"
    log = (train_run.model_dir.parent / "logs" / f"mmm-03-train-{train_run.job['JobId']}.out").read_text()
    assert "DUE TO JOB REQUEUE" in log and "(restart 1)" in log, "requeued and rerun; the log keeps both runs"
    resumed = re.findall(r"resumed from \S*step-0*(\d+)", train_run.executed.read_text())
    assert len(resumed) == 1, "the rerun resumed from a checkpoint"
    assert 10 <= int(resumed[0]) < NUM_TRAIN_STEPS, "from a checkpoint of the interrupted run, not the last one"
    train_steps = read_steps(train_run.model_dir / "train_log.csv", "train")
    assert train_steps == list(range(1, NUM_TRAIN_STEPS + 1)), "no gap, no duplicate step"
    valid_steps = read_steps(train_run.model_dir / "train_log.csv", "valid")
    assert len(valid_steps) == len(set(valid_steps)) and valid_steps == sorted(valid_steps)
    assert set(valid_steps) == {0, 40, 80, 120}
    summary = json.loads((train_run.model_dir / "train_summary.json").read_text())
    assert summary["step"] == NUM_TRAIN_STEPS
    assert (train_run.model_dir / "model.safetensors").is_file()


# --------------------------------------------------------------------------- 04 + 05
@pytest.mark.slurm
def test_04_ranks_and_05_during_and_after_count_each_generation_once(generate_run):
    assert names_and_states(generate_run.jobs) == [("mmm-04-generate", "COMPLETED")] * 2 + \
        [("mmm-05-eval", "COMPLETED")] * 2
    per_rank = [complete_gen_ids(generate_run.label_dir / f"RESULTS_{rank}.csv") for rank in (0, 1)]
    assert not per_rank[0] & per_rank[1], "ranks never share a generation"
    assert per_rank[0] | per_rank[1] == set(SWEEP_IDS)
    # one row per generation (1 track, 1 attempt): rows == generations means nothing was counted twice
    counts = {name: evaluated_counts(generate_run.root / name) for name in ("evaluate_during", "evaluate_after")}
    assert counts["evaluate_during"] == (len(per_rank[0]), len(per_rank[0])), "05 while rank 1 had not run"
    assert counts["evaluate_after"] == (len(SWEEP_IDS), len(SWEEP_IDS))
    merged = pd.read_csv(generate_run.label_dir / "RESULTS.csv", dtype=str)
    assert sorted(merged["gen_id"]) == sorted(SWEEP_IDS), "every generation exactly once"
    for name in ("evaluate_during", "evaluate_after"):
        assert "Verdict" in (generate_run.root / name / "report.html").read_text(), name


def evaluated_counts(output_dir: Path) -> tuple[int, int]:
    """(result rows, generations) that an executed 05 notebook reports; its summary must agree."""
    executed = (output_dir / "05_evaluate.ipynb").read_text()
    rows, generations = map(int, re.search(r"(\d+) result rows, (\d+) generations", executed).groups())
    assert json.loads((output_dir / "summary.json").read_text())["num_generations"] == generations
    return rows, generations


# --------------------------------------------------------------------------- the environment (no SLURM needed)
def source_env(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``source slurm/env.sh`` from the repository root, as every script does, and print its choices."""
    script = 'set -euo pipefail; source slurm/env.sh; echo "PYTHON=${PYTHON}"; echo "LOG_DIR=${LOG_DIR}"'
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MMMLIB_", "SLURM_", "VIRTUAL_ENV"))}
    return subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**clean, "MMMLIB_LOG_DIR": str(tmp_path / "logs"), **env})


def test_env_uses_mmmlib_python_or_a_venv_and_refuses_one_without_mmmlib(tmp_path):
    chosen = source_env(tmp_path, MMMLIB_PYTHON=sys.executable)
    assert chosen.returncode == 0, chosen.stderr
    assert f"PYTHON={sys.executable}" in chosen.stdout and (tmp_path / "logs").is_dir()

    venv = tmp_path / "venv"  # a stand-in venv: its python runs this interpreter, its activate leaves a mark
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    (venv / "bin" / "activate").write_text(f'export PATH="{venv / "bin"}:$PATH"\necho activated\n')
    chosen = source_env(tmp_path, MMMLIB_VENV=str(venv))
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.startswith("activated") and f"PYTHON={sys.executable}" in chosen.stdout

    bare = tmp_path / "bare-python"
    bare.write_text("#!/bin/sh\nexit 1\n")
    bare.chmod(0o755)
    refused = source_env(tmp_path, MMMLIB_PYTHON=str(bare))
    assert refused.returncode == 1 and "cannot import mmmlib" in refused.stderr
