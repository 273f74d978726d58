"""Typed, validated notebook parameters.

papermill injects parameters as plain Python literals and only *warns* on unknown
names, so every notebook validates its parameters cell into one of the dataclasses
below before doing any work. A wrong type or value raises :class:`ParamError`
naming the parameter; nothing has been computed at that point.

Usage in a notebook, right after the ``parameters`` cell::

    from mmmlib.params import DataPrepParams
    p = DataPrepParams.from_namespace(globals())
    p.save(p.output_dir)          # writes params.json next to the outputs
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin


class ParamError(ValueError):
    """A notebook parameter has a wrong type or value."""


def _type_ok(value: Any, annotation: Any) -> bool:
    """Return whether ``value`` fits the (simple) type ``annotation``."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        (item_type, *_) = get_args(annotation) or (Any,)
        return all(_type_ok(v, item_type) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return isinstance(value, annotation)


@dataclasses.dataclass
class Params:
    """Base class: type checks every field, then runs :meth:`check` for value checks."""

    stage: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            annotation = hints[field.name]
            if not _type_ok(value, annotation):
                raise ParamError(
                    f"parameter `{field.name}` must be {_type_name(annotation)}, "
                    f"got {value!r} ({type(value).__name__})"
                )
            if annotation is float and isinstance(value, int):
                setattr(self, field.name, float(value))
        self.check()

    def check(self) -> None:
        """Value checks; subclasses raise :class:`ParamError` naming the parameter."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]):
        """Build from a notebook's globals (only the dataclass's fields are read)."""
        missing = [n for n in cls.names() if n not in namespace]
        if missing:
            raise ParamError(f"missing parameter(s): {', '.join(missing)}")
        return cls(**{n: namespace[n] for n in cls.names()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, folder: str | Path) -> Path:
        """Write ``params.json`` into ``folder`` (created if needed); return its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "params.json"
        path.write_text(json.dumps({"stage": self.stage, **self.to_dict()}, indent=2, default=str))
        return path

    def summary(self) -> str:
        """One line per parameter, for the notebook's log."""
        width = max(len(n) for n in self.names())
        return "\n".join(f"{n:<{width}} = {getattr(self, n)!r}" for n in self.names())


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation))
    if annotation is type(None):
        return "None"
    if origin is not None:
        args = ", ".join(_type_name(a) for a in get_args(annotation))
        return f"{origin.__name__}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def require(condition: bool, name: str, message: str) -> None:
    """Raise :class:`ParamError` about parameter ``name`` unless ``condition`` holds."""
    if not condition:
        raise ParamError(f"parameter `{name}` {message}")


@dataclasses.dataclass
class DataPrepParams(Params):
    """Parameters of ``01_data_prep.ipynb`` (see the notebook for their meaning)."""

    stage: ClassVar[str] = "01_data_prep"

    input_path: str
    output_dir: str
    num_synth_files: int
    min_bars: int
    max_notes: int
    workers: int
    shard_index: int
    num_shards: int
    seed: int
    make_figures: bool

    def check(self) -> None:
        require(bool(self.input_path), "input_path", "must not be empty")
        require(bool(self.output_dir), "output_dir", "must not be empty")
        require(self.num_synth_files >= 1, "num_synth_files", f"must be >= 1, got {self.num_synth_files}")
        require(self.min_bars >= 0, "min_bars", f"must be >= 0, got {self.min_bars}")
        require(self.max_notes >= 1, "max_notes", f"must be >= 1, got {self.max_notes}")
        require(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        require(self.num_shards >= 1, "num_shards", f"must be >= 1, got {self.num_shards}")
        require(
            0 <= self.shard_index < self.num_shards,
            "shard_index",
            f"must be in [0, num_shards={self.num_shards}), got {self.shard_index}",
        )
        if self.input_path != "synthetic":
            require(
                Path(self.input_path).exists(),
                "input_path",
                f"does not exist: {self.input_path!r} (a folder of MIDI files, a .parquet file, or 'synthetic')",
            )


def project_root() -> Path:
    """The repository root (the folder holding ``pyproject.toml`` above this package)."""
    here = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists():
            return folder
    return Path.cwd()


def chdir_project_root() -> Path:
    """Make relative paths in notebook parameters mean "relative to the repository root".

    Notebooks run from ``notebooks/`` in JupyterLab and from the root under ``make demo``;
    both then read and write the same ``runs/...`` folders.
    """
    import os

    root = project_root()
    os.chdir(root)
    return root


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

    def check(self) -> None:
        from mmmlib.model import ATTN_IMPLEMENTATIONS, PRESETS  # torch: only once a notebook validates

        self._check_paths()
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


@dataclasses.dataclass
class EvaluateParams(Params):
    """Parameters of ``05_evaluate.ipynb`` (see the notebook for their meaning)."""

    stage: ClassVar[str] = "05_evaluate"

    source: str
    label: str
    reference_dir: str
    reference_split: str
    output_dir: str
    bootstrap: int
    seed: int
    max_reference_files: int
    num_audio: int
    soundfont: str

    def check(self) -> None:
        require(bool(self.source), "source", "must not be empty")
        require(bool(self.label), "label", "must not be empty")
        label_dir = Path(self.source) / self.label
        require(label_dir.is_dir() and any(label_dir.glob("RESULTS_*.csv")), "label",
                f"has no generation results: no RESULTS_*.csv in {str(label_dir)!r} (written by 04_generate)")
        if self.reference_dir:
            require((Path(self.reference_dir) / "files.parquet").is_file(), "reference_dir",
                    f"has no files.parquet: {self.reference_dir!r} (the output_dir of 01_data_prep; '' to skip)")
        require(self.reference_split in ("train", "valid", "test"), "reference_split",
                f"must be 'train', 'valid' or 'test', got {self.reference_split!r}")
        require(bool(self.output_dir), "output_dir", "must not be empty")
        require(self.bootstrap >= 0, "bootstrap", f"must be >= 0 (0 = no confidence intervals), got {self.bootstrap}")
        require(self.max_reference_files >= 1, "max_reference_files", f"must be >= 1, got {self.max_reference_files}")
        require(self.num_audio >= 0, "num_audio", f"must be >= 0, got {self.num_audio}")
        if self.soundfont:
            require(Path(self.soundfont).is_file(), "soundfont", f"is not a file: {self.soundfont!r} ('' to search)")


@dataclasses.dataclass
class TokenizerParams(Params):
    """Parameters of ``02_tokenizer.ipynb`` (see the notebook for their meaning)."""

    stage: ClassVar[str] = "02_tokenizer"

    data_dir: str
    output_dir: str
    vocab_size: int
    bpe_max_files: int
    max_seq_len: int
    expressive: bool
    microtiming_resolution: int
    infill_fraction: float
    min_track_fraction: float
    track_control_prob: float
    bar_control_prob: float
    augment: bool
    augment_copies: int
    use_nomml: bool
    use_loops: bool
    use_track_note_density: bool
    use_track_polyphony: bool
    use_track_note_duration: bool
    use_track_repetition: bool
    use_bar_note_density: bool
    use_bar_polyphony: bool
    use_bar_pitch_class: bool
    use_bar_note_duration: bool
    roundtrip_files: int
    workers: int
    shard_index: int
    num_shards: int
    seed: int
    make_figures: bool

    def check(self) -> None:
        require((Path(self.data_dir) / "files.parquet").is_file(), "data_dir",
                f"has no files.parquet: {self.data_dir!r} (the output_dir of 01_data_prep)")
        require(bool(self.output_dir), "output_dir", "must not be empty")
        require(self.vocab_size >= 0, "vocab_size", f"must be >= 0 (0: no BPE), got {self.vocab_size}")
        require(self.bpe_max_files >= 1, "bpe_max_files", f"must be >= 1, got {self.bpe_max_files}")
        require(self.max_seq_len >= 64, "max_seq_len", f"must be >= 64, got {self.max_seq_len}")
        if self.expressive:
            require(self.microtiming_resolution >= 192 and self.microtiming_resolution % 96 == 0,
                    "microtiming_resolution",
                    f"must be a multiple of 96 and >= 192 (so NOMML survives decoding), got {self.microtiming_resolution}")
        for name in ("infill_fraction", "min_track_fraction", "track_control_prob", "bar_control_prob"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, name, f"must be in [0, 1], got {value}")
        require(self.min_track_fraction > 0, "min_track_fraction", "must be > 0 (a sample needs a track)")
        require(self.augment_copies >= 0, "augment_copies", f"must be >= 0, got {self.augment_copies}")
        require(self.roundtrip_files >= 0, "roundtrip_files", f"must be >= 0, got {self.roundtrip_files}")
        require(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        require(self.num_shards >= 1, "num_shards", f"must be >= 1, got {self.num_shards}")
        require(0 <= self.shard_index < self.num_shards, "shard_index",
                f"must be in [0, num_shards={self.num_shards}), got {self.shard_index}")


@dataclasses.dataclass
class GenerateParams(Params):
    """Parameters of ``04_generate.ipynb`` (see the notebook for their meaning).

    Every check, the tokenizer's controls included, runs before the model is loaded.
    """

    stage: ClassVar[str] = "04_generate"

    model_dir: str
    output_folder: str
    label: str
    rank: int
    num_ranks: int
    num_generations: int
    max_attempts: int
    batch: int
    nomml: int
    num_bars: int
    n_tracks: int
    programs: list[int] | str
    loop_controls: bool
    loop_count: int
    loop_duration_bars: int
    track_controls: dict
    time_signature: str
    tempo: float
    check_loop: bool
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    max_tokens_per_bar: int
    seed: int
    device: str
    num_threads: int
    num_plots: int

    def check(self) -> None:
        model_dir = Path(self.model_dir)
        require((model_dir / "config.json").is_file(), "model_dir",
                f"is not a model folder (no config.json): {self.model_dir!r} (the model_dir of 03_train)")
        require((model_dir / "tokenizer.json").is_file(), "model_dir",
                f"has no tokenizer.json: {self.model_dir!r} (03_train copies the tokenizer into the model folder)")
        require(bool(self.output_folder), "output_folder", "must not be empty")
        require(bool(self.label) and "/" not in self.label, "label", f"must be a folder name, got {self.label!r}")
        require(self.num_ranks >= 1, "num_ranks", f"must be >= 1, got {self.num_ranks}")
        require(0 <= self.rank < self.num_ranks, "rank", f"must be in [0, num_ranks={self.num_ranks}), got {self.rank}")
        for name in ("max_attempts", "batch", "num_bars", "n_tracks"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.num_generations >= 0, "num_generations", f"must be >= 0, got {self.num_generations}")
        require(self.nomml in range(-2, 13), "nomml",
                f"must be a level 0-12, -1 (no NOMML control) or -2 (-1 and every level), got {self.nomml}")
        self._check_programs()
        require(0 <= self.loop_count <= 5, "loop_count", f"must be in 0-5 (5 means 5 or more), got {self.loop_count}")
        require(self.loop_duration_bars >= 1, "loop_duration_bars", f"must be >= 1, got {self.loop_duration_bars}")
        require(self.tempo >= 0, "tempo", f"must be >= 0 (0: sampled), got {self.tempo}")
        require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        require(self.top_k >= 0, "top_k", f"must be >= 0 (0: off), got {self.top_k}")
        require(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        require(self.repetition_penalty > 0, "repetition_penalty", f"must be > 0, got {self.repetition_penalty}")
        require(self.max_tokens_per_bar >= 8, "max_tokens_per_bar", f"must be >= 8, got {self.max_tokens_per_bar}")
        require(self.num_plots >= 0, "num_plots", f"must be >= 0, got {self.num_plots}")
        require(self.num_threads >= 0, "num_threads", f"must be >= 0 (0: torch's default), got {self.num_threads}")
        require(self.device in ("auto", "cpu") or self.device.startswith("cuda"), "device",
                f"must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        from mmmlib.runs import check_against_tokenizer  # reads tokenizer.json only, never the model

        check_against_tokenizer(self)

    def _check_programs(self) -> None:
        if isinstance(self.programs, str):
            require(self.programs == "random", "programs", f"must be a list of programs or 'random', got {self.programs!r}")
            require(self.n_tracks <= 16, "n_tracks", f"must be <= 16 with random programs, got {self.n_tracks}")
            return
        require(len(self.programs) == self.n_tracks, "programs",
                f"must hold one program per track (n_tracks={self.n_tracks}), got {self.programs}")
        for program in self.programs:
            require(-1 <= program <= 127, "programs", f"must be GM programs 0-127 or -1 (drums), got {program}")


def notebook_parameters(notebook: str | Path) -> dict[str, Any]:
    """The defaults of a notebook's ``parameters`` cell, as ``{name: literal}``.

    The cell holds ``name: type = literal  # help`` lines only (papermill shows the type and
    the help in ``--help-notebook``); anything else in it is an error.
    """
    import ast

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{notebook}: exactly one cell must be tagged 'parameters', found {len(cells)}")
    values: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            raise ValueError(f"{notebook}: the parameters cell may only assign literals")
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            values[target.id] = ast.literal_eval(node.value)
    return values
