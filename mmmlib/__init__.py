"""mmmlib: controllable multitrack MIDI loop generation (a MIDI-GPT-Loop re-implementation).

Modules, one job each:

- data: ``synth`` (embedded corpus), ``nomml`` and ``loops`` (features), ``data`` (preparation);
- tokens: ``tokenizer`` (+ ``controls``, ``fast_controls``, ``microtiming``, ``encoding``,
  ``decoding``, ``vocab``), ``samples`` and ``dataset`` (training samples), ``token_stats``;
- training: ``collator``, ``model``, ``train``;
- generation: ``grammar`` (constrained decoding), ``sampling``, ``generate``, ``infill``, ``runs``;
- evaluation: ``evaluate``, ``metrics``, ``loopability``, ``distributions``, ``audio``;
- shared: ``plots``, ``eval_plots``, ``params`` (typed notebook parameters), ``demo_summary``.

Heavy dependencies (torch, transformers, deepspeed, flash-attn) are imported lazily inside
the modules that need them.
"""

__version__ = "0.1.0"
