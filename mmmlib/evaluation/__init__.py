"""Evaluation (05): merge a run's results, measure control fidelity, loopability and
distributions against a reference, render audio, and write the report.

- :mod:`~mmmlib.evaluation.merge`: ``RESULTS_*.csv`` of every rank into ``RESULTS.csv``;
- :mod:`~mmmlib.evaluation.metrics`: control fidelity with bootstrap CIs and the
  no-control baseline, validity and cost;
- :mod:`~mmmlib.evaluation.loopability`: exact and expressive loops in the generated tracks,
  the seam check, and the seam of the loops the model marks;
- :mod:`~mmmlib.evaluation.loop_controls`: the measured loop duration bin, for the fidelity
  of the loop controls;
- :mod:`~mmmlib.evaluation.distributions`: feature distributions against a reference split;
- :mod:`~mmmlib.evaluation.reference`: the reference set cut to the generations' length
  (windows at the reference loops), and the reference loops' lengths;
- :mod:`~mmmlib.evaluation.audio`: WAV previews (each loop played twice);
- :mod:`~mmmlib.evaluation.figures`: the paper-style figures;
- :mod:`~mmmlib.evaluation.report`: ``summary.json`` / ``summary.md``, tables, HTML report.

The results schema and the final-generation rule live with the stage that writes them:
:mod:`mmmlib.generation.results`.
"""

from mmmlib.evaluation import audio, figures
from mmmlib.evaluation.loop_controls import measured_duration_bin, with_loop_measures
from mmmlib.evaluation.loopability import (
    loop_lengths,
    loopability_table,
    marked_loop_seams,
    track_loopability,
)
from mmmlib.evaluation.merge import MergeWarning, merge_results, read_rank_file
from mmmlib.evaluation.metrics import (
    Fidelity,
    control_fidelity,
    controls_in,
    fidelity_table,
    status_counts,
    validity,
)
from mmmlib.evaluation.params import EvaluateParams
from mmmlib.evaluation.reference import reference_loop_lengths, reference_windows
from mmmlib.evaluation.report import (
    compare_to_reference,
    export_html,
    headline,
    loop_headline,
    loop_summary,
    tables_of,
    verdict,
    write_outputs,
)
from mmmlib.generation.results import final_generations, scored_generations

__all__ = [
    "EvaluateParams", "Fidelity", "MergeWarning", "audio", "compare_to_reference", "control_fidelity",
    "controls_in", "export_html", "fidelity_table", "figures", "final_generations", "headline", "scored_generations",
    "loop_headline", "loop_lengths", "loop_summary", "loopability_table", "marked_loop_seams", "measured_duration_bin",
    "merge_results", "read_rank_file", "reference_loop_lengths", "reference_windows", "status_counts", "tables_of",
    "track_loopability", "validity", "verdict", "with_loop_measures", "write_outputs",
]
