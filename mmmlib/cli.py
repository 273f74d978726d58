"""One command line for the whole pipeline: ``python -m mmmlib <command>`` (also ``mmmlib <command>``).

Each command forwards its arguments to the ``main(argv)`` of the module that does the
work, so ``mmmlib <command> --help`` shows that command's own options. Modules are
imported only when their command runs: ``mmmlib nomml`` never loads torch.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose ``main(argv)`` runs it, and one line of help."""

    module: str
    help: str


COMMANDS = {
    "synth": Command("mmmlib.data.synth", "write the embedded synthetic corpus (MIDI files + manifest.csv)"),
    "nomml": Command("mmmlib.data.nomml", "NOMML of every track: one JSON object per line"),
    "loops": Command("mmmlib.data.loops", "loops of every track (exact, or --expressive): one JSON object per line"),
    "data": Command("mmmlib.data.preparation", "data preparation: `data merge OUTPUT_DIR --num-shards N` joins shards"),
    "tokenizer": Command("mmmlib.tokens.stats", "`tokenizer roundtrip FILE...`: encode, decode, compare"),
    "encode": Command("mmmlib.tokens.published.cli", "published MIDI-GPT-Loop tokenizer: `encode --tokenizer JSON FILE...` -> ids"),
    "decode": Command("mmmlib.tokens.published.cli", "published MIDI-GPT-Loop tokenizer: `decode --tokenizer JSON IDS OUT.mid`"),
    "tokens": Command("mmmlib.tokens.dataset", "training samples: `tokens bpe` trains BPE once, `tokens merge` joins shards"),
    "train": Command("mmmlib.training.__main__", "one training process from a 03 params.json (what `accelerate launch` runs)"),
    "evaluate": Command("mmmlib.evaluation.report", "`evaluate merge LABEL_DIR` / `evaluate report NOTEBOOK HTML`"),
    "demo-summary": Command("mmmlib.evaluation.demo_summary", "print where `make demo` wrote its outputs and the headline"),
}


# Commands whose module parses the command name itself (``encode`` and ``decode`` share one parser).
SUBCOMMAND_MODULES = frozenset({"encode", "decode"})


def usage() -> str:
    """The top-level help: every command with its one line."""
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: mmmlib <command> [options]   (python -m mmmlib <command> ...)", "",
             "Controllable multitrack MIDI loop generation (MIDI-GPT-Loop): one command per pipeline task.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {command.help}" for name, command in COMMANDS.items()]
    lines += ["", "`mmmlib <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``mmmlib <command> [args...]``; return its exit status.

    :param argv: the arguments after the program name (default: ``sys.argv[1:]``).
    :return: the command's exit status (0 on success, 2 for an unknown command).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"mmmlib: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name].module)
    if name in SUBCOMMAND_MODULES:  # the module has its own subcommands: the command name is the first one
        rest = [name, *rest]
    try:
        status = module.main(rest)
    except BrokenPipeError:  # `mmmlib loops ... | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    return int(status or 0)
