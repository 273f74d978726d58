"""Data preparation (01): validate a MIDI corpus, measure NOMML and loops per track, split it.

- :mod:`~mmmlib.data.nomml`: the GigaMIDI note onset median metric level of a track (0-12);
- :mod:`~mmmlib.data.loops`: the GigaMIDI loop detector, exact and fast (:func:`detect_loops`);
- :mod:`~mmmlib.data.expressive`: expressive loops and loopability (GigaMIDI v1.1), in
  ``reference`` mode (the published annotation, fast) or ``default`` mode (its quirks fixed)
  (:func:`detect_expressive_loops`); :mod:`~mmmlib.data.soft_matrix` is their engine,
  :mod:`~mmmlib.data.loop_shared` what both detectors share;
- :mod:`~mmmlib.data.annotations`: the loop and NOMML columns of GigaMIDI v1.1 parquet files;
- :mod:`~mmmlib.data.synth`: the embedded synthetic corpus, with a ground-truth manifest;
- :mod:`~mmmlib.data.preparation`: the stage itself: inputs, one row per accepted file / track /
  loop, rejects with reasons, the 80/10/10 split, shards and their merge (:func:`prepare`);
- :mod:`~mmmlib.data.figures`: the stage's figures; :mod:`~mmmlib.data.params`: the notebook's
  parameters (:class:`DataPrepParams`).

Command lines: ``python -m mmmlib synth|nomml|loops|data merge`` (``--help`` on each).
"""

from __future__ import annotations

from mmmlib.data.expressive import (
    ExpressiveLoop,
    ExpressiveOptions,
    ExpressiveTrack,
    analyse_expressive_tracks,
    detect_expressive_loops,
)
from mmmlib.data.figures import data_prep_figures, instrument_counts, loop_duration_histogram, nomml_histogram
from mmmlib.data.loop_shared import bars_and_beats
from mmmlib.data.loops import Loop, LoopOptions, detect_loops, detect_track_loops
from mmmlib.data.nomml import (
    EXPRESSIVE_LEVEL,
    NUM_LEVELS,
    nomml_from_onsets,
    onset_levels,
    score_nomml,
    track_nomml,
)
from mmmlib.data.params import DataPrepParams
from mmmlib.data.preparation import (
    FILES_COLUMNS,
    LOOPS_COLUMNS,
    REJECTS_COLUMNS,
    SPLIT_FRACTIONS,
    TRACKS_COLUMNS,
    PrepResult,
    Source,
    list_sources,
    merge_shards,
    prepare,
    read_result,
    resolve_input,
    shard_dir,
    shard_sources,
    split_of,
    summary_table,
    write_result,
)
from mmmlib.data.synth import generate_score, write_corpus

__all__ = [
    "EXPRESSIVE_LEVEL", "FILES_COLUMNS", "LOOPS_COLUMNS", "NUM_LEVELS", "REJECTS_COLUMNS", "SPLIT_FRACTIONS",
    "TRACKS_COLUMNS", "DataPrepParams", "ExpressiveLoop", "ExpressiveOptions", "ExpressiveTrack", "Loop",
    "LoopOptions", "PrepResult", "Source", "analyse_expressive_tracks", "bars_and_beats", "data_prep_figures",
    "detect_expressive_loops", "detect_loops", "detect_track_loops", "generate_score", "instrument_counts",
    "list_sources", "loop_duration_histogram", "merge_shards", "nomml_from_onsets", "nomml_histogram",
    "onset_levels", "prepare", "read_result", "resolve_input", "score_nomml", "shard_dir", "shard_sources",
    "split_of", "summary_table", "track_nomml", "write_corpus", "write_result",
]
