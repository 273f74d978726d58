"""Generation (04): grammar-constrained, batched sampling of loops, infills and new tracks.

- :mod:`~mmmlib.generation.language`: the token language the engine talks to, one
  implementation per dialect (mmmlib's own, the published MIDI-GPT-Loop one):
  grammar, prompts, controls by meaning, fill layout, decoding;
- :mod:`~mmmlib.generation.constraint`: the logits processor that keeps every sampled id
  inside the token grammar (exact bar and track counts, no control tokens in content);
- :mod:`~mmmlib.generation.sampling`: per-row seeded sampling over left-padded batches;
- :mod:`~mmmlib.generation.loop` and :mod:`~mmmlib.generation.infill`: the requests (a new
  loop; bar infill, track infill and new tracks on a piece) and their passes;
- :mod:`~mmmlib.generation.engine`: :func:`generate` and :func:`generate_batch`;
- :mod:`~mmmlib.generation.results`: the results schema that 04 writes and 05 reads;
- :mod:`~mmmlib.generation.marked_loops`: loops the model marks, written as files and checked;
- :mod:`~mmmlib.generation.sweep`: the 04 notebook's run (NOMML levels x generations, checks,
  retries, resumable ``RESULTS_{rank}.csv``).
"""

from mmmlib.generation.constraint import GrammarConstraint, Plan, grammar_tables
from mmmlib.generation.engine import Request, generate, generate_batch
from mmmlib.generation.infill import BarInfill, PieceRequest, TrackInfill, piece_state
from mmmlib.generation.language import Language, MarkedLoop, language_of, load_language
from mmmlib.generation.loop import Generation, LoopRequest, TrackSpec, bar_control_tokens, derive_seed
from mmmlib.generation.params import GenerateParams
from mmmlib.generation.results import (
    NO_CONTROL,
    RESULT_COLUMNS,
    control_accuracy,
    failed_generations,
    final_generations,
    last_attempts,
    near_hits,
    read_results,
    scored_generations,
)
from mmmlib.generation.sampling import Sampling
from mmmlib.generation.sweep import label_dir, plot_generations, run_generation, set_threads

__all__ = [
    "NO_CONTROL", "RESULT_COLUMNS", "BarInfill", "GenerateParams", "Generation", "GrammarConstraint",
    "Language", "LoopRequest", "MarkedLoop", "PieceRequest", "Plan", "Request", "Sampling", "TrackInfill", "TrackSpec",
    "bar_control_tokens", "control_accuracy", "derive_seed", "failed_generations", "final_generations", "generate", "generate_batch",
    "grammar_tables", "label_dir", "language_of", "last_attempts", "load_language", "near_hits", "piece_state", "plot_generations", "read_results", "scored_generations",
    "run_generation", "set_threads",
]
