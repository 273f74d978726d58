"""API pages: ``mmm-api PACKAGE`` documents a subpackage, and re-exported names resolve.

Each object is documented once, under the module that defines it
(``mmmlib.data.loops.detect_loops``); the page starts with the package's docstring and a
table of its public API (its ``__all__``), then has one section per module with every
public function, class and constant defined there (documented or not: the tests check
the docstrings). References written against a re-export (``:func:`detect_loops``` in
``mmmlib.data``'s docstring, ``mmmlib.training.load``) are resolved to that single entry
by :func:`resolve_reexport`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from functools import cache
from types import ModuleType
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode

MAX_VALUE_CHARS = 70  # constants with a longer repr are shown without their value


def submodules(package: str, exclude: list[str]) -> list[str]:
    """Every module of ``package`` (itself first), without ``__main__``, private modules and ``exclude``."""
    root = importlib.import_module(package)
    names = [package]
    if hasattr(root, "__path__"):
        names += [info.name for info in pkgutil.walk_packages(root.__path__, f"{package}.")]
    keep = []
    for name in names:
        parts = name.split(".")
        if any(p.startswith("_") for p in parts) or any(name == e or name.startswith(f"{e}.") for e in exclude):
            continue
        keep.append(name)
    return keep


@cache
def assigned_names(module: str) -> tuple[str, ...]:
    """Public names a module assigns at top level (constants), in source order."""
    source = inspect.getsource(importlib.import_module(module))
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name) and not leaf.id.startswith("_") and leaf.id not in names:
                    names.append(leaf.id)
    return tuple(names)


def _is_function(obj: Any) -> bool:
    """A plain function, or one wrapped by a decorator (``functools.lru_cache``) that keeps its name."""
    return inspect.isfunction(obj) or (callable(obj) and inspect.isfunction(getattr(obj, "__wrapped__", None)))


def defined_members(module: ModuleType) -> list[tuple[str, str]]:
    """``(kind, name)`` of the public functions, classes and constants defined in ``module``."""
    members = []
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.isclass(obj) and obj.__module__ == module.__name__:
            members.append(("exception" if issubclass(obj, BaseException) else "class", name))
        elif _is_function(obj) and obj.__module__ == module.__name__:
            members.append(("function", name))
        elif name in assigned_names(module.__name__) and not inspect.ismodule(obj) and not callable(obj):
            members.append(("data", name))
    return members


def canonical_name(obj: Any, name: str | None = None) -> str | None:
    """Where ``obj`` is documented: its module and qualified name, or, for a constant, the
    first mmmlib module that assigns ``name`` to this very object."""
    if inspect.ismodule(obj):
        return obj.__name__
    if inspect.isclass(obj) or _is_function(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    if name is None:
        return None
    for module in submodules("mmmlib", []):
        if name in assigned_names(module) and getattr(importlib.import_module(module), name, None) is obj:
            return f"{module}.{name}"
    return None


def _member_lines(modname: str, kind: str, name: str) -> list[str]:
    obj = getattr(importlib.import_module(modname), name)
    if kind in ("class", "exception"):
        lines = [f".. auto{kind}:: {modname}.{name}", "   :members:", "   :undoc-members:", "   :member-order: bysource"]
        if obj.__bases__ != (object,):  # no "Bases: object" under every plain class and dataclass
            lines.append("   :show-inheritance:")
        return [*lines, ""]
    if kind == "function":
        return [f".. autofunction:: {modname}.{name}", ""]
    lines = [f".. autodata:: {modname}.{name}"]
    if len(repr(obj)) > MAX_VALUE_CHARS:
        lines.append("   :no-value:")
    return [*lines, ""]


def api_lines(package: str, exclude: list[str]) -> list[str]:
    """The reStructuredText of a subpackage's API page (below its title)."""
    root = importlib.import_module(package)
    lines = [f".. automodule:: {package}", ""]
    public = getattr(root, "__all__", None)
    if public:
        lines += ["Public API", "----------", "",
                  f"What ``from {package} import ...`` gives (its ``__all__``), each linked to its module below.", "",
                  ".. autosummary::", "   :nosignatures:", ""]
        for name in public:
            target = canonical_name(getattr(root, name), name) or f"{package}.{name}"
            # relative to the package (autosummary refuses names that repeat the current module)
            lines.append(f"   ~{target.removeprefix(package + '.')}")
        lines.append("")
    for modname in submodules(package, exclude):
        module = importlib.import_module(modname)
        members = defined_members(module)
        if modname == package and not members:
            continue
        lines += [modname, "-" * len(modname), ""]
        if modname != package:
            lines += [f".. automodule:: {modname}", ""]
        else:
            lines += [f".. currentmodule:: {modname}", ""]
        for kind, name in members:
            lines += _member_lines(modname, kind, name)
    return lines


class MMMApi(SphinxDirective):
    """``mmm-api PACKAGE``: the package's docstring, its public API table, then each module."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        lines = api_lines(package, list(self.config.mmm_api_exclude))
        source = f"<mmm-api {package}>"
        for module in submodules(package, list(self.config.mmm_api_exclude)):
            path = inspect.getsourcefile(importlib.import_module(module))
            if path:
                self.env.note_dependency(path)
        self.state_machine.insert_input(lines, source)
        return []


class CLIUsage(SphinxDirective):
    """``mmm-cli-usage``: what ``mmmlib --help`` prints (:func:`mmmlib.cli.usage`)."""

    def run(self) -> list[nodes.Node]:
        from mmmlib.cli import usage

        text = usage()
        return [nodes.literal_block(text, text, language="text")]


def _import_dotted(name: str) -> Any:
    """The object a dotted name points to (module prefix imported, then attributes), or None."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _candidates(node: nodes.Element) -> tuple[list[str], list[str]]:
    """Full names a Python reference may mean: the specific ones (in its class, its module, as
    written), then the same name in every module of its subpackage (autosummary tables and
    inherited docstrings sit in another module's context than the one they were written in)."""
    target, modname, clsname = node["reftarget"], node.get("py:module"), node.get("py:class")
    specific, broad = [target], []
    if modname:
        specific.insert(0, f"{modname}.{target}")
        if clsname:
            specific.insert(0, f"{modname}.{clsname}.{target}")
        package = ".".join(modname.split(".")[:2])
        if package.startswith("mmmlib."):
            broad = [f"{module}.{target}" for module in submodules(package, [])]
    return [n for n in specific if n.startswith("mmmlib.")], broad


def _documented(candidate: str, domain) -> str | None:
    obj = _import_dotted(candidate)
    canonical = None if obj is None else canonical_name(obj, candidate.rsplit(".", 1)[-1])
    return canonical if canonical in domain.objects else None


def resolve_reexport(app: Sphinx, env: BuildEnvironment, node: nodes.Element, contnode: nodes.Node):
    """``missing-reference``: resolve a Python reference to an mmmlib object through its canonical name.

    A specific candidate wins; otherwise the subpackage's modules must agree on one object
    (an ambiguous or unknown name is left to Sphinx, which reports it: the build is nitpicky).
    """
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    specific, broad = _candidates(node)
    canonical = next((c for c in map(lambda n: _documented(n, domain), specific) if c), None)
    if canonical is None:
        found = {c for c in (_documented(n, domain) for n in broad) if c}
        canonical = found.pop() if len(found) == 1 else None
    if canonical is None:
        return None
    entry = domain.objects[canonical]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, canonical)


def drop_type_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """``autodoc-process-docstring``: a constant without a docstring of its own is shown without
    one, not with its type's (autodoc falls back on ``dict.__doc__`` for an undocumented dict)."""
    if what not in ("data", "attribute") or not lines or inspect.isclass(obj) or inspect.isroutine(obj):
        return
    type_doc = inspect.getdoc(type(obj)) or ""
    if type_doc and lines[0].strip() == type_doc.splitlines()[0].strip():
        lines[:] = []


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-docstring", drop_type_docstring)
    app.add_directive("mmm-api", MMMApi)
    app.add_directive("mmm-cli-usage", CLIUsage)
    app.connect("missing-reference", resolve_reexport)
