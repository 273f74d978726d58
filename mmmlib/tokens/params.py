"""Parameters of ``02_tokenizer.ipynb``: typed, checked before any work (see :mod:`mmmlib.core.params`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from mmmlib.core.params import Params, require


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
