"""The documentation site builds with warnings as errors and documents the whole public API.

One Sphinx build (``docs/`` into ``tmp_path``, nitpicky, ``-W --keep-going``; about 30-40 s on
2 cores) is shared by the tests below: a broken reference, bad reStructuredText in a docstring
or a notebook parameter without a type or help comment fails the build; a public function or
class without a docstring, or missing from the API pages, fails
:func:`test_every_public_name_has_a_docstring_and_an_api_entry`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

for _module in ("sphinx", "furo", "myst_nb", "sphinx_autodoc_typehints"):
    pytest.importorskip(_module, reason=f"{_module} is not installed (pip install -e '.[docs]')")

from mmmlib.core.params import notebook_parameters  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS_DIR = REPO_ROOT / "docs"
SUBPACKAGES = ("core", "data", "tokens", "training", "generation", "evaluation")
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("0*.ipynb"))
INVENTORY_LINE = re.compile(r"(?x)(.+?)\s+(\S+)\s+(-?\d+)\s+?(\S*)\s+(.*)")


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory) -> Path:
    """The site, built once for this module (fails here, with Sphinx's messages, on any warning)."""
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
               "-d", str(out / "doctrees"), str(DOCS_DIR), str(out / "html")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, f"docs build failed (warnings are errors):\n{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}"
    return out / "html"


def read_inventory(path: Path) -> dict[str, tuple[str, str]]:
    """``{name: (domain:role, uri)}`` from a Sphinx ``objects.inv`` (format version 2)."""
    header_and_body = path.read_bytes().split(b"\n", 4)
    assert header_and_body[0] == b"# Sphinx inventory version 2", header_and_body[0]
    entries = {}
    for line in zlib.decompress(header_and_body[4]).decode().splitlines():
        match = INVENTORY_LINE.match(line.rstrip())
        if match:
            name, role, _, uri, _ = match.groups()
            entries[name] = (role, uri)
    return entries


def public_objects(module_name: str) -> dict[str, object]:
    """A subpackage's ``__all__``; for a module without one (``mmmlib.cli``), the public names it defines."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, obj in vars(module).items() if not n.startswith("_")
                 and getattr(obj, "__module__", module_name) == module_name and not inspect.ismodule(obj)]
    return {name: getattr(module, name) for name in names}


def is_function_or_class(obj: object) -> bool:
    wrapped = getattr(obj, "__wrapped__", None)  # functools.lru_cache and friends
    return inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isfunction(wrapped)


def own_docstring(obj: object) -> str:
    """The object's own docstring: not a parent class's, not the signature a dataclass makes up."""
    doc = (vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__) or ""
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""  # dataclasses write "Name(field: type, ...)" when there is no docstring
    return doc.strip()


def test_docs_build_with_warnings_as_errors(html_dir):
    pages = {p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")}
    expected = {"index.html", "getting_started.html", "api/cli.html", "concepts/nomml.html",
                *(f"api/{name}.html" for name in SUBPACKAGES),
                *(f"guides/{nb.stem}.html" for nb in NOTEBOOKS),
                *(f"_generated/notebooks/{nb.stem}.html" for nb in NOTEBOOKS)}
    assert expected <= pages, f"pages missing: {sorted(expected - pages)}"


@pytest.mark.parametrize("module_name", [*(f"mmmlib.{name}" for name in SUBPACKAGES), "mmmlib.cli"])
def test_every_public_name_has_a_docstring_and_an_api_entry(html_dir, module_name):
    inventory = read_inventory(html_dir / "objects.inv")
    undocumented, missing = [], []
    for name, obj in public_objects(module_name).items():
        if inspect.ismodule(obj):
            full_name = obj.__name__
        elif is_function_or_class(obj):
            full_name = f"{obj.__module__}.{obj.__qualname__}"
            if not own_docstring(obj):
                undocumented.append(full_name)
        else:  # a constant: documented under the module that assigns it
            matches = [n for n in inventory if n.endswith(f".{name}") and n.startswith("mmmlib.")]
            full_name = matches[0] if matches else f"{module_name}.{name}"
        role, uri = inventory.get(full_name, ("", ""))
        if not role.startswith("py:") or not uri.startswith("api/"):
            missing.append(full_name)
    assert not undocumented, f"public names of {module_name} without a docstring: {undocumented}"
    assert not missing, (f"public names of {module_name} missing from the API pages: {missing} "
                         "(a module left out by mmm_api_exclude in docs/conf.py?)")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_guides_list_every_notebook_parameter(html_dir, notebook):
    html = (html_dir / "guides" / f"{notebook.stem}.html").read_text()
    table = re.search(r'<table class="[^"]*mmm-params.*?</table>', html, re.S)
    assert table, f"no parameter table in the {notebook.stem} guide"
    names = re.findall(r'<tr class="row-(?:odd|even)"><td><p><code[^>]*><span class="pre">(\w+)</span>', table.group(0))
    assert names == list(notebook_parameters(notebook)), "the guide's table is not the notebook's parameters cell"


def test_concept_pages_show_generated_figure_and_encoded_bar(html_dir):
    nomml = (html_dir / "concepts" / "nomml.html").read_text()
    image = re.search(r'<img[^>]+src="\.\./(_images/nomml_grids[^"]*\.png)"', nomml)
    assert image and (html_dir / image.group(1)).stat().st_size > 10_000, "the NOMML grids figure is missing"
    tokens = (html_dir / "concepts" / "tokens.html").read_text()
    for token in ("Track_Start", "ACTrackNOMML_0", "ACTrackLoopCount_1", "Bar_None", "Position_18", "MicroTiming_3"):
        assert f'<span class="pre">{token}</span>' in tokens, f"{token} missing from the encoded bar"
