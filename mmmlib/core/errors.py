"""The library's own exceptions.

Library code raises these with a message that names the setting at fault; it never
speaks of notebook parameters. The parameter layer (:mod:`mmmlib.core.params` and each
stage's ``params`` module) turns a :class:`ConfigError` into a
:class:`~mmmlib.core.params.ParamError` that names the notebook parameter.
"""

from __future__ import annotations


class MMMError(Exception):
    """Base class of every error mmmlib raises on purpose."""


class ConfigError(MMMError, ValueError):
    """A setting has a value the library cannot work with.

    :param setting: the name of the setting (a function argument or config key), so the
        parameter layer can map it to the notebook parameter of the same meaning.
    :param message: what is wrong and, when it helps, what to do instead.
    """

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"`{setting}` {message}")
        self.setting = setting
        self.message = message


class DataError(MMMError, ValueError):
    """Input data (a dataset folder, a results file, a tokenizer file) is missing or malformed."""
