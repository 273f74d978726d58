"""Sphinx extension of the mmm-loops documentation: everything that is generated at build time.

- :mod:`.notebooks`: copies ``notebooks/*.ipynb`` into ``docs/_generated/notebooks/`` (myst-nb renders
  them, never executes them) and the ``notebook-parameters`` directive (the table of a notebook's
  ``parameters`` cell);
- :mod:`.concepts`: the NOMML grid figure and levels table, and the annotated encoded bar, computed
  with :mod:`mmmlib.data.nomml` and :func:`mmmlib.tokens.build_tokenizer`;
- :mod:`.api`: the ``mmm-api`` directive (one API page per subpackage: its public API, then every
  module) and the resolver of references to re-exported names (``mmmlib.data.detect_loops`` is
  documented once, as ``mmmlib.data.loops.detect_loops``).

Generated files go to ``docs/_generated/`` (git-ignored); nothing is fetched from the network.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx

from mmmdocs import api, concepts, notebooks

DOCS_DIR = Path(__file__).resolve().parents[2]
GENERATED_DIR = DOCS_DIR / "_generated"


def _generate(app: Sphinx, config) -> None:
    """Write the generated sources before Sphinx looks for documents."""
    GENERATED_DIR.mkdir(exist_ok=True)
    notebooks.copy_notebooks(Path(config.mmm_root) / "notebooks", GENERATED_DIR / "notebooks")
    concepts.write_nomml_figure(GENERATED_DIR / "nomml_grids.png")


def setup(app: Sphinx) -> dict:
    app.add_config_value("mmm_root", str(DOCS_DIR.parent), "env")
    app.add_config_value("mmm_api_exclude", [], "env")
    app.connect("config-inited", _generate)
    notebooks.setup(app)
    concepts.setup(app)
    api.setup(app)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
