"""Command line of the published tokenizer: ``encode`` MIDI files into ids, ``decode`` ids into MIDI.

``mmmlib encode --tokenizer JSON [--controls none|track] FILE...`` prints one JSON object
per file, ``{"file": ..., "ids": [...]}``; with ``--controls track`` every track gets the
tokenizer's track controls (NOMML included) and the loops that
:func:`mmmlib.data.loops.detect_loops` finds (their controls and ``Loop_Start``/``Loop_End``
markers). ``mmmlib decode --tokenizer JSON IDS_JSON OUT.mid`` reads ids (a JSON list, or
an object with ``"ids"`` such as one line of ``encode``; ``-`` reads stdin), writes the MIDI
file and prints ``{"out", "tracks", "notes", "loops", "problems"}``. Problems (what had to
be dropped or mapped) go to stderr for ``encode``; unreadable inputs make the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from symusic import Score


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmmlib", description="The published MIDI-GPT-Loop tokenizer.")
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="MIDI files -> ids, one JSON object per line")
    enc.add_argument("--tokenizer", required=True, help="MMM_epl_mistral_tokenizer_with_acs.json")
    enc.add_argument("--controls", choices=("none", "track"), default="none", help="track controls and loops")
    enc.add_argument(
        "--loop-tracks",
        choices=("reference", "source"),
        default="reference",
        help="read loop track indices as the reference does (kept tracks) or as source tracks",
    )
    enc.add_argument("files", nargs="+", help="MIDI files")
    dec = sub.add_parser("decode", help="ids -> MIDI file")
    dec.add_argument("--tokenizer", required=True, help="MMM_epl_mistral_tokenizer_with_acs.json")
    dec.add_argument("ids_json", help="JSON list of ids, or an object with 'ids'; '-' for stdin")
    dec.add_argument("out", help="MIDI file to write")
    return parser


def _encode(tok, args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            score = Score(path)
        except Exception as exc:  # symusic raises several types on a broken file
            print(f"{path}: cannot read MIDI: {exc}", file=sys.stderr)
            failed += 1
            continue
        encoding = tok.encode_full(score, controls=args.controls, loop_tracks=args.loop_tracks)
        if encoding.report:
            print(f"{path}: {encoding.report.summary()}", file=sys.stderr)
        print(json.dumps({"file": path, "ids": encoding.ids}))
    return 1 if failed else 0


def _read_ids(source: str) -> list[int]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    data = json.loads(text)
    if isinstance(data, dict):
        data = data["ids"]
    return [int(i) for i in data]


def _decode(tok, args: argparse.Namespace) -> int:
    from mmmlib.core.midi import write_midi_atomic

    try:
        ids = _read_ids(args.ids_json)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"{args.ids_json}: cannot read ids: {exc}", file=sys.stderr)
        return 1
    decoded = tok.decode_full(ids)
    write_midi_atomic(decoded.score, Path(args.out))
    summary = {
        "out": args.out,
        "tracks": len(decoded.score.tracks),
        "notes": sum(len(t.notes) for t in decoded.score.tracks),
        "loops": [{"start": lp.start, "end": lp.end, "track_idx": lp.track_idx} for lp in decoded.loops],
        "problems": dict(decoded.report),
    }
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``encode`` or ``decode`` with the published tokenizer (see the module doc).

    :param argv: arguments (default: ``sys.argv[1:]``).
    :return: exit status.
    """
    from mmmlib.tokens.published.tokenizer import load_published

    args = _parser().parse_args(argv)
    try:
        tok = load_published(args.tokenizer)
    except (OSError, ValueError, KeyError) as exc:
        print(f"{args.tokenizer}: cannot load the tokenizer: {exc}", file=sys.stderr)
        return 2
    return _encode(tok, args) if args.command == "encode" else _decode(tok, args)


if __name__ == "__main__":
    sys.exit(main())
