"""Helpers of the tokenizer and dataset tests: a tiny data-prep folder built from the synthetic corpus.

The folder follows data prep's contract (``files.parquet``, ``tracks.parquet``,
``loops.parquet``) but is written here with pandas, NOMML from :mod:`mmmlib.data.nomml` and
loops from :mod:`mmmlib.data.loops`, so these tests do not depend on data prep's code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
from miditok.utils import get_bars_ticks
from symusic import Score

from mmmlib.data.loops import detect_loops
from mmmlib.data.nomml import track_nomml
from mmmlib.data.synth import write_corpus

REAL_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "gigamidi-tests"


def split_for(index: int) -> str:
    """3 of 5 files train, 1 valid, 1 test: every split is present from 5 files."""
    return {3: "valid", 4: "test"}.get(index % 5, "train")


def make_data_dir(folder: Path, num_files: int = 10, seed: int = 0) -> Path:
    """Write ``num_files`` synthetic MIDI files and data prep's three tables into ``folder``.

    :return: ``folder`` (``folder/midi`` holds the files and the synth ``manifest.csv``).
    """
    midi_dir = folder / "midi"
    write_corpus(midi_dir, num_files=num_files, seed=seed)
    files, tracks, loops = [], [], []
    for i, path in enumerate(sorted(midi_dir.glob("*.mid"))):
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        score = Score(str(path))
        found = detect_loops(score)
        ts = score.time_signatures[0]
        files.append({"md5": md5, "path": str(path), "row": -1, "split": split_for(i),
                      "tpq": score.ticks_per_quarter, "n_tracks": len(score.tracks),
                      "n_bars": len(get_bars_ticks(score, only_notes_onsets=True)),
                      "time_signature": f"{ts.numerator}/{ts.denominator}", "tempo": float(score.tempos[0].qpm)})
        for t, track in enumerate(score.tracks):
            tracks.append({"md5": md5, "track_idx": t, "program": track.program, "is_drum": track.is_drum,
                           "n_notes": len(track.notes), "nomml": track_nomml(track, score.ticks_per_quarter),
                           "n_loops": sum(lp.track_idx == t for lp in found)})
        loops += [{"md5": md5, "track_idx": lp.track_idx, "start_tick": lp.start_tick, "end_tick": lp.end_tick,
                   "duration_beats": lp.duration_beats, "note_density": lp.note_density} for lp in found]
    pd.DataFrame(files).to_parquet(folder / "files.parquet", index=False)
    frame = pd.DataFrame(tracks)
    frame["nomml"] = frame["nomml"].astype("Int64")
    frame.to_parquet(folder / "tracks.parquet", index=False)
    pd.DataFrame(loops, columns=["md5", "track_idx", "start_tick", "end_tick", "duration_beats",
                                 "note_density"]).to_parquet(folder / "loops.parquet", index=False)
    return folder
