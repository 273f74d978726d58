"""Parameters of ``06_studio.ipynb``: typed, checked before the model loads (see :mod:`mmmlib.core.params`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from mmmlib.core.params import ParamError, Params, require
from mmmlib.generation.params import check_sampling_and_device

# Keys a track of ``tracks`` may have; everything else is a typo the user should hear about.
TRACK_KEYS = ("program", "nomml", "loop_count", "loop_duration_bars", "controls")
NO_TRACK = -2  # ``new_track_program`` value: add no track


@dataclasses.dataclass
class StudioParams(Params):
    """Parameters of ``06_studio.ipynb`` (see the notebook for their meaning)."""

    stage: ClassVar[str] = "06_studio"

    model_dir: str
    tokenizer_path: str
    tracks: list
    num_bars: int
    time_signature: str
    tempo: float
    num_variations: int
    seed: int
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    max_tokens_per_bar: int
    midi_file: str
    infill_track: int
    infill_bars: list[int]
    new_track_program: int
    new_track_nomml: int
    context_bars: int
    chosen_variation: int
    output_folder: str
    soundfont: str
    device: str
    num_threads: int

    def check(self) -> None:
        model_dir = Path(self.model_dir)
        require((model_dir / "config.json").is_file(), "model_dir",
                f"is not a model folder (no config.json): {self.model_dir!r} (the model_dir of 03_train)")
        if self.tokenizer_path:
            require(Path(self.tokenizer_path).is_file(), "tokenizer_path", f"is not a file: {self.tokenizer_path!r}")
        else:
            require((model_dir / "tokenizer.json").is_file(), "model_dir",
                    f"has no tokenizer.json: {self.model_dir!r}; give tokenizer_path")
        require(len(self.tracks) >= 1, "tracks", "must describe at least one track")
        for i, track in enumerate(self.tracks):
            self._check_track(i, track)
        for name in ("num_bars", "num_variations", "context_bars"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.tempo >= 0, "tempo", f"must be >= 0 (0: sampled by the model), got {self.tempo}")
        if self.time_signature:
            parts = self.time_signature.split("/")
            require(len(parts) == 2 and all(x.isdigit() and int(x) > 0 for x in parts), "time_signature",
                    f"must look like '4/4' (empty: sampled by the model), got {self.time_signature!r}")
        check_sampling_and_device(self)
        if self.midi_file:
            require(Path(self.midi_file).is_file(), "midi_file", f"is not a file: {self.midi_file!r}")
        require(self.infill_track >= -1, "infill_track", f"must be a track index, or -1 for no infill, got {self.infill_track}")
        if self.infill_track >= 0:
            require(len(self.infill_bars) == 2 and 0 <= self.infill_bars[0] < self.infill_bars[1], "infill_bars",
                    f"must be [first_bar, end_bar) with 0 <= first < end, got {self.infill_bars}")
        require(self.new_track_program == NO_TRACK or -1 <= self.new_track_program <= 127, "new_track_program",
                f"must be a GM program 0-127, -1 for drums or {NO_TRACK} for none, got {self.new_track_program}")
        require(-1 <= self.new_track_nomml <= 12, "new_track_nomml",
                f"must be a level 0-12 or -1 (no control), got {self.new_track_nomml}")
        require(0 <= self.chosen_variation < self.num_variations, "chosen_variation",
                f"must be in [0, num_variations={self.num_variations}), got {self.chosen_variation}")
        require(bool(self.output_folder), "output_folder", "must not be empty")
        if self.soundfont:
            require(Path(self.soundfont).expanduser().is_file(), "soundfont", f"is not a file: {self.soundfont!r}")

    @staticmethod
    def _check_track(i: int, track: Any) -> None:
        if not isinstance(track, dict):
            raise ParamError(f"tracks[{i}]: must be a dict like {{'program': 33, 'nomml': 2}}, got {track!r}")
        unknown = sorted(set(track) - set(TRACK_KEYS))
        if unknown:
            raise ParamError(f"tracks[{i}]: unknown keys {unknown} (known: {', '.join(TRACK_KEYS)})")
        if "program" not in track:
            raise ParamError(f"tracks[{i}]: needs a 'program' (GM 0-127, -1 for drums)")
        checks = {
            "program": (lambda v: isinstance(v, int) and -1 <= v <= 127, "a GM program 0-127 or -1 for drums"),
            "nomml": (lambda v: isinstance(v, int) and 0 <= v <= 12, "a NOMML level 0-12 (leave it out: no control)"),
            "loop_count": (lambda v: isinstance(v, int) and 0 <= v <= 5, "a loop count 0-5 (5 means 5 or more)"),
            "loop_duration_bars": (lambda v: isinstance(v, (int, float)) and v > 0, "a loop length in bars > 0"),
            "controls": (lambda v: isinstance(v, dict), "a dict of further track controls"),
        }
        for key, (ok, what) in checks.items():
            if key in track and (isinstance(track[key], bool) or not ok(track[key])):
                raise ParamError(f"tracks[{i}].{key}: must be {what}, got {track[key]!r}")
