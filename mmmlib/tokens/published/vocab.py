"""The published tokenizer file: its settings, base vocabulary, byte alphabet and BPE model.

``MMM_epl_mistral_tokenizer_with_acs.json`` was written by a MidiTok fork (MMM on a
``REAPER`` base tokenizer). Upstream MidiTok refuses it, so we read the JSON ourselves and
derive every numeric grid the fork derives from its config:

- time: 1920 ticks per quarter (``microtiming_factor`` 160 x 12 positions per quarter),
  ``Position_0..71`` and ``Duration_1..71`` in twelfths of a quarter (the longest time
  signature, 12/8 or 6/4, is 6 quarters), ``Delta_1..80`` ticks after a ``Position``;
- the REMI duration grid of ``beat_res`` that durations are snapped to before they become
  ``Duration`` tokens (see :mod:`.preprocess`);
- velocities, tempos and time signatures exactly as MidiTok builds them.

The vocabulary *ids* are never derived: they are read from ``_vocab_base``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

TPQ = 1920  # ticks per quarter of every preprocessed or decoded score
DELTA_FACTOR = 160  # ticks per Position step; Delta tokens count ticks inside it
METASPACE = "\u2581"  # the Metaspace word marker of the BPE model


@dataclass(frozen=True)
class Grids:
    """Numeric grids of the tokenizer, in ticks at :data:`TPQ` unless said otherwise."""

    res: int  # positions (and duration units) per quarter
    max_pos: int  # number of Position values (and Duration values + 1)
    delta_range: int  # largest Delta value
    pitch_range: tuple[int, int]  # [lo, hi) for pitched tracks
    drum_pitch_range: tuple[int, int]  # [lo, hi) for drum tracks
    velocities: np.ndarray  # the velocity bins, ascending
    tempos: np.ndarray  # the tempo bins (qpm), ascending, rounded to 2 decimals
    tempos_mspq: np.ndarray  # their microseconds per quarter, ascending (tempos descending)
    tempo_of_mspq: np.ndarray  # index into ``tempos`` of each entry of ``tempos_mspq``
    default_tempo_idx: int  # the tempo bin closest to 120 qpm
    time_signatures: tuple[tuple[int, int], ...]
    duration_grid: np.ndarray  # REMI durations in ticks for a 1920-tick beat, ascending
    programs: frozenset[int]  # programs kept (-1 = drums)


@dataclass
class PublishedVocab:
    """Everything read from the JSON file: settings, base vocabulary and the BPE model."""

    config: dict[str, Any]
    token_to_id: dict[str, int]
    id_to_token: list[str]
    id_to_byte: list[str]
    byte_to_id: dict[str, int]
    hf: Tokenizer
    grids: Grids
    sha256: str = ""

    @property
    def base_size(self) -> int:
        """Number of base tokens (811 for the published file)."""
        return len(self.id_to_token)

    @property
    def size(self) -> int:
        """Number of ids of the BPE model (16,000 for the published file)."""
        return self.hf.get_vocab_size()


def _durations_grid(beat_res: dict[str, int], ticks_per_beat: int) -> np.ndarray:
    """MidiTok's ``Duration`` values ``(beat, pos, res)`` of ``beat_res``, in ticks, ascending.

    Every range ``lo_hi`` contributes ``beat`` in ``[lo, hi)`` times ``res`` positions; one
    last value ``(max hi, 0, res of that range)`` is added and the zero duration removed.
    """
    ranges = [(tuple(int(x) for x in key.split("_")), res) for key, res in beat_res.items()]
    values: list[tuple[int, int, int]] = []
    for (lo, hi), res in ranges:
        values += [(beat, pos, res) for beat in range(lo, hi) for pos in range(res)]
    last_range, last_res = max(ranges)
    values.append((last_range[1], 0, last_res))
    del values[0]
    return np.array([(b * r + p) * ticks_per_beat // r for b, p, r in values], dtype=np.int64)


def _grids(config: dict[str, Any]) -> Grids:
    """Derive the numeric grids the fork derives from its config (see the module doc)."""
    ts_range = {int(den): nums for den, nums in config["time_signature_range"].items()}
    time_signatures = tuple((num, den) for den, nums in ts_range.items() for num in nums)
    longest = max(time_signatures, key=lambda ts: ts[0] / ts[1])
    max_quarters = int(np.ceil(4 * longest[0] / longest[1]))
    res = max(int(v) for v in config["beat_res"].values())
    if TPQ != DELTA_FACTOR * res:
        raise ValueError(f"unsupported resolution: {DELTA_FACTOR} x {res} != {TPQ} ticks per quarter")
    # linspace then cast to intc, as MidiTok does: the bins are truncated, not rounded.
    velocities = np.linspace(0, 127, int(config["num_velocities"]) + 1, dtype=np.intc)[1:].astype(np.int64)
    lo, hi = config["tempo_range"]
    space = np.geomspace if config.get("log_tempos") else np.linspace
    tempos = space(lo, hi, int(config["num_tempos"])).round(2)
    mspq = 60_000_000 / tempos
    order = np.argsort(mspq, kind="stable")
    return Grids(
        res=res,
        max_pos=res * max_quarters,
        delta_range=DELTA_FACTOR // 2,
        pitch_range=tuple(config["pitch_range"]),
        drum_pitch_range=tuple(config["drums_pitch_range"]),
        velocities=velocities,
        tempos=tempos,
        tempos_mspq=mspq[order],
        tempo_of_mspq=order,
        default_tempo_idx=int(np.argmin(np.abs(tempos - 120))),
        time_signatures=time_signatures,
        duration_grid=_durations_grid(config["beat_res"], TPQ),
        programs=frozenset(int(p) for p in config["programs"]),
    )


def check_supported(raw: dict[str, Any]) -> None:
    """Raise ``ValueError`` when the file is not an MMM-on-REAPER tokenizer we can speak."""
    config = raw.get("config", {})
    extra = config.get("additional_params", {})
    problems = []
    if raw.get("tokenization") != "MMM" or extra.get("base_tokenizer") != "REAPER":
        problems.append("not MMM with a REAPER base tokenizer")
    if not extra.get("use_microtiming", False):
        problems.append("microtiming disabled")
    if config.get("encode_ids_split") != "bar":
        problems.append(f"encode_ids_split {config.get('encode_ids_split')!r} (only 'bar')")
    if not raw.get("_model"):
        problems.append("no BPE model")
    for key in ("signed_microtiming", "joint_microtiming", "use_dur_microtiming"):
        if extra.get(key):
            problems.append(f"{key} (not used by the published file)")
    if problems:
        raise ValueError("unsupported tokenizer file: " + "; ".join(problems))


def load_vocab(path: str | Path) -> PublishedVocab:
    """Read a published tokenizer JSON file.

    :param path: path of ``MMM_epl_mistral_tokenizer_with_acs.json`` (or a file like it).
    :return: the parsed vocabulary, grids and BPE model.
    :raises ValueError: when the file is not a tokenizer of this kind.
    """
    data = Path(path).read_bytes()
    raw = json.loads(data)
    check_supported(raw)
    token_to_id = {tok: int(i) for tok, i in raw["_vocab_base"].items()}
    id_to_token = [""] * (max(token_to_id.values()) + 1)
    for tok, i in token_to_id.items():
        id_to_token[i] = tok
    byte_to_token = raw["_vocab_base_byte_to_token"]
    id_to_byte = [""] * len(id_to_token)
    for byte, tok in byte_to_token.items():
        id_to_byte[token_to_id[tok]] = byte
    model = raw["_model"]
    hf = Tokenizer.from_str(model if isinstance(model, str) else json.dumps(model))
    return PublishedVocab(
        config=raw["config"],
        token_to_id=token_to_id,
        id_to_token=id_to_token,
        id_to_byte=id_to_byte,
        byte_to_id={b: i for i, b in enumerate(id_to_byte)},
        hf=hf,
        grids=_grids(raw["config"]),
        sha256=hashlib.sha256(data).hexdigest(),
    )
