"""Typed, validated notebook parameters.

papermill injects parameters as plain Python literals and only *warns* on unknown
names, so every notebook validates its parameters cell into one of the dataclasses
below before doing any work. A wrong type or value raises :class:`ParamError`
naming the parameter; nothing has been computed at that point.

Usage in a notebook, right after the ``parameters`` cell::

    from mmmlib.data import DataPrepParams
    p = DataPrepParams.from_namespace(globals())
    p.save(p.output_dir)          # writes params.json next to the outputs
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin

from mmmlib.core.errors import ConfigError


class ParamError(ValueError):
    """A notebook parameter has a wrong type or value (the message names the parameter)."""


def _type_ok(value: Any, annotation: Any) -> bool:
    """Return whether ``value`` fits the (simple) type ``annotation``."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        (item_type, *_) = get_args(annotation) or (Any,)
        return all(_type_ok(v, item_type) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return isinstance(value, annotation)


@dataclasses.dataclass
class Params:
    """Base class: type checks every field, then runs :meth:`~Params.check` for value checks."""

    stage: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            annotation = hints[field.name]
            if not _type_ok(value, annotation):
                raise ParamError(
                    f"parameter `{field.name}` must be {_type_name(annotation)}, "
                    f"got {value!r} ({type(value).__name__})"
                )
            if annotation is float and isinstance(value, int):
                setattr(self, field.name, float(value))
        self.check()

    def check(self) -> None:
        """Value checks; subclasses raise :class:`~mmmlib.core.params.ParamError` naming the parameter."""

    @classmethod
    def names(cls) -> list[str]:
        """The parameter names, in field order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]):
        """Build from a notebook's globals (only the dataclass's fields are read)."""
        missing = [n for n in cls.names() if n not in namespace]
        if missing:
            raise ParamError(f"missing parameter(s): {', '.join(missing)}")
        return cls(**{n: namespace[n] for n in cls.names()})

    def to_dict(self) -> dict[str, Any]:
        """``{name: value}`` of every parameter."""
        return dataclasses.asdict(self)

    def save(self, folder: str | Path) -> Path:
        """Write ``params.json`` into ``folder`` (created if needed); return its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "params.json"
        path.write_text(json.dumps({"stage": self.stage, **self.to_dict()}, indent=2, default=str))
        return path

    def summary(self) -> str:
        """One line per parameter, for the notebook's log."""
        width = max(len(n) for n in self.names())
        return "\n".join(f"{n:<{width}} = {getattr(self, n)!r}" for n in self.names())


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation))
    if annotation is type(None):
        return "None"
    if origin is not None:
        args = ", ".join(_type_name(a) for a in get_args(annotation))
        return f"{origin.__name__}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


@contextlib.contextmanager
def as_param_error(parameters: Mapping[str, str] | None = None) -> Iterator[None]:
    """Re-raise the library's :class:`~mmmlib.core.errors.ConfigError` as a :class:`ParamError`.

    :param parameters: ``{library setting: notebook parameter}`` where the names differ;
        a setting not in it is taken to be the parameter of the same name.
    """
    try:
        yield
    except ConfigError as exc:
        name = (parameters or {}).get(exc.setting, exc.setting)
        raise ParamError(f"parameter `{name}` {exc.message}") from exc


def require(condition: bool, name: str, message: str) -> None:
    """Raise :class:`ParamError` about parameter ``name`` unless ``condition`` holds."""
    if not condition:
        raise ParamError(f"parameter `{name}` {message}")


def project_root() -> Path:
    """The repository root (the folder holding ``pyproject.toml`` above this package)."""
    here = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists():
            return folder
    return Path.cwd()


def chdir_project_root() -> Path:
    """Make relative paths in notebook parameters mean "relative to the repository root".

    Notebooks run from ``notebooks/`` in JupyterLab and from the root under ``make demo``;
    both then read and write the same ``runs/...`` folders.
    """
    import os

    root = project_root()
    os.chdir(root)
    return root


def notebook_parameters(notebook: str | Path) -> dict[str, Any]:
    """The defaults of a notebook's ``parameters`` cell, as ``{name: literal}``.

    The cell holds ``name: type = literal  # help`` lines only (papermill shows the type and
    the help in ``--help-notebook``); anything else in it is an error.
    """
    import ast

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{notebook}: exactly one cell must be tagged 'parameters', found {len(cells)}")
    values: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            raise ValueError(f"{notebook}: the parameters cell may only assign literals")
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            values[target.id] = ast.literal_eval(node.value)
    return values
