"""Checks on every notebook: thin, parameterized, committed without outputs, params files valid."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
import yaml

from mmmlib.core.params import notebook_parameters

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PARAM_FILES = sorted((REPO_ROOT / "params").glob("**/[0-9][0-9]_*.yaml"))


def parameter_names(notebook: Path) -> set[str]:
    """Names assigned in the cell tagged ``parameters`` (literals only, else an error)."""
    return set(notebook_parameters(notebook))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no numbered notebooks found"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_thin_and_clean(notebook):
    nb = nbformat.read(notebook, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown", "a notebook starts with a header: purpose, inputs, outputs"
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not cell.get("outputs"), f"{notebook.name}: commit notebooks without outputs"
        assert cell.get("execution_count") is None
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        assert not defs, f"{notebook.name}: no def/class in notebooks; move logic into mmmlib"
    parameter_names(notebook)


@pytest.mark.parametrize("params_file", PARAM_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_params_file_keys_are_notebook_parameters(params_file):
    matches = [nb for nb in NOTEBOOKS if nb.stem == params_file.stem]
    assert matches, f"{params_file}: no notebook named {params_file.stem}.ipynb"
    keys = set(yaml.safe_load(params_file.read_text()) or {})
    unknown = keys - parameter_names(matches[0])
    assert not unknown, f"{params_file}: not parameters of {matches[0].name}: {sorted(unknown)}"


def test_notebooks_use_only_names_they_define_or_import():
    """Undefined names (a stale import after a refactor) fail here, not an hour into a SLURM job."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F821,F401,F811",
                             *map(str, NOTEBOOKS)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
