"""The package's layering: one subpackage per stage, imports only point down, no cycles.

Read from the source with ``ast`` (nothing is imported), so a new upward import or cycle
fails here before it can bite at run time. Every import counts, including those inside
functions; imports under ``if TYPE_CHECKING:`` count for the layers but not for cycles,
since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "mmmlib"
# Lowest first: a module may import from its own layer or any layer below it.
LAYERS = ("core", "data", "tokens", "training", "generation", "evaluation", "studio")
TOP = len(LAYERS)  # mmmlib/__init__, __main__ and the command line sit above every stage
MAX_TOP_LEVEL_MODULES = 5
MAX_MODULE_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """``(imported mmmlib module, is_type_checking_only)`` for every import in a module."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, bool]] = []

    def target(module: str, names: list[str]) -> list[str]:
        out = []
        for item in names:
            sub = f"{module}.{item}"
            out.append(sub if sub in modules else module)
        return out or [module]

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for inner in child.body:
                    visit_stmt(inner, True)
                for inner in child.orelse:
                    visit_stmt(inner, typing_only)
                continue
            visit_stmt(child, typing_only)

    def visit_stmt(child: ast.AST, typing_only: bool) -> None:
        if isinstance(child, ast.Import):
            found.extend((a.name, typing_only) for a in child.names if a.name.startswith("mmmlib"))
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (child.level - 1)]
                module = ".".join(base + ([child.module] if child.module else []))
            else:
                module = child.module or ""
            if module.startswith("mmmlib"):
                found.extend((t, typing_only) for t in target(module, [a.name for a in child.names]))
        visit(child, typing_only)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def layer_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return TOP


def import_graph(include_type_checking: bool) -> dict[str, set[str]]:
    modules = all_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, typing_only in imports_of(name, path, modules):
            if target != name and target in modules and (include_type_checking or not typing_only):
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_every_stage_is_a_subpackage():
    for layer in LAYERS:
        assert (PACKAGE_DIR / layer / "__init__.py").is_file(), f"mmmlib/{layer}/ is missing"


def test_no_import_cycles():
    found = cycles(import_graph(include_type_checking=False))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_only_point_down():
    upward = [f"{src} ({LAYERS[layer_of(src)] if layer_of(src) < TOP else 'top'}) imports {dst} "
              f"({LAYERS[layer_of(dst)] if layer_of(dst) < TOP else 'top'})"
              for src, targets in import_graph(include_type_checking=True).items()
              for dst in sorted(targets) if layer_of(dst) > layer_of(src)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE_DIR.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"too many modules directly in mmmlib/: {top}"


@pytest.mark.parametrize("name", sorted(all_modules()))
def test_module_size(name):
    lines = len(all_modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines (guideline ~400, limit {MAX_MODULE_LINES})"


def test_the_checker_sees_a_cycle_and_an_upward_import():
    graph = {"mmmlib.core.a": {"mmmlib.evaluation.b"}, "mmmlib.evaluation.b": {"mmmlib.core.a"}}
    assert cycles(graph) == [["mmmlib.core.a", "mmmlib.evaluation.b"]]
    assert layer_of("mmmlib.evaluation.b") > layer_of("mmmlib.core.a")


def test_benchmark_results_name_no_machine_paths():
    # committed results travel to other machines: corpora are named by folder, never by absolute path
    results = PACKAGE_DIR.parent / "benchmarks" / "results"
    offenders = [f"{p.name}: {needle}" for p in sorted(results.glob("*")) if p.is_file()
                 for needle in ("/work/", "/home/", "/tmp/", "/root/", "/Users/")
                 if needle in p.read_text(encoding="utf-8", errors="replace")]
    assert not offenders, "machine paths in benchmarks/results:\n" + "\n".join(offenders)


def test_import_linter_contract_is_kept():
    # The same layers as LAYERS above, as the ecosystem's tool reads them from pyproject.toml.
    import shutil
    import subprocess
    import sys

    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).is_file():
        pytest.skip("import-linter is not installed (make setup installs it)")
    proc = subprocess.run([exe], cwd=PACKAGE_DIR.parent, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout
    layers = tomllib.loads((PACKAGE_DIR.parent / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    assert layers["layers"] == [f"mmmlib.{name}" for name in reversed(LAYERS)], "pyproject and LAYERS disagree"
