"""What every stage shares: parameter base classes, errors, MIDI I/O, GM families, plotting.

Nothing here imports a stage: :mod:`mmmlib.core` sits below data, tokens, training,
generation and evaluation.
"""

from mmmlib.core.errors import ConfigError, DataError, MMMError
from mmmlib.core.gm import GM_FAMILIES, program_family
from mmmlib.core.midi import (
    read_midi_bytes,
    read_midi_files,
    read_score,
    read_score_cached,
    write_midi_atomic,
)
from mmmlib.core.params import (
    ParamError,
    Params,
    as_param_error,
    chdir_project_root,
    notebook_parameters,
    project_root,
    require,
)

__all__ = [
    "GM_FAMILIES", "ConfigError", "DataError", "MMMError", "ParamError", "Params", "as_param_error",
    "chdir_project_root", "notebook_parameters", "program_family", "project_root", "read_midi_bytes",
    "read_midi_files", "read_score", "read_score_cached", "require", "write_midi_atomic",
]
