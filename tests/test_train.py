"""Training: resume after a kill, resume refusing changed settings, gradient accumulation, NaN stop,
early errors, the accelerate launch path and its packaged configs, 03 via papermill."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import miditok
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from mmmlib import training
from mmmlib.core.errors import ConfigError
from mmmlib.core.params import ParamError, notebook_parameters
from mmmlib.training import TrainParams, trainer
from mmmlib.training import model as mmm_model  # modules (model, trainer): for patching what the loop calls

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
    training.run(straight)
    killed = tiny_params(tmp_path / "killed", toy, dropout=0.1)
    real_step, calls = trainer.train_step, []

    def step_then_die(*args):
        calls.append(1)
        if len(calls) == 5:  # during step 5; the last checkpoint is step 3
            raise KeyboardInterrupt("simulated kill")
        return real_step(*args)

    monkeypatch.setattr(trainer, "train_step", step_then_die)
    with pytest.raises(KeyboardInterrupt):
        training.run(killed)
    monkeypatch.setattr(trainer, "train_step", real_step)
    (Path(killed.model_dir) / "checkpoints" / "tmp-step-00000005").mkdir()  # a save cut short
    assert [d.name for d in training.checkpoint_dirs(killed.model_dir)] == ["step-00000003"]

    resumed = tiny_params(tmp_path / "killed", toy, dropout=0.1, resume=True)
    summary = training.run(resumed)
    assert summary["step"] == 6
    expected, got = training.read_log(straight.model_dir), training.read_log(resumed.model_dir)
    assert got["step"].tolist() == expected["step"].tolist(), "each step logged once, from 1 to 6"
    np.testing.assert_array_equal(got["loss"].to_numpy(), expected["loss"].to_numpy())
    assert not list((Path(resumed.model_dir) / "checkpoints").glob("tmp-*"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, toy, monkeypatch):
    real_build = mmm_model.build_model

    def build_then_break(*args, **kwargs):
        model = real_build(*args, **kwargs)
        calls = []

        def poison(module, inputs, output):  # the 5th training forward (step 5) returns NaN
            calls.append(module.training)
            return output * float("nan") if sum(calls) == 5 and module.training else output

        model.lm_head.register_forward_hook(poison)
        return model

    monkeypatch.setattr(mmm_model, "build_model", build_then_break)
    p = tiny_params(tmp_path / "model", toy)
    with pytest.raises(training.TrainingDiverged, match="loss is nan at step 5.*step-00000003"):
        training.run(p)
    assert [d.name for d in training.checkpoint_dirs(p.model_dir)] == ["step-00000003"]
    log = training.read_log(p.model_dir)
    assert log["loss"].notna().all() and log["step"].max() == 4


# a short run that checkpoints at its last step, for the resume tests to copy
RESUMABLE = {"max_steps": 2, "warmup_steps": 1, "eval_every_steps": 2, "save_every_steps": 2, "eval_max_batches": 1}


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory, toy) -> Path:
    model_dir = tmp_path_factory.mktemp("resumable") / "model"
    training.run(tiny_params(model_dir, toy, **RESUMABLE))
    return model_dir


@pytest.mark.parametrize(
    ("name", "value"),
    [("max_steps", 4), ("warmup_steps", 0), ("learning_rate", 1e-3), ("min_lr_ratio", 0.5),
     ("grad_accum_steps", 2), ("batch_size", 2), ("num_processes", 2), ("weight_decay", 0.1)],
)
def test_resume_refuses_a_changed_setting(tmp_path, toy, two_step_run, name, value):
    # the old and new values both in the message: the scheduler and optimizer state would
    # otherwise be reshaped or overridden silently (num_processes changes the global batch)
    model_dir = tmp_path / "model"
    shutil.copytree(two_step_run, model_dir)
    before = sorted(str(f.relative_to(model_dir)) for f in model_dir.rglob("*"))
    old = getattr(tiny_params(model_dir, toy, **RESUMABLE), name)
    p = tiny_params(model_dir, toy, **{**RESUMABLE, name: value, "resume": True})
    with pytest.raises(ParamError, match=f"parameter `{name}` .*changed since .*step-00000002: "
                                         f"it was {old!r}, now {value!r}"):
        training.run(p)
    assert sorted(str(f.relative_to(model_dir)) for f in model_dir.rglob("*")) == before, "nothing deleted"


def test_resume_check_is_a_config_error_in_the_library(two_step_run, toy):
    info = training.run_info(tiny_params(two_step_run, toy, **RESUMABLE), vocab_size=1, num_processes=1)
    checkpoint = training.checkpoint_dirs(two_step_run)[-1]
    with pytest.raises(ConfigError, match="`vocab_size` \\(the tokenizer's vocabulary size\\) changed") as error:
        training.check_resumable(checkpoint, info)
    assert error.value.setting == "vocab_size"


def test_gradient_accumulation_weighs_every_loss_token_the_same(tmp_path, toy):
    s = training.setup(tiny_params(tmp_path / "model", toy, grad_accum_steps=2))  # dropout 0: deterministic
    train_split = s.splits["train"]
    long_samples = [train_split[i] for i in range(6)]  # ~6 x 30 loss tokens
    short_samples = [{key: values[:5] for key, values in train_split[6].items()}]  # 2 controls + 3 tokens
    micro = [s.collator(long_samples), s.collator(short_samples)]
    counts = [int(training.count_loss_tokens(b["labels"])) for b in micro]
    assert counts[0] > 30 * counts[1], counts

    def gradients() -> torch.Tensor:
        flat = torch.cat([q.grad.flatten() for q in s.model.parameters()])
        s.model.zero_grad(set_to_none=True)
        return flat

    step_loss = training.accumulate_gradients(s, micro)
    accumulated = gradients()
    # the same tokens in one batch: the gradient of their mean loss
    big_batch_loss = s.model(**s.collator(long_samples + short_samples)).loss
    big_batch_loss.backward()
    expected = gradients()
    # the old normalisation: each micro-batch averaged on its own, then the micro-batches averaged
    for batch in micro:
        (s.model(**batch).loss / len(micro)).backward()
    per_micro_batch = gradients()

    assert step_loss == pytest.approx(big_batch_loss.item(), rel=1e-6), "the logged loss is the mean per token"
    assert (accumulated - expected).abs().max() < 1e-5
    assert (per_micro_batch - expected).abs().max() > 100 * (accumulated - expected).abs().max()
    assert (per_micro_batch - expected).abs().max() > 1e-3 * expected.abs().max()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tokenizer_path": "/nowhere/tokenizer.json"}, "tokenizer_path` is not a file"),
        ({"tokens_dir": "/nowhere/tokens"}, "tokens_dir` has no train/ dataset"),
        ({"max_seq_len": 20}, "parameter `max_seq_len` \\(20\\) is shorter than the longest sample"),
        ({"preset": "gpt5"}, "preset` must be one of"),
        ({"device": "cuda"}, "parameter `device` is 'cuda' but no CUDA GPU is visible"),
        ({"attn_implementation": "flash_attention_2"}, "parameter `attn_implementation` 'flash_attention_2' needs a CUDA"),
        ({"batch_size": 64}, "parameter `batch_size` is too large: 48 training samples cannot fill one batch"),
    ],
)
def test_bad_settings_fail_before_training(tmp_path, toy, overrides, message):
    if overrides.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ParamError, match=message):  # the library's ConfigError, named as the notebook's parameter
        training.run(tiny_params(tmp_path / "model", toy, **overrides))
    assert not (tmp_path / "model" / "checkpoints").exists()


def test_tokens_from_another_tokenizer_are_rejected(tmp_path, toy):
    vocab_size = len(training.load_tokenizer(toy["tokenizer_path"]))
    write_tokens(tmp_path / "tokens", num_train=8, num_valid=4, max_id=vocab_size + 50)
    p = tiny_params(tmp_path / "model", {**toy, "tokens_dir": str(tmp_path / "tokens")})
    with pytest.raises(ParamError, match="parameter `tokenizer_path` .* made with another tokenizer"):
        training.run(p)


def test_notebook_runs_with_papermill_through_accelerate_launch(tmp_path, toy):
    # one test for both paths that start Python processes (each costs seconds of imports):
    # the notebook under papermill, and `accelerate launch` with one CPU process inside it
    import papermill

    model_dir = tmp_path / "model"
    overrides = {**toy, "model_dir": str(model_dir), "preset": "tiny", "max_seq_len": 64, "device": "cpu",
                 "batch_size": 4, "grad_accum_steps": 1, "max_steps": 8, "learning_rate": 0.003, "warmup_steps": 2,
                 "log_every_steps": 2, "eval_every_steps": 4, "eval_max_batches": 2, "save_every_steps": 4,
                 "num_workers": 0, "launcher": "accelerate"}
    cmd = training.launch_command(TrainParams(**{**notebook_defaults(), **overrides}), "params.json")
    assert "accelerate.commands.launch" in cmd and cmd[-4:] == ["-m", "mmmlib.training", "--params", "params.json"]
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
    cmd = training.launch_command(p, "/runs/model/params.json")
    assert cmd[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "bash"]
    inner = cmd[-1]  # expanded by bash on each node: the variables must stay unquoted
    assert "--machine_rank $SLURM_NODEID" in inner and "--main_process_ip $MASTER_ADDR" in inner
    assert "--num_processes 8 --num_machines 2" in inner
    assert inner.endswith("-m mmmlib.training --params /runs/model/params.json")


def test_gpu_launches_pass_the_configs_installed_with_the_package(tmp_path, toy, monkeypatch):
    monkeypatch.setattr(mmm_model, "resolve_device", lambda device: torch.device("cuda"))  # no GPU needed
    package = Path(training.__file__).parent
    for use_deepspeed, names in ((False, ["accelerate_multi_gpu.yaml"]),
                                 (True, ["accelerate_ds_zero2.yaml", "ds_zero2.json"])):
        p = tiny_params(tmp_path / "model", toy, device="cuda", mixed_precision="bf16", num_processes=4,
                        use_deepspeed=use_deepspeed)
        cmd = training.launch_command(p, "params.json")
        paths = [Path(cmd[i + 1]) for i, arg in enumerate(cmd) if arg in ("--config_file", "--deepspeed_config_file")]
        assert [path.name for path in paths] == names
        assert all(path.is_file() and path.parent == package / "configs" for path in paths)
