"""Evaluation (05): merge a run's results, measure control fidelity, loopability and
distributions against a reference, render audio, and write the report.

- :mod:`~mmmlib.evaluation.merge`: ``RESULTS_*.csv`` of every rank into ``RESULTS.csv``;
- :mod:`~mmmlib.evaluation.metrics`: control fidelity with bootstrap CIs and the
  no-control baseline, validity and cost;
- :mod:`~mmmlib.evaluation.loopability`: loops in the generated tracks, the seam check;
- :mod:`~mmmlib.evaluation.distributions`: feature distributions against a reference split;
- :mod:`~mmmlib.evaluation.audio`: WAV previews (each loop played twice);
- :mod:`~mmmlib.evaluation.figures`: the paper-style figures;
- :mod:`~mmmlib.evaluation.report`: ``summary.json`` / ``summary.md``, tables, HTML report.

The results schema and the final-generation rule live with the stage that writes them:
:mod:`mmmlib.generation.results`.
"""

from mmmlib.evaluation import audio, figures
from mmmlib.evaluation.loopability import loop_lengths, loopability_table, track_loopability
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
from mmmlib.evaluation.report import (
    compare_to_reference,
    export_html,
    headline,
    tables_of,
    verdict,
    write_outputs,
)
from mmmlib.generation.results import final_generations, scored_generations

__all__ = [
    "EvaluateParams", "Fidelity", "MergeWarning", "audio", "compare_to_reference", "control_fidelity",
    "controls_in", "export_html", "fidelity_table", "figures", "final_generations", "headline", "scored_generations",
    "loop_lengths", "loopability_table", "merge_results", "read_rank_file", "status_counts", "tables_of",
    "track_loopability", "validity", "verdict", "write_outputs",
]
