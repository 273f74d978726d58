"""Load any tokenizer file mmmlib speaks, recognised by its content, not by its name.

Two dialects share the MMM layout but not their ids:

- mmmlib's own ``tokenizer.json`` (:class:`~mmmlib.tokens.tokenizer.MMMLoop`, written by 02);
- the published MIDI-GPT-Loop tokenizer (``MMM_epl_mistral_tokenizer_with_acs.json``, MMM on a
  ``REAPER`` base tokenizer; :class:`~mmmlib.tokens.published.PublishedTokenizer`).

:func:`load_any_tokenizer` reads either. :func:`language_fingerprint` identifies the token
*language* of a file (base vocabulary and BPE model), whatever its name, key order or
formatting: two files with the same fingerprint give the same ids, so a model trained on one
reads the other. :func:`find_tokenizer_file` finds the tokenizer a model folder ships with.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmmlib.core.errors import DataError

if TYPE_CHECKING:
    from mmmlib.tokens.published import PublishedTokenizer
    from mmmlib.tokens.tokenizer import MMMLoop

PUBLISHED_NAME = "MMM_epl_mistral_tokenizer_with_acs.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable tokenizer JSON file ({exc})") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path} is not a tokenizer JSON file (a JSON object is expected)")
    return raw


def is_published(raw: dict[str, Any]) -> bool:
    """Whether a parsed tokenizer JSON is in the published dialect (MMM on a ``REAPER`` base).

    :param raw: the parsed JSON file.
    :return: True for the published MIDI-GPT-Loop tokenizer (or one made like it).
    """
    extra = raw.get("config", {}).get("additional_params", {})
    return raw.get("tokenization") == "MMM" and extra.get("base_tokenizer") == "REAPER"


def is_tokenizer_file(path: str | Path) -> bool:
    """Whether ``path`` is a MidiTok-style tokenizer JSON file (either dialect).

    :param path: any file.
    :return: True when it holds a ``tokenization`` name and a ``config``.
    """
    path = Path(path)
    if not path.is_file() or path.suffix != ".json":
        return False
    try:
        raw = _read_json(path)
    except DataError:
        return False
    return "tokenization" in raw and "config" in raw


def dialect_of(path: str | Path) -> str:
    """``"published"`` or ``"mmmlib"``: the dialect of a tokenizer file.

    :param path: a tokenizer JSON file.
    :return: the dialect name.
    """
    return "published" if is_published(_read_json(Path(path))) else "mmmlib"


def load_any_tokenizer(path: str | Path) -> MMMLoop | PublishedTokenizer:
    """Load a tokenizer file of either dialect (see the module doc).

    :param path: a tokenizer JSON file, or a folder holding one (:func:`find_tokenizer_file`).
    :return: an :class:`MMMLoop` or a :class:`PublishedTokenizer`; both have ``len()`` (the
        vocabulary size) and ``pad_token_id``.
    :raises FileNotFoundError: when there is no such file.
    """
    path = Path(path)
    if path.is_dir():
        found = find_tokenizer_file(path)
        if found is None:
            raise FileNotFoundError(f"no tokenizer file in {path} (tokenizer.json or {PUBLISHED_NAME})")
        path = found
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file at {path}")
    if is_published(_read_json(path)):
        from mmmlib.tokens.published import load_published

        return load_published(path)
    from mmmlib.tokens.tokenizer import load_tokenizer

    return load_tokenizer(path)


def find_tokenizer_file(folder: str | Path) -> Path | None:
    """The tokenizer a model folder ships with: ``tokenizer.json``, else the published file
    name, else the only other tokenizer JSON file of the folder.

    :param folder: a model folder.
    :return: the file, or None when the folder holds no tokenizer (or several candidates).
    """
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return folder / "tokenizer.json"
    if is_tokenizer_file(folder / PUBLISHED_NAME):
        return folder / PUBLISHED_NAME
    candidates = [p for p in sorted(folder.glob("*.json")) if is_tokenizer_file(p)]
    return candidates[0] if len(candidates) == 1 else None


def language_fingerprint(path: str | Path) -> str:
    """Hex sha256 of what fixes a file's ids: its dialect, base vocabulary and BPE model.

    :param path: a tokenizer JSON file.
    :return: the fingerprint (equal for two files that give the same ids).
    """
    raw = _read_json(Path(path))
    model = raw.get("_model")
    if isinstance(model, str):
        model = json.loads(model)
    if isinstance(model, dict):  # the BPE model only: padding or truncation settings do not change ids
        model = model.get("model", model)
    fixed = {"published": is_published(raw), "vocab": raw.get("_vocab_base"), "model": model,
             "bytes": raw.get("_vocab_base_byte_to_token")}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()
