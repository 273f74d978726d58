"""Parameters of ``05_evaluate.ipynb``: typed, checked before any work (see :mod:`mmmlib.core.params`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from mmmlib.core.params import Params, require


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
    use_reference_windows: bool
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
