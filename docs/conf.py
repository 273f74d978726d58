"""Sphinx configuration of the mmm-loops documentation (``make docs`` -> ``docs/_build/html``).

Everything generated (the notebooks' copies, parameter tables, the NOMML figure, the encoded
bar, the API pages) comes from the repository at build time through the local extension in
``docs/_ext/mmmdocs``. Nothing is fetched from the network (no intersphinx) and no notebook
is executed.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

DOCS_DIR = Path(__file__).resolve().parent
ROOT = DOCS_DIR.parent
sys.path.insert(0, str(DOCS_DIR / "_ext"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import mmmlib  # noqa: E402

# sphinx-autodoc-typehints calls a Sphinx API deprecated for Sphinx 10: its problem, not a warning about these pages.
warnings.filterwarnings("ignore", message=".*set_application.*is deprecated", module="sphinx_autodoc_typehints")

project = "mmm-loops"
author = "mmm-loops contributors"
copyright = "mmm-loops contributors"
release = version = mmmlib.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx_autodoc_typehints",
    "myst_nb",
    "mmmdocs",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# --- the local extension (docs/_ext/mmmdocs)
mmm_root = str(ROOT)
# Modules left out of the API pages (none: every public name is documented and checked).
mmm_api_exclude: list[str] = []

# --- references: every mmmlib reference must resolve (nitpicky); other libraries are not linked
# (no intersphinx: the build never touches the network), so their names are not checked.
nitpicky = True
THIRD_PARTY = ("numpy", "np", "pandas", "pd", "scipy", "pyarrow", "torch", "transformers", "accelerate", "datasets",
               "tokenizers", "miditok", "symusic", "matplotlib", "seaborn", "pathlib", "typing", "collections",
               "contextlib", "types", "os", "io")
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(THIRD_PARTY)})(\..*)?"),
    (r"py:.*", r"Ellipsis"),  # `...` in tuple[int, ...] hints
    (r"py:class", r"Score|Track"),  # symusic's, as dataclass fields name them (autodoc_type_aliases below)
]

# --- autodoc: the docstrings are Sphinx style (:param x:, :return:)
autodoc_member_order = "bysource"
add_module_names = False  # the module is the section title: `detect_loops(...)`, not `mmmlib.data.loops.detect_loops(...)`
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autosummary_generate = False
typehints_fully_qualified = False
typehints_document_rtype = True
always_document_param_types = True  # every parameter's type, also where the docstring has no :param:
always_use_bars_union = True



def _typehints_formatter(annotation, config=None) -> str | None:
    """symusic's ``Score`` and ``Track`` are factory objects at run time: show them by the names we write."""
    kind = type(annotation)
    if kind.__module__.startswith("symusic") and kind.__name__.endswith("Factory"):
        return f":py:class:`~symusic.{kind.__name__.removesuffix('Factory')}`"
    return None


typehints_formatter = _typehints_formatter
autodoc_type_aliases = {"Score": "symusic.Score", "Track": "symusic.Track"}  # the same, in dataclass fields
suppress_warnings = ["config.cache"]  # typehints_formatter is a function: Sphinx cannot pickle it, which is fine

# --- MyST and myst-nb: Markdown pages, the notebooks rendered as they are committed (no outputs)
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# --- HTML
html_theme = "furo"
html_title = f"mmm-loops {release}"
html_static_path = ["_static"]
html_css_files = ["mmm.css"]
html_show_sourcelink = False
smartquotes = False  # help texts and docstrings quote code: keep "synthetic" as typed
