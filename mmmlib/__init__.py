"""mmmlib: controllable multitrack MIDI loop generation (a MIDI-GPT-Loop re-implementation).

One subpackage per pipeline stage, each with its notebook; layers only point down
(``tests/test_layout.py`` checks it):

- :mod:`mmmlib.core`: what every stage shares (parameters, errors, MIDI I/O, GM families, plotting);
- :mod:`mmmlib.data` (01): synthetic corpus, NOMML, loop detection, validation and splits;
- :mod:`mmmlib.tokens` (02): the tokenizer, its controls, BPE and the training samples;
- :mod:`mmmlib.training` (03): model presets, collator, the training loop and its launcher;
- :mod:`mmmlib.generation` (04): constrained sampling, loop / infill / new-track requests, sweeps;
- :mod:`mmmlib.evaluation` (05): merge, control fidelity, loopability, distributions, audio, report.

``python -m mmmlib <command>`` (:mod:`mmmlib.cli`) is the command line. Heavy dependencies
(torch, transformers, deepspeed, flash-attn) load only with the stages that need them.
"""

__version__ = "0.2.0"
