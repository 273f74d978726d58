"""Parameters of ``02_tokenizer.ipynb``: typed, checked before any work (see :mod:`mmmlib.core.params`)."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import ClassVar

from mmmlib.core.params import Params, as_param_error, require
from mmmlib.tokens.dataset import tokens_dir
from mmmlib.tokens.samples import CONTROL_RECIPES, SampleOptions
from mmmlib.tokens.tokenizer import ControlSwitches

STEPS = ("all", "bpe", "samples")
DIALECTS = ("published", "mmmlib")
# use_* switch -> the published dialect's control (as published_samples.control_of names it)
PUBLISHED_CONTROLS = {"use_nomml": ("ACMedianMetricLevel",), "use_loops": ("ACLoopCount", "ACLoopDurationQuantile"),
                      "use_track_note_density": ("ACTrackNoteDensity",),
                      "use_track_polyphony": ("ACTrackOnsetPolyphony",),
                      "use_track_note_duration": ("ACTrackNoteDuration",),
                      "use_track_repetition": ("ACTrackRepetition",)}


@dataclasses.dataclass
class TokenizerParams(Params):
    """Parameters of ``02_tokenizer.ipynb`` (see the notebook for their meaning)."""

    stage: ClassVar[str] = "02_tokenizer"
    # library setting -> notebook parameter, where the names differ (see param_errors)
    setting_names: ClassVar[dict[str, str]] = {"max_files": "bpe_max_files", "controls": "use_* (controls)",
                                               "tokenizer_path": "output_dir"}

    data_dir: str
    output_dir: str
    dialect: str
    base_tokenizer: str
    vocab_size: int
    bpe_max_files: int
    max_seq_len: int
    expressive: bool
    microtiming_resolution: int
    infill_fraction: float
    loop_start_fraction: float
    min_track_fraction: float
    track_control_prob: float
    bar_control_prob: float
    control_mix: dict
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
    step: str
    shard_index: int
    num_shards: int
    seed: int
    make_figures: bool

    def check(self) -> None:
        require((Path(self.data_dir) / "files.parquet").is_file(), "data_dir",
                f"has no files.parquet: {self.data_dir!r} (the output_dir of 01_data_prep)")
        require(bool(self.output_dir), "output_dir", "must not be empty")
        require(self.dialect in DIALECTS, "dialect", f"must be one of {DIALECTS}, got {self.dialect!r}")
        require(not self.base_tokenizer or self.dialect == "published", "base_tokenizer",
                "is only read in the published dialect (dialect='published')")
        require(not self.base_tokenizer or Path(self.base_tokenizer).is_file(), "base_tokenizer",
                f"is not a file: {self.base_tokenizer!r}")
        require(self.dialect == "published" or self.loop_start_fraction == 0, "loop_start_fraction",
                f"must be 0 in the mmmlib dialect (published dialect only), got {self.loop_start_fraction}")
        if self.dialect == "published":
            # the published language has one microtiming grid and no bar controls in its windows
            require(self.expressive, "expressive", "must be true in the published dialect (microtiming is part of it)")
            require(self.bar_control_prob == 0, "bar_control_prob",
                    f"must be 0 in the published dialect (its training windows carry no bar controls), got "
                    f"{self.bar_control_prob}")
        require(self.vocab_size >= 0, "vocab_size", f"must be >= 0 (0: no BPE), got {self.vocab_size}")
        require(self.bpe_max_files >= 1, "bpe_max_files", f"must be >= 1, got {self.bpe_max_files}")
        require(self.max_seq_len >= 64, "max_seq_len", f"must be >= 64, got {self.max_seq_len}")
        if self.expressive:
            require(self.microtiming_resolution >= 192 and self.microtiming_resolution % 96 == 0,
                    "microtiming_resolution",
                    f"must be a multiple of 96 and >= 192 (so NOMML survives decoding), got {self.microtiming_resolution}")
        for name in ("infill_fraction", "loop_start_fraction", "min_track_fraction", "track_control_prob",
                     "bar_control_prob"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, name, f"must be in [0, 1], got {value}")
        require(self.min_track_fraction > 0, "min_track_fraction", "must be > 0 (a sample needs a track)")
        unknown = sorted(set(self.control_mix) - set(CONTROL_RECIPES))
        require(not unknown, "control_mix", f"has unknown recipes {unknown} (known: {', '.join(CONTROL_RECIPES)})")
        weights = list(self.control_mix.values())
        require(all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)
                and sum(weights) > 0, "control_mix", f"needs weights >= 0 that sum to more than 0, got {self.control_mix}")
        require(self.augment_copies >= 0, "augment_copies", f"must be >= 0, got {self.augment_copies}")
        require(self.roundtrip_files >= 0, "roundtrip_files", f"must be >= 0, got {self.roundtrip_files}")
        require(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        require(self.num_shards >= 1, "num_shards", f"must be >= 1, got {self.num_shards}")
        require(0 <= self.shard_index < self.num_shards, "shard_index",
                f"must be in [0, num_shards={self.num_shards}), got {self.shard_index}")
        require(self.step in STEPS, "step", f"must be one of {STEPS}, got {self.step!r}")
        # Shards must read one tokenizer that nobody writes any more: BPE runs once, before them.
        require(self.num_shards == 1 or self.step == "samples", "step",
                f"must be 'samples' when num_shards > 1 (got {self.step!r}): run step='bpe' once first, "
                "then every shard with step='samples' (slurm/02_bpe.sbatch does both)")
        require(self.step != "samples" or self.tokenizer_path.is_file(), "step",
                f"is 'samples' but there is no {self.tokenizer_path}: run the bpe step first (step='bpe')")

    @property
    def tokenizer_path(self) -> Path:
        """The shared ``tokenizer.json``: written once by the bpe step, only read by the samples step."""
        return Path(self.output_dir) / "tokenizer.json"

    @property
    def run_dir(self) -> Path:
        """Where this run keeps ``params.json`` and its reports: ``output_dir``, or its shard's folder."""
        if self.num_shards == 1:
            return Path(self.output_dir)
        return tokens_dir(self.output_dir, self.shard_index, self.num_shards)

    def control_switches(self) -> ControlSwitches:
        """The ``use_*`` parameters as the tokenizer's :class:`ControlSwitches`."""
        return ControlSwitches.from_mapping(self.to_dict())

    def sample_options(self) -> SampleOptions:
        """How samples are cut and masked."""
        excluded = tuple(c for name, controls in PUBLISHED_CONTROLS.items() if not getattr(self, name)
                         for c in controls) if self.dialect == "published" else ()
        return SampleOptions(max_seq_len=self.max_seq_len, infill_fraction=self.infill_fraction,
                             min_track_fraction=self.min_track_fraction, track_control_prob=self.track_control_prob,
                             bar_control_prob=self.bar_control_prob,
                             control_mix=tuple((k, float(v)) for k, v in self.control_mix.items()),
                             excluded_controls=excluded, loop_start_fraction=self.loop_start_fraction)

    def param_errors(self) -> contextlib.AbstractContextManager[None]:
        """Context in which the library's :class:`~mmmlib.core.errors.ConfigError` becomes a
        :class:`~mmmlib.core.params.ParamError` naming this notebook's parameter."""
        return as_param_error(self.setting_names)
