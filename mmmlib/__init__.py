"""mmmlib: controllable multitrack MIDI loop generation (a MIDI-GPT-Loop re-implementation).

Modules, one job each: ``synth`` (embedded corpus), ``nomml`` and ``loops`` (features),
``data`` (data preparation), ``tokenizer`` and ``dataset`` (tokens), ``model`` and
``train``, ``generate``, ``evaluate``, ``plots``, ``params`` (notebook parameters).
Heavy dependencies (torch, transformers, deepspeed, flash-attn) are imported lazily
inside the modules that need them.
"""

__version__ = "0.1.0"
