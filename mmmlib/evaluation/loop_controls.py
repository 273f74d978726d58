"""What the loop controls ask for and what the generated tracks measure, for control fidelity.

04 writes, per track, the requested loop count (``loop_count_requested``, 0-5, 5 meaning
"5 or more"; -1 without loop controls) and the requested loop duration bin
(``loop_duration_bin_requested``). In the published dialect the bin is
:func:`mmmlib.tokens.published.controls.loop_bin` of the requested duration in quarter
notes: 1-7, ``(lo, hi]`` over 6/8/12/16/24/32 quarters, the bin a loop of that length gets in
the training data. The fidelity of both controls is
:func:`mmmlib.evaluation.metrics.control_fidelity` (bootstrap CIs, no-control baseline); this
module supplies the columns it compares:

- loop count: measured as ``n_loops_detected`` (the exact detector's loops on the track, as 04
  counted them); nothing to add;
- loop duration bin: ``loop_duration_bin_measured``, the bin most of the track's detected
  loops fall in (ties go to the longer bin, as :func:`mmmlib.tokens.controls.dominant_loop_duration`
  picks one bin per track), each loop's length taken from its ticks in quarter notes (as
  the tokenizer bins a loop's ``(end - start) / tpq``); NaN for a track without a loop,
  which every accuracy counts as a miss.

A track generated without loop controls has no bin request (an empty cell): it becomes -1,
so that runs that mix generations with and without loop controls get a baseline. 04
switches loop controls for a whole run, so a run usually has either controlled or baseline
tracks, and the baseline is NaN. A bin written by mmmlib's own dialect (``"6-8"``) is text
and is not read here (that dialect bins ``[lo, hi)``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mmmlib.generation.results import NO_CONTROL
from mmmlib.tokens.published.controls import loop_bin

DURATION_CONTROL = "loop_duration_bin"  # columns loop_duration_bin_requested / loop_duration_bin_measured


def measured_duration_bin(loop_quarters: Sequence[float]) -> float:
    """The duration bin of a track's loops: the most frequent one, ties to the longer bin.

    :param loop_quarters: lengths of the track's detected loops, in quarter notes.
    :return: the bin (1-7, :func:`~mmmlib.tokens.published.controls.loop_bin`), NaN without loops.
    """
    if len(loop_quarters) == 0:
        return float("nan")
    counts = Counter(loop_bin(float(q)) for q in loop_quarters)
    return float(max(counts, key=lambda b: (counts[b], b)))


def with_loop_measures(scored: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """``scored`` with ``loop_duration_bin_measured`` and a numeric ``loop_duration_bin_requested``.

    :param scored: the rows accuracy is computed on
        (:func:`mmmlib.generation.results.scored_generations`).
    :param tracks: the final tracks with their loops (:func:`mmmlib.evaluation.loopability.track_loopability`).
    :return: a copy; failed generations have no measurement (NaN, a miss), tracks without loop
        controls request -1 (see the module doc).
    """
    out = scored.copy()
    bins = tracks[["midi_file", "track_idx"]].assign(
        loop_duration_bin_measured=[measured_duration_bin(q) for q in tracks.get("loop_quarters", [[]] * len(tracks))])
    out = out.drop(columns=["loop_duration_bin_measured"], errors="ignore").merge(
        bins.drop_duplicates(["midi_file", "track_idx"]), on=["midi_file", "track_idx"], how="left")
    requested = pd.to_numeric(out.get(f"{DURATION_CONTROL}_requested", pd.Series(np.nan, out.index)),
                              errors="coerce")
    count = pd.to_numeric(out.get("loop_count_requested", pd.Series(np.nan, out.index)), errors="coerce")
    if (requested.isna() & (count >= 0)).any():  # loop controls on, yet no numeric bin: say why it is skipped
        print("loop controls requested without a numeric loop_duration_bin_requested (mmmlib's dialect writes "
              "'6-8'): loop duration accuracy is measured for the published dialect's bins only")
    out[f"{DURATION_CONTROL}_requested"] = requested.mask(requested.isna() & (count == NO_CONTROL), NO_CONTROL)
    return out
