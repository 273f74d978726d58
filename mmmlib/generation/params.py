"""Parameters of ``04_generate.ipynb``: typed, checked before any work (see :mod:`mmmlib.core.params`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from mmmlib.core.params import ParamError, Params, require
from mmmlib.generation.results import NO_CONTROL


def check_sampling_and_device(p: Params) -> None:
    """Checks shared by every notebook that samples (04, 06): ``temperature``, ``top_k``,
    ``top_p``, ``repetition_penalty``, ``max_tokens_per_bar``, ``num_threads`` and ``device``.

    :param p: parameters with those fields.
    :raises ParamError: naming the first wrong one.
    """
    require(p.temperature > 0, "temperature", f"must be > 0, got {p.temperature}")
    require(p.top_k >= 0, "top_k", f"must be >= 0 (0: off), got {p.top_k}")
    require(0 < p.top_p <= 1, "top_p", f"must be in (0, 1], got {p.top_p}")
    require(p.repetition_penalty >= 0, "repetition_penalty",
            f"must be > 0, or 0 for the model's default (1.2 published, 1.0 mmmlib), got {p.repetition_penalty}")
    require(p.max_tokens_per_bar >= 8, "max_tokens_per_bar", f"must be >= 8, got {p.max_tokens_per_bar}")
    require(p.num_threads >= 0, "num_threads", f"must be >= 0 (0: torch's default), got {p.num_threads}")
    require(p.device in ("auto", "cpu") or p.device.startswith("cuda"), "device",
            f"must be 'auto', 'cpu' or 'cuda[:N]', got {p.device!r}")


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
    tokenizer_path: str = ""  # last, with a default: callers written before it keep working

    def check(self) -> None:
        from mmmlib.training.model import tokenizer_file

        model_dir = Path(self.model_dir)
        require((model_dir / "config.json").is_file(), "model_dir",
                f"is not a model folder (no config.json): {self.model_dir!r} (the model_dir of 03_train, or a "
                "published MIDI-GPT-Loop folder)")
        require(not self.tokenizer_path or Path(self.tokenizer_path).is_file(), "tokenizer_path",
                f"is not a file: {self.tokenizer_path!r} (the published MMM_epl_mistral_tokenizer_with_acs.json, "
                "an mmmlib tokenizer.json, or '' for the model folder's own)")
        try:
            tokenizer = tokenizer_file(model_dir, self.tokenizer_path or None)
        except FileNotFoundError as exc:
            raise ParamError(f"parameter `tokenizer_path` is '' but {exc}") from exc
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
        check_sampling_and_device(self)
        require(self.num_plots >= 0, "num_plots", f"must be >= 0, got {self.num_plots}")
        check_against_tokenizer(self, tokenizer)  # reads the tokenizer file only, never the model

    def _check_programs(self) -> None:
        if isinstance(self.programs, str):
            require(self.programs == "random", "programs", f"must be a list of programs or 'random', got {self.programs!r}")
            require(self.n_tracks <= 16, "n_tracks", f"must be <= 16 with random programs, got {self.n_tracks}")
            return
        require(len(self.programs) == self.n_tracks, "programs",
                f"must hold one program per track (n_tracks={self.n_tracks}), got {self.programs}")
        for program in self.programs:
            require(-1 <= program <= 127, "programs", f"must be GM programs 0-127 or -1 (drums), got {program}")


def check_against_tokenizer(p: GenerateParams, path: str | Path) -> None:
    """Reject controls and settings the model's tokenizer cannot express (reads the tokenizer file only).

    :param p: the run's parameters.
    :param path: the tokenizer file (either dialect).
    """
    from mmmlib.generation.language import load_language

    lang = load_language(path)
    require(p.nomml == NO_CONTROL or lang.supports("nomml"), "nomml",
            f"is {p.nomml} but the tokenizer has no NOMML control (built with use_nomml false): use -1")
    require(not p.loop_controls or (lang.supports("loop_count") and lang.supports("loop_duration")), "loop_controls",
            "is true but the tokenizer has no loop controls (built with use_loops false)")
    try:
        lang.track_header(0, p.track_controls)
    except ValueError as exc:
        raise ParamError(f"parameter `track_controls` {exc}; track controls of this tokenizer: "
                         f"{lang.track_control_types()}") from exc
    for program in ([] if isinstance(p.programs, str) else p.programs):
        require(lang.has_token(f"Program_{program}"), "programs",
                f"holds {program}, a program the {lang.name} tokenizer lacks")
    if p.time_signature:
        known = sorted(lang.values_of("TimeSig"))
        require(lang.has_token(f"TimeSig_{p.time_signature}"), "time_signature",
                f"must be one of the tokenizer's {known} or '' (sampled), got {p.time_signature!r}")
