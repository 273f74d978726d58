"""The notebooks in the docs: copies for myst-nb to render, and their parameter tables.

A notebook's parameters are read from its ``parameters`` cell at build time, so the guides
never drift from the notebooks: every line of that cell is ``name: type = literal  # help``
(papermill shows the type and help in ``--help-notebook``); the defaults come from
:func:`mmmlib.core.params.notebook_parameters`, the type and help from the line itself.
"""

from __future__ import annotations

import ast
import io
import os
import tokenize
from pathlib import Path

import nbformat
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from mmmlib.core.params import notebook_parameters

logger = logging.getLogger(__name__)


def write_if_changed(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` unless it holds them already; atomically (a build and a test may run at once)."""
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def copy_notebooks(source: Path, dest: Path) -> list[Path]:
    """Mirror ``source/*.ipynb`` into ``dest`` (only files whose bytes changed are written).

    :param source: the repository's ``notebooks/`` folder.
    :param dest: the folder under the docs' source that myst-nb renders from.
    :return: the copies.
    """
    dest.mkdir(parents=True, exist_ok=True)
    copies = []
    for notebook in sorted(source.glob("*.ipynb")):
        copy = dest / notebook.name
        write_if_changed(copy, notebook.read_bytes())
        copies.append(copy)
    for stale in set(dest.glob("*.ipynb")) - set(copies):
        stale.unlink()
    return copies


def _comment(line: str) -> str:
    """The text of a line's trailing ``# comment`` ("" without one)."""
    for tok in tokenize.generate_tokens(io.StringIO(line).readline):
        if tok.type == tokenize.COMMENT:
            return tok.string.lstrip("#").strip()
    return ""


def parameter_rows(notebook: Path) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, help)`` of every line of a notebook's ``parameters`` cell.

    :param notebook: the ``.ipynb`` file.
    :return: one row per parameter, in the cell's order; ``default`` is the literal as written.
    :raise ValueError: when a line has no type annotation or no help comment.
    """
    defaults = notebook_parameters(notebook)
    nb = nbformat.read(str(notebook), as_version=4)
    source = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = source.splitlines()
    rows = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.AnnAssign):
            raise ValueError(f"{notebook.name} line {node.lineno}: a parameter needs a type (`name: type = literal`)")
        name = node.target.id
        annotation = node.annotation
        kind = annotation.value if isinstance(annotation, ast.Constant) else ast.get_source_segment(source, annotation)
        help_text = _comment(lines[node.end_lineno - 1])
        if not help_text:
            raise ValueError(f"{notebook.name}: parameter `{name}` has no `# help` comment")
        literal = ast.get_source_segment(source, node.value)
        if ast.literal_eval(literal) != defaults[name]:  # the line as written is what papermill reads
            raise ValueError(f"{notebook.name}: parameter `{name}`: {literal} is not its default {defaults[name]!r}")
        rows.append((name, str(kind), literal, help_text))
    return rows


def _cell(content: str | nodes.Node) -> nodes.entry:
    entry = nodes.entry()
    entry += content if isinstance(content, nodes.Node) else nodes.paragraph(text=content)
    return entry


def _code(text: str) -> nodes.paragraph:
    para = nodes.paragraph()
    para += nodes.literal(text=text)
    return para


def table(headers: list[str], rows: list[list[str | nodes.Node]], widths: list[int],
          classes: list[str] | None = None) -> nodes.table:
    """A docutils table: header row, then one row per item (strings become paragraphs)."""
    tab = nodes.table(classes=classes or [])
    group = nodes.tgroup(cols=len(headers))
    tab += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body
    row = nodes.row()
    for header in headers:
        row += _cell(header)
    head += row
    for cells in rows:
        row = nodes.row()
        for content in cells:
            row += _cell(content)
        body += row
    return tab


class NotebookParameters(SphinxDirective):
    """``notebook-parameters PATH``: table of a notebook's parameters (PATH from the repository root)."""

    required_arguments = 1
    option_spec = {"class": directives.class_option}

    def run(self) -> list[nodes.Node]:
        path = Path(self.config.mmm_root) / self.arguments[0]
        self.env.note_dependency(str(path))
        try:
            rows = parameter_rows(path)
        except (OSError, ValueError, StopIteration) as exc:
            logger.warning("notebook-parameters: %s", exc, location=self.get_location())
            return []
        body = [[_code(name), _code(kind), _code(default), help_text] for name, kind, default, help_text in rows]
        return [table(["name", "type", "default", "help"], body, [18, 8, 20, 54], ["mmm-params"])]


def setup(app: Sphinx) -> None:
    app.add_directive("notebook-parameters", NotebookParameters)
