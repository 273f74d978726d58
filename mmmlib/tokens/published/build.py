"""Make a new tokenizer file in the published dialect: same base vocabulary, new BPE merges.

A model trained here should speak the published MIDI-GPT-Loop language, so that it and the
published checkpoint are interchangeable in 04/05. What fixes that language is the base
vocabulary (token names and their ids), the byte alphabet that BPE works on and the
layout of the BPE model (``encode_ids_split: "bar"``, Metaspace ``▁`` words). This module
builds all three from the dialect's settings (:func:`dialect_config`), without the published
file: the base vocabulary is derived from the settings in the order MidiTok's REAPER and MMM
tokenizers list it (a test checks it equals the published file token for token, id for id),
and :func:`train_bpe_model` learns merges on a corpus's bar words with 🤗 ``tokenizers``.

The result is a JSON file :func:`mmmlib.tokens.published.load_published` (and
:func:`mmmlib.tokens.loading.load_any_tokenizer`) reads like the published one. With
``vocab_size`` 0 the file has no merges: every base token is its own id (plus ``▁``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mmmlib.core.files import write_text_atomic
from mmmlib.tokens.published.vocab import DELTA_FACTOR, METASPACE, _grids

FIRST_CODEPOINT = 33  # base id i is the character chr(33 + i), as MidiTok assigns them
SPECIAL_TOKENS = ["PAD_None", "BOS_None", "EOS_None", "Infill_Bar", "Infill_Track", "FillBar_Start",
                  "FillBar_End", "Track_Start", "Track_End"]
NOTE_DURATION_NAMES = ["Whole", "Half", "Quarter", "Eight", "Sixteenth", "ThirtySecond"]
MAX_LOOP_COUNT = 5  # ACLoopCount_5+ means five or more
LOOP_DURATION_BINS = 7


def dialect_config() -> dict[str, Any]:
    """The settings of the published dialect (those of MIDI-GPT-Loop's tokenizer file).

    :return: a fresh ``config`` dict, as MidiTok writes it in a tokenizer file.
    """
    programs = [*range(127), -1]
    return {
        "pitch_range": [21, 109], "beat_res": {"0_1": 12, "1_2": 4, "2_4": 2, "4_8": 1},
        "num_velocities": 88, "remove_duplicated_notes": False, "encode_ids_split": "bar",
        "special_tokens": list(SPECIAL_TOKENS), "use_velocities": True,
        "use_note_duration_programs": [*range(128), -1], "use_chords": False, "use_rests": False,
        "use_tempos": True, "use_time_signatures": True, "use_sustain_pedals": False,
        "use_pitch_bends": False, "use_programs": True, "use_pitch_intervals": False,
        "use_pitchdrum_tokens": True, "default_note_duration": 0.5, "programs": programs,
        "one_token_stream_for_programs": False, "program_changes": True,
        "beat_res_rest": {"0_1": 8, "1_2": 4, "2_12": 2}, "chord_maps": {}, "chord_tokens_with_root_note": False,
        "chord_unknown": None, "num_tempos": 48, "tempo_range": [50, 200], "log_tempos": False,
        "delete_equal_successive_tempo_changes": False,
        "time_signature_range": {"8": [3, 12, 6], "4": [5, 6, 3, 2, 1, 4]},
        "delete_equal_successive_time_sig_changes": False, "sustain_pedal_duration": False,
        "pitch_bend_range": [-8192, 8191, 32], "max_pitch_interval": 16, "pitch_intervals_max_time_dist": 1,
        "drums_pitch_range": [27, 88],
        "ac_polyphony_track": True, "ac_polyphony_bar": True, "ac_polyphony_min": 1, "ac_polyphony_max": 6,
        "ac_pitch_class_bar": True, "ac_note_density_track": True, "ac_note_density_track_min": 0,
        "ac_note_density_track_max": 18, "ac_note_density_bar": True, "ac_note_density_bar_max": 18,
        "ac_note_duration_bar": True, "ac_note_duration_track": True, "ac_repetition_track": True,
        "ac_repetition_track_num_bins": 10, "ac_repetition_track_num_consec_bars": 4,
        "ac_nomml_track": True, "ac_loops_track": True, "ac_nomml_track_depth": 6,
        "additional_params": {"base_tokenizer": "REAPER", "use_microtiming": True, "use_loops": True},
    }


def _control_tokens(config: dict[str, Any]) -> list[str]:
    """The attribute-control tokens, in the order the fork's tokenizer adds them."""
    out: list[str] = []
    lo, hi = int(config["ac_polyphony_min"]), int(config["ac_polyphony_max"])
    for scope, on in (("Track", config.get("ac_polyphony_track")), ("Bar", config.get("ac_polyphony_bar"))):
        if on:
            out += [f"AC{scope}OnsetPolyphony{bound}_{v}" for bound in ("Min", "Max") for v in range(lo, hi + 1)]
    if config.get("ac_pitch_class_bar"):
        out += [f"ACBarPitchClass_{v}" for v in range(12)]
    if config.get("ac_note_density_track"):
        top = int(config["ac_note_density_track_max"])
        lowest = int(config.get("ac_note_density_track_min", 0))
        out += [f"ACTrackNoteDensity{bound}_{v}" for bound in ("Min", "Max") for v in range(lowest, top)]
        out += [f"ACTrackNoteDensity{bound}_{top}+" for bound in ("Min", "Max")]
    if config.get("ac_note_density_bar"):
        top = int(config["ac_note_density_bar_max"])
        out += [f"ACBarNoteDensity_{v}" for v in range(top)] + [f"ACBarNoteDensity_{top}+"]
    for scope in ("Bar", "Track"):
        if config.get(f"ac_note_duration_{scope.lower()}"):
            out += [f"AC{scope}NoteDuration{name}_{v}" for name in NOTE_DURATION_NAMES for v in (0, 1)]
    if config.get("ac_repetition_track"):
        bins = np.linspace(0, 1, int(config["ac_repetition_track_num_bins"]))
        out += [f"ACTrackRepetition_{v:.2f}" for v in bins]
    if config.get("ac_nomml_track"):
        out += [f"ACMedianMetricLevel_{v}" for v in range(2 * int(config["ac_nomml_track_depth"]) + 1)]
    if config.get("ac_loops_track"):
        out += [f"ACLoopCount_{v}" for v in range(MAX_LOOP_COUNT)] + [f"ACLoopCount_{MAX_LOOP_COUNT}+"]
        out += [f"ACLoopDurationQuantile_{v}" for v in range(1, LOOP_DURATION_BINS + 1)]
    return out


def base_vocabulary(config: dict[str, Any]) -> list[str]:
    """Every base token of the dialect, in id order.

    :param config: the dialect's settings (:func:`dialect_config`).
    :return: the tokens; token ``i`` has id ``i``.
    """
    grids = _grids(config)
    tokens = list(config["special_tokens"]) + ["Bar_None"]
    tokens += [f"Pitch_{p}" for p in range(*grids.pitch_range)]
    tokens += [f"Velocity_{v}" for v in grids.velocities.tolist()]
    tokens += [f"Duration_{d}" for d in range(1, grids.max_pos)]
    tokens += [f"Position_{p}" for p in range(grids.max_pos)]
    tokens += [f"PitchDrum_{p}" for p in range(*grids.drum_pitch_range)]
    tokens += [f"Tempo_{float(t)}" for t in grids.tempos.tolist()]
    tokens += [f"Program_{p}" for p in config["programs"]]
    tokens += [f"TimeSig_{num}/{den}" for num, den in grids.time_signatures]
    tokens += [f"Delta_{d}" for d in range(1, DELTA_FACTOR // 2 + 1)] + ["DeltaDirection_0"]
    if config.get("additional_params", {}).get("use_loops"):
        tokens += ["Loop_Start", "Loop_End"]
    return tokens + _control_tokens(config)


def byte_of(base_id: int) -> str:
    """The character that stands for a base id in BPE words."""
    return chr(FIRST_CODEPOINT + base_id)


def train_bpe_model(words: Iterable[str], vocab_size: int, base_size: int, specials: list[str],
                    show_progress: bool = True) -> dict[str, Any]:
    """Learn BPE merges on bar words and lay the model out as the published file does.

    The model's first ids are the base characters (id = base id), then ``▁``, then the
    learned pieces in the order they were learned; special tokens are added tokens, so they
    are never merged. The pre-tokenizer and decoder are Metaspace (``▁`` before every word).

    :param words: bar words, each a string of base characters (:func:`byte_of`), without
        special tokens (training windows keep those as single ids).
    :param vocab_size: ids of the model; at most ``base_size + 1`` learns no merge.
    :param base_size: number of base tokens.
    :param specials: the special tokens (their characters become added tokens).
    :param show_progress: show the trainer's progress bar.
    :return: the 🤗 ``tokenizers`` JSON of the model, as a dict.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    alphabet = [byte_of(i) for i in range(base_size)]
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab[METASPACE] = base_size
    merges: list[list[str]] = []
    if vocab_size > base_size + 1:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=[*alphabet, METASPACE],
                                      special_tokens=[], show_progress=show_progress,
                                      limit_alphabet=base_size + 1)
        tok.train_from_iterator(words, trainer=trainer)
        learned = json.loads(tok.to_str())["model"]
        for piece, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
            if piece not in vocab:
                vocab[piece] = len(vocab)
        merges = [m if isinstance(m, list) else m.split(" ") for m in learned["merges"]]
    special_chars = [byte_of(i) for i in range(len(specials))]
    metaspace = {"type": "Metaspace", "replacement": METASPACE, "prepend_scheme": "always", "split": True}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": ch, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, ch in enumerate(special_chars)],
        "normalizer": None, "pre_tokenizer": metaspace, "post_processor": None, "decoder": dict(metaspace),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def tokenizer_file(config: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """The whole tokenizer file (what :func:`~mmmlib.tokens.published.vocab.load_vocab` reads).

    :param config: the dialect's settings.
    :param model: the BPE model (:func:`train_bpe_model`).
    :return: the JSON object.
    """
    tokens = base_vocabulary(config)
    return {
        "config": config, "tokenization": "MMM", "miditok_version": "3.0.5.post1",
        "_vocab_base": {tok: i for i, tok in enumerate(tokens)},
        "_model": json.dumps(model, ensure_ascii=False),
        "_vocab_base_byte_to_token": {byte_of(i): tok for i, tok in enumerate(tokens)},
    }


def write_tokenizer_file(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a tokenizer file atomically (a reader never sees half of it).

    :param path: destination.
    :param data: :func:`tokenizer_file`'s object.
    :return: the path.
    """
    return write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
