"""The published MIDI-GPT-Loop tokenizer (mmmlib.tokens.published) against the reference's golden files.

The golden files (``../shared/published/golden``) were made by the reference implementation
(a MidiTok fork) from the real MIDI files of ``../shared/corpora/gigamidi-tests``; tests that
need them skip when ``../shared`` is absent. The other tests build their own inputs.
"""

from __future__ import annotations

import gzip
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Score, TimeSignature, Track
from tokenizers import Tokenizer, models, pre_tokenizers

from mmmlib.tokens.published.bpe import BPE
from mmmlib.tokens.published.controls import (
    loop_bin,
    loop_controls,
    note_durations,
    onset_polyphony,
    repetition,
)
from mmmlib.tokens.published.decoder import decode_segments, reference_segments, split_tracks
from mmmlib.tokens.published.encoder import microtiming
from mmmlib.tokens.published.preprocess import closest, delay_time_signatures
from mmmlib.tokens.published.vocab import PublishedVocab

SHARED = Path(__file__).resolve().parents[2] / "shared"
PUBLISHED = SHARED / "published"
TOKENIZER = PUBLISHED / "MMM_epl_mistral_tokenizer_with_acs.json"
CORPUS = SHARED / "corpora" / "gigamidi-tests"
REFERENCE_FAILS = ("6338816_Etude No. 4", "POP909_191", "empty")
# symusic 0.6 (ours) and 0.5 (the reference's) give a note-on and a program change at the
# same tick to different program tracks; only this file has one (MIDI track 6, channel 1).
SYMUSIC_READING_DIFFERS = {"All The Small Things"}

needs_shared = pytest.mark.skipif(
    not TOKENIZER.is_file(), reason=f"published tokenizer not found at {TOKENIZER}"
)


# --------------------------------------------------------------------------- golden files


@pytest.fixture(scope="module")
def tok():
    from mmmlib.tokens.published import load_published

    return load_published(TOKENIZER)


@pytest.fixture(scope="module")
def golden(tok) -> dict[str, dict]:
    """Golden entries with our encodings of the same file, computed once."""
    out = {}
    for path in sorted((PUBLISHED / "golden").glob("*.json.gz")):
        name = path.name[: -len(".json.gz")]
        with gzip.open(path) as f:
            g = json.load(f)
        score = Score(str(CORPUS / f"{name}.mid"))
        g["ours_plain"] = tok.encode_full(score)
        g["ours_track"] = tok.encode_full(score, controls="track", loops=g["loops"])
        g["ours_auto"] = tok.encode_full(score, controls="track")  # loops detected, as the CLI does
        out[name] = g
    assert len(out) == 27
    return out


def _mismatches(golden: dict[str, dict], ours_key: str, attr: str, ref_key: str) -> set[str]:
    return {name for name, g in golden.items() if getattr(g[ours_key], attr) != g[ref_key]}


@needs_shared
@pytest.mark.parametrize(
    ("ours_key", "ref_ids", "ref_tokens"),
    [
        ("ours_plain", "ids_plain", "tokens_plain"),
        ("ours_track", "ids_track_controls", "tokens_track_controls"),
        ("ours_auto", "ids_track_controls", "tokens_track_controls"),
    ],
)
def test_encoding_equals_golden(golden, ours_key, ref_ids, ref_tokens):
    assert _mismatches(golden, ours_key, "tokens", ref_tokens) <= SYMUSIC_READING_DIFFERS
    assert _mismatches(golden, ours_key, "ids", ref_ids) <= SYMUSIC_READING_DIFFERS


@needs_shared
def test_symusic_reading_difference_is_confined(golden):
    """Where symusic reads the file differently, only the program-split tracks' notes move."""
    for name in SYMUSIC_READING_DIFFERS:
        ours, ref = golden[name]["ours_plain"].tokens, golden[name]["tokens_plain"]
        ours_tracks, ref_tracks = split_tracks(ours), split_tracks(ref)
        assert len(ours_tracks) == len(ref_tracks)
        equal = [a == b for a, b in zip(ours_tracks, ref_tracks, strict=True)]
        assert sum(equal) >= len(equal) - 3
        count = sum(t.startswith(("Pitch", "PitchDrum")) for t in ours)
        assert count == sum(t.startswith(("Pitch", "PitchDrum")) for t in ref)


def _as_golden(score: Score) -> dict:
    return {
        "tpq": score.ticks_per_quarter,
        "tracks": [
            {
                "program": t.program,
                "is_drum": t.is_drum,
                "notes": [[n.time, n.duration, n.pitch, n.velocity] for n in t.notes],
            }
            for t in score.tracks
        ],
        "tempos": [[t.time, round(t.qpm, 2)] for t in score.tempos],
        "time_signatures": [[t.time, t.numerator, t.denominator] for t in score.time_signatures],
    }


@needs_shared
def test_decoding_equals_golden(tok, golden):
    """The golden decodings, made by slicing base tokens at BPE indices (see reference_segments)."""
    bad = []
    for name, g in golden.items():
        plain, _ = tok.decode_like_reference(g["ids_plain"], g["tokens_plain"])
        track, loops = tok.decode_like_reference(g["ids_track_controls"], g["tokens_track_controls"])
        if _as_golden(plain) != g["decoded_plain"]:
            bad.append((name, "decoded_plain"))
        if _as_golden(track) != g["decoded_track_controls"]:
            bad.append((name, "decoded_track_controls"))
        if [{"start": lp.start, "end": lp.end, "track_idx": lp.track_idx} for lp in loops] != g[
            "decoded_loops"
        ]:
            bad.append((name, "decoded_loops"))
    assert bad == []


@needs_shared
@pytest.mark.parametrize("name", ["test_midi", "Maestro_1", "Aicha"])
def test_decode_inverts_encode(tok, name):
    """Real decoding gives back every preprocessed note, durations on the 1/12 quarter grid."""
    score = Score(str(CORPUS / f"{name}.mid"))
    encoding = tok.encode_full(score, controls="track")
    decoded = tok.decode_full(encoding.ids)
    assert decoded.tokens == encoding.tokens
    assert not decoded.report
    prepared = tok.preprocess(score).score
    assert len(decoded.score.tracks) == len(prepared.tracks)
    for src, out in zip(prepared.tracks, decoded.score.tracks, strict=True):
        a, b = src.notes.numpy(), out.notes.numpy()
        dur = np.clip((a["duration"] + 80) // 160, 1, 71) * 160
        assert sorted(zip(a["time"], dur, a["pitch"], a["velocity"], strict=True)) == sorted(
            zip(b["time"], b["duration"], b["pitch"], b["velocity"], strict=True)
        )
        assert (out.is_drum, out.program if not out.is_drum else -1) == (
            src.is_drum,
            src.program if not src.is_drum else -1,
        )


@needs_shared
@pytest.mark.parametrize("name", REFERENCE_FAILS)
def test_files_the_reference_fails_on(tok, name):
    """Unsupported time signatures are dropped (counted) instead of raising."""
    score = Score(str(CORPUS / f"{name}.mid"))
    for controls in ("none", "track"):
        encoding = tok.encode_full(score, controls=controls)
        assert encoding.report["time_signature_dropped"] >= 1
        assert all(0 <= i < len(tok) for i in encoding.ids)
        assert not any(t.startswith("TimeSig_") and t not in tok.vocab.token_to_id for t in encoding.tokens)
        decoded = tok.decode_full(encoding.ids)
        assert decoded.tokens == encoding.tokens
    if name == "empty":
        assert encoding.tokens == [
            "Track_Start",
            "Bar_None",
            "TimeSig_4/4",
            "Position_0",
            "Tempo_120.21",
            "Track_End",
        ]


@needs_shared
def test_cli_encode_decode(tmp_path):
    # through the top-level command line (`mmmlib encode` / `mmmlib decode`), as users call it
    from mmmlib.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["encode", "--tokenizer", str(TOKENIZER), str(CORPUS / "test_midi.mid")]) == 0
    line = json.loads(out.getvalue())
    with gzip.open(PUBLISHED / "golden" / "test_midi.json.gz") as f:
        assert line["ids"] == json.load(f)["ids_plain"]
    ids_path = tmp_path / "ids.json"
    ids_path.write_text(json.dumps(line))
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["decode", "--tokenizer", str(TOKENIZER), str(ids_path), str(tmp_path / "out.mid")]) == 0
    summary = json.loads(out.getvalue())
    assert summary["tracks"] == 8 and summary["notes"] == 1149
    assert len(Score(str(tmp_path / "out.mid")).tracks) == 8


@needs_shared
def test_odd_scores_never_raise(tok):
    def score(sigs=(), tracks=(), tpq=480):
        s = Score(tpq)
        s.time_signatures.extend([TimeSignature(*t) for t in sigs])
        for program, drum, notes in tracks:
            track = Track(program=program, is_drum=drum)
            track.notes.extend([Note(*n) for n in notes])
            s.tracks.append(track)
        return s

    cases = [
        score(),
        score(sigs=[(0, 6, 8)], tracks=[(0, False, [(0, 240, 60, 90), (1430, 100, 62, 80)])]),
        score(sigs=[(0, 4, 4), (1920, 7, 8), (6000, 2, 2)], tracks=[(0, False, [(5000, 30, 64, 70)])]),
        score(tracks=[(127, False, [(0, 240, 60, 90)]), (3, False, [(10, 240, 10, 90)])]),
        score(tpq=1000, tracks=[(9, True, [(7, 99999, 36, 127), (7, 1, 20, 1)])]),
        score(tracks=[(0, False, [(0, 240, 60, 90)])]).to("second"),
    ]
    odd_loops = [
        {"track_idx": 0, "start_tick": 0, "end_tick": 1920},
        {"track_idx": 9, "start_tick": 5, "end_tick": 5},
    ]
    for s in cases:
        for controls in ("none", "track"):
            for loops in (None, odd_loops):
                encoding = tok.encode_full(s, controls=controls, loops=loops)
                assert encoding.tokens[0] == "Track_Start" and encoding.tokens[-1] == "Track_End"
                assert tok.decode_full(encoding.ids).tokens == encoding.tokens
    rng = np.random.default_rng(0)
    for _ in range(50):
        ids = rng.integers(-3, len(tok) + 3, size=int(rng.integers(0, 300))).tolist()
        tok.decode_full([7, *ids])  # must not raise


# --------------------------------------------------------------------------- self-made fixtures


def test_microtiming_quantisation():
    offsets = np.array([0, 79, 80, 81, 160, 7679, 7680 + 100, 20000])
    pos, delta = microtiming(offsets, max_pos=72, delta_range=80)
    assert pos.tolist() == [0, 0, 1, 1, 1, 48, 49, 71]
    assert delta.tolist() == [0, 79, -80, -79, 0, -1, -60, 80]


def test_loop_duration_bins():
    assert [loop_bin(d) for d in (1, 6, 6.01, 8, 12, 16, 24, 32, 32.5, 300)] == [1, 1, 2, 2, 3, 4, 5, 6, 7, 7]
    assert loop_controls([(0, 480 * 16), (0, 480 * 4), (100, 100 + 480 * 16)], tpq=480) == [
        "ACLoopCount_3",
        "ACLoopDurationQuantile_1",
        "ACLoopDurationQuantile_4",
    ]
    assert loop_controls([(0, 480 * 40)] * 6, tpq=480) == ["ACLoopCount_5+", "ACLoopDurationQuantile_7"]
    assert loop_controls([], tpq=480) == ["ACLoopCount_0"]


def test_closest_ties_go_up_and_duration_grid():
    grid = np.array([10, 20, 40])
    assert closest(grid, np.array([0, 14, 15, 16, 30, 99])).tolist() == [0, 0, 1, 1, 2, 2]


def test_time_signatures_are_delayed_and_deduplicated():
    # POP909_191: 4/4, 2/4, 4/4 all at 0 leave 4/4; a change inside a bar waits for the next one
    assert delay_time_signatures([(0, 4, 4), (0, 2, 4), (0, 4, 4)]) == [(0, 4, 4)]
    assert delay_time_signatures([(0, 4, 4), (1000, 3, 4), (9000, 3, 4)]) == [(0, 4, 4), (7680, 3, 4)]
    assert delay_time_signatures([(0, 4, 4), (5, 3, 4)]) == [(0, 4, 4), (7680, 3, 4)]


def test_track_controls_quirks():
    assert onset_polyphony(np.array([0, 0, 0, 10, 10, 10]), 1, 6) == [
        "ACTrackOnsetPolyphonyMin_1",
        "ACTrackOnsetPolyphonyMax_3",
    ]
    tokens = note_durations(np.array([1920 * 4, 480, 100]))
    assert tokens == [
        "ACTrackNoteDurationWhole_1",
        "ACTrackNoteDurationHalf_0",
        "ACTrackNoteDurationQuarter_0",
        "ACTrackNoteDurationEight_0",
        "ACTrackNoteDurationSixteenth_1",
    ]


def _dense_repetition(notes, bars, track_end, lo=21, hi=109, num_consec=4):
    """Onset + frame piano roll compared bar against bar, as the reference ran it."""
    length = track_end + 1
    roll = np.zeros((length, hi - lo, 2), dtype=bool)
    for t, d, p in zip(notes["time"], notes["duration"], notes["pitch"], strict=True):
        if lo <= p < hi:
            roll[t, p - lo, 0] = True
            roll[t : t + d, p - lo, 1] = True
    sims = []
    for b, tick in enumerate(bars[:-1]):
        if tick > length:
            break
        first = roll[tick : bars[b + 1]]
        if (count := np.count_nonzero(first)) == 0:
            continue
        for c in range(b + 1, min(len(bars), b + num_consec)):
            other = roll[bars[c] : bars[c + 1] if c + 1 < len(bars) else None]
            if other.shape == first.shape:
                sims.append(np.count_nonzero(first & other) / count)
    levels = np.linspace(0, 1, 10)
    return [f"ACTrackRepetition_{levels[np.abs(levels - np.mean(sims)).argmin()]:.2f}"] if sims else []


def test_repetition_equals_a_dense_piano_roll():
    rng = np.random.default_rng(3)
    bars = [0, 96, 192, 288, 384, 480, 576]
    for _ in range(30):
        n = int(rng.integers(1, 40))
        pattern_t = rng.integers(0, 96, size=n)
        reps = rng.integers(1, 6, size=n)
        times = (pattern_t + 96 * reps).astype(np.int32)
        notes = {
            "time": times,
            "duration": rng.integers(1, 150, size=n).astype(np.int32),
            "pitch": rng.choice([20, 40, 41, 60, 108, 109], size=n).astype(np.int8),
        }
        end = int((notes["time"] + notes["duration"]).max())
        assert repetition(notes, bars, end, (21, 109), 10, 4) == _dense_repetition(notes, bars, end)


def _tiny_vocab() -> PublishedVocab:
    """Five base tokens and a BPE model with merges across them, Metaspace words."""
    tokens = ["Track_Start", "Track_End", "Bar_None", "Program_0", "Pitch_60"]
    chars = ["(", ")", "*", "a", "b"]
    vocab = {c: i for i, c in enumerate(chars)} | {"\u2581": 5, "\u2581*": 6, "\u2581*b": 7, "ab": 8}
    merges = [("\u2581", "*"), ("\u2581*", "b"), ("a", "b")]
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    hf.add_special_tokens(["(", ")"])
    return PublishedVocab(
        config={},
        token_to_id={t: i for i, t in enumerate(tokens)},
        id_to_token=tokens,
        id_to_byte=chars,
        byte_to_id={c: i for i, c in enumerate(chars)},
        hf=hf,
        grids=None,
    )


def test_bpe_words_split_at_bar_lines_and_decode_back():
    bpe = BPE(_tiny_vocab())
    # Track_Start Program Bar Pitch Pitch | Bar Pitch | Bar (past the last token: no word) Track_End
    ids = np.array([0, 3, 2, 4, 4, 2, 4, 1])
    ticks = np.array([0, 0, 0, 10, 20, 100, 120, 121])
    words = bpe.words(ids, ticks, [0, 100, 200, 300])
    assert words == ["(a*bb", "*b)"]
    encoded = bpe.encode([words])
    # the special token is cut out first; each word is then prefixed with the Metaspace mark
    assert encoded == [0, 5, 3, 2, 4, 4, 7, 1]
    base, bad = bpe.decode(encoded)
    assert base.tolist() == ids.tolist() and bad.size == 0
    base, bad = bpe.decode([5, 99, 8])
    assert base.tolist() == [3, 4] and bad.tolist() == [1]


def test_decoder_rules():
    tokens = [
        "Track_Start", "Program_-1", "Bar_None", "TimeSig_3/4", "Position_0", "Tempo_100.0",
        "Loop_Start", "PitchDrum_36", "Velocity_90", "Duration_3",
        "Position_2", "DeltaDirection_0", "Delta_5", "Pitch_60", "Velocity_80",  # incomplete
        "Bar_None", "TimeSig_3/4", "Position_1", "Loop_Start", "Delta_7", "Pitch_62", "Velocity_70", "Duration_12",
        "Bar_None", "TimeSig_3/4", "Loop_End", "Loop_End", "Loop_End", "Track_End",
        "Track_Start", "Program_5", "Bar_None", "TimeSig_4/4", "Position_0", "Tempo_60.0", "Track_End",
    ]  # fmt: skip
    segments = split_tracks(tokens)
    assert len(segments) == 2 and segments[0][-1] == "Loop_End"  # the token before Track_Start is dropped
    score, loops = decode_segments(segments, 120.21)
    assert [(t.program, t.is_drum) for t in score.tracks] == [(0, True)]  # track 2 has no notes
    notes = [(n.time, n.duration, n.pitch, n.velocity) for n in score.tracks[0].notes]
    assert notes == [(0, 480, 36, 90), (5760 + 160 + 7, 1920, 62, 70)]
    assert [(lp.start, lp.end, lp.track_idx) for lp in loops] == [(5920, 11520, 0), (0, 11520, 0)]
    assert [(t.time, t.qpm) for t in score.tempos] == [(0, 100.0)]  # only the first track's tempos
    assert [(t.time, t.numerator) for t in score.time_signatures] == [(0, 3)]


def test_reference_segments_slice_tokens_at_bpe_indices():
    tokens = ["Track_Start", "a", "b", "c", "Track_End", "Track_Start", "d", "Track_End"]
    bpe_ids = [7, 100, 8, 7, 101, 8]  # Track_Start (7) at BPE indices 0 and 3
    assert reference_segments(bpe_ids, tokens, 7) == [["a"], ["Track_End", "Track_Start", "d", "Track_End"]]
    assert split_tracks(tokens) == [["a", "b", "c"], ["d", "Track_End"]]
