"""Parameters of ``01_data_prep.ipynb``: typed, checked before any work (see :mod:`mmmlib.core.params`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from mmmlib.core.params import Params, require
from mmmlib.data.expressive import MODES
from mmmlib.data.measure import EXPRESSIVE_TRACKS


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
    expressive_tracks: str
    expressive_mode: str
    use_dataset_annotations: bool

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
        require(self.expressive_tracks in EXPRESSIVE_TRACKS, "expressive_tracks",
                f"must be one of {EXPRESSIVE_TRACKS}, got {self.expressive_tracks!r}")
        require(self.expressive_mode in MODES, "expressive_mode", f"must be one of {MODES}, got {self.expressive_mode!r}")
        if self.input_path != "synthetic":
            require(
                Path(self.input_path).exists(),
                "input_path",
                f"does not exist: {self.input_path!r} (a folder of MIDI files, a .parquet file, or 'synthetic')",
            )
