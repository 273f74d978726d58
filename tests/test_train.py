"""Training: resume after a kill, NaN stop, early errors, the accelerate launch path, 03 via papermill."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import miditok
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from mmmlib.core.params import ParamError, notebook_parameters
from mmmlib.training import trainer as train
from mmmlib.training.model import load_tokenizer
from mmmlib.training.params import TrainParams

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_train.ipynb"
FEATURES = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                              "loss_mask": datasets.Sequence(datasets.Value("int8"))})


def write_tokens(folder: Path, num_train: int = 48, num_valid: int = 16, max_id: int = 200) -> None:
    """Token datasets like 02_tokenize's: repeated motifs, two unpredicted control tokens each."""
    rng = np.random.default_rng(0)
    for split, num in (("train", num_train), ("valid", num_valid)):
        ids, masks = [], []
        for _ in range(num):
            length = int(rng.integers(16, 48))
            ids.append(np.resize(rng.integers(10, max_id, 4), length).tolist())
            masks.append([0, 0] + [1] * (length - 2))
        datasets.Dataset.from_dict({"input_ids": ids, "loss_mask": masks}, features=FEATURES).save_to_disk(
            str(folder / split))


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("toy")
    miditok.MMM(miditok.TokenizerConfig(base_tokenizer="REMI")).save(folder / "tokenizer.json")
    write_tokens(folder / "tokens")
    return {"tokenizer_path": str(folder / "tokenizer.json"), "tokens_dir": str(folder / "tokens")}


def notebook_defaults() -> dict:
    """The literals of 03_train's parameters cell: the tests start from what users get."""
    return notebook_parameters(NOTEBOOK)


def tiny_params(model_dir: Path, toy: dict[str, str], **overrides) -> TrainParams:
    values = {**notebook_defaults(), **toy, "model_dir": str(model_dir), "preset": "tiny", "max_seq_len": 64,
              "device": "cpu", "batch_size": 4, "grad_accum_steps": 1, "max_steps": 6, "learning_rate": 2e-3,
              "warmup_steps": 2, "log_every_steps": 1, "eval_every_steps": 3, "eval_max_batches": 2,
              "save_every_steps": 3, "resume": False, "num_workers": 0}
    return TrainParams(**{**values, **overrides})


def test_papermill_sees_every_parameter():
    from papermill.translators import PythonTranslator

    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert [p.name for p in PythonTranslator.inspect(cell)] == TrainParams.names()


def test_resume_after_a_kill_continues_like_an_uninterrupted_run(tmp_path, toy, monkeypatch):
    # dropout on: the next-step losses only match if the RNG state is restored too
    straight = tiny_params(tmp_path / "straight", toy, dropout=0.1)
    train.run(straight)
    killed = tiny_params(tmp_path / "killed", toy, dropout=0.1)
    real_step, calls = train.train_step, []

    def step_then_die(*args):
        calls.append(1)
        if len(calls) == 5:  # during step 5; the last checkpoint is step 3
            raise KeyboardInterrupt("simulated kill")
        return real_step(*args)

    monkeypatch.setattr(train, "train_step", step_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.run(killed)
    monkeypatch.setattr(train, "train_step", real_step)
    (Path(killed.model_dir) / "checkpoints" / "tmp-step-00000005").mkdir()  # a save cut short
    assert [d.name for d in train.checkpoint_dirs(killed.model_dir)] == ["step-00000003"]

    resumed = tiny_params(tmp_path / "killed", toy, dropout=0.1, resume=True)
    summary = train.run(resumed)
    assert summary["step"] == 6
    expected, got = train.read_log(straight.model_dir), train.read_log(resumed.model_dir)
    assert got["step"].tolist() == expected["step"].tolist(), "each step logged once, from 1 to 6"
    np.testing.assert_array_equal(got["loss"].to_numpy(), expected["loss"].to_numpy())
    assert not list((Path(resumed.model_dir) / "checkpoints").glob("tmp-*"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, toy, monkeypatch):
    real_build = train.mmm_model.build_model

    def build_then_break(*args, **kwargs):
        model = real_build(*args, **kwargs)
        calls = []

        def poison(module, inputs, output):  # the 5th training forward (step 5) returns NaN
            calls.append(module.training)
            return output * float("nan") if sum(calls) == 5 and module.training else output

        model.lm_head.register_forward_hook(poison)
        return model

    monkeypatch.setattr(train.mmm_model, "build_model", build_then_break)
    p = tiny_params(tmp_path / "model", toy)
    with pytest.raises(train.TrainingDiverged, match="loss is nan at step 5.*step-00000003"):
        train.run(p)
    assert [d.name for d in train.checkpoint_dirs(p.model_dir)] == ["step-00000003"]
    log = train.read_log(p.model_dir)
    assert log["loss"].notna().all() and log["step"].max() == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tokenizer_path": "/nowhere/tokenizer.json"}, "tokenizer_path` is not a file"),
        ({"tokens_dir": "/nowhere/tokens"}, "tokens_dir` has no train/ dataset"),
        ({"max_seq_len": 20}, "max_seq_len` \\(20\\) is shorter than the longest sample"),
        ({"preset": "gpt5"}, "preset` must be one of"),
        ({"device": "cuda"}, "no CUDA GPU is visible"),
        ({"attn_implementation": "flash_attention_2"}, "flash_attention_2' needs a CUDA GPU"),
        ({"batch_size": 64}, "cannot fill one batch"),
    ],
)
def test_bad_settings_fail_before_training(tmp_path, toy, overrides, message):
    if overrides.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ParamError, match=message):
        train.run(tiny_params(tmp_path / "model", toy, **overrides))
    assert not (tmp_path / "model" / "checkpoints").exists()


def test_tokens_from_another_tokenizer_are_rejected(tmp_path, toy):
    vocab_size = len(load_tokenizer(toy["tokenizer_path"]))
    write_tokens(tmp_path / "tokens", num_train=8, num_valid=4, max_id=vocab_size + 50)
    p = tiny_params(tmp_path / "model", {**toy, "tokens_dir": str(tmp_path / "tokens")})
    with pytest.raises(ParamError, match="made with another tokenizer"):
        train.run(p)


def test_notebook_runs_with_papermill_through_accelerate_launch(tmp_path, toy):
    # one test for both paths that start Python processes (each costs seconds of imports):
    # the notebook under papermill, and `accelerate launch` with one CPU process inside it
    import papermill

    model_dir = tmp_path / "model"
    overrides = {**toy, "model_dir": str(model_dir), "preset": "tiny", "max_seq_len": 64, "device": "cpu",
                 "batch_size": 4, "grad_accum_steps": 1, "max_steps": 8, "learning_rate": 0.003, "warmup_steps": 2,
                 "log_every_steps": 2, "eval_every_steps": 4, "eval_max_batches": 2, "save_every_steps": 4,
                 "num_workers": 0, "launcher": "accelerate"}
    assert "accelerate.commands.launch" in train.launch_command(TrainParams(**{**notebook_defaults(), **overrides}),
                                                                "params.json")
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "03_train.ipynb"), parameters=overrides,
                               kernel_name="python3", progress_bar=False)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "params.json", "train_summary.json",
                 "figures/loss.png", "checkpoints/step-00000008", "launch.log"):
        assert (model_dir / name).exists(), name
    assert "step 8/8" in (model_dir / "launch.log").read_text(), "the launched process trained"
    assert json.loads((model_dir / "params.json").read_text())["max_steps"] == 8
    log = pd.read_csv(model_dir / "train_log.csv")
    assert list(log.columns) == ["step", "split", "loss"] and set(log["split"]) == {"train", "valid"}
    valid = log[log["split"] == "valid"]["loss"].to_numpy()
    assert valid[-1] < valid[0]
    assert list((model_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_multi_node_launch_goes_through_srun(tmp_path, toy):
    p = tiny_params(tmp_path / "model", toy, launcher="accelerate", num_processes=8, num_machines=2)
    cmd = train.launch_command(p, "/runs/model/params.json")
    assert cmd[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "bash"]
    inner = cmd[-1]  # expanded by bash on each node: the variables must stay unquoted
    assert "--machine_rank $SLURM_NODEID" in inner and "--main_process_ip $MASTER_ADDR" in inner
    assert "--num_processes 8 --num_machines 2" in inner and inner.endswith("--params /runs/model/params.json")
