"""The grammar constraint: whatever the logits, every row is a valid sequence with exact bar counts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmmlib.generation.constraint import GrammarConstraint, Plan, grammar_tables
from mmmlib.generation.loop import track_stats
from mmmlib.generation.sampling import left_pad
from mmmlib.tokens.vocab import count_grammar_errors, families, track_prompt_ids
from tests.generate_fixtures import one_thread, tiny_model

PROGRAMS = (-1, 0, 33)
HEADER_FAMILIES = ("AC", "Program", "Track_Start")


@pytest.fixture(scope="module")
def tok():
    return tiny_model()[1]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def ids(tok, tokens):
    return tok.tokens_to_ids(tokens)


def loop_case(tok, draw):
    """A loop prompt and plan: tracks of random programs, bars and budgets."""
    tables = grammar_tables(tok)
    programs = draw(st.lists(st.sampled_from(PROGRAMS), min_size=1, max_size=3))
    num_bars = draw(st.integers(1, 3))
    budget = draw(st.integers(1, 50))
    controls = {"NOMML": draw(st.integers(0, 12))} if draw(st.booleans()) else {}
    headers = [track_prompt_ids(tok, p, controls) for p in programs]
    plan = Plan(drum=programs[0] == -1)
    if draw(st.booleans()):
        plan.timesig_id = tables.single_id[draw(st.sampled_from(["TimeSig_4/4", "TimeSig_3/4", "TimeSig_6/8"]))]
    if draw(st.booleans()):
        plan.tempo_id = tables.single_id[draw(st.sampled_from(["Tempo_121.29", "Tempo_87.42"]))]
    min_notes = draw(st.integers(0, 1))
    bar_budget = draw(st.sampled_from([0, 1, 5, 20]))
    for i, header in enumerate(headers):
        if i:
            plan.force(header)
        plan.free(num_bars, tables.single_id["Track_End"], budget, min_notes=min_notes, bar_budget=bar_budget)
    return {"kind": "loop", "prompt": headers[0], "plan": plan, "bars": num_bars, "programs": programs,
            "min_notes": min_notes}


def fill_case(tok, draw):
    """A one-track piece with placeholders; the plan fills them (with bar controls, sometimes)."""
    tables = grammar_tables(tok)
    program = draw(st.sampled_from(PROGRAMS))
    num_fills = draw(st.integers(1, 3))
    bar = ["Bar_None", "TimeSig_4/4", "Position_0", "Pitch_60" if program >= 0 else "PitchDrum_36",
           "Velocity_63", "Duration_1.0.12"]
    tokens = ["Track_Start", f"Program_{program}", *bar, *(["Infill_Bar"] * num_fills), *bar, "Track_End"]
    plan = Plan(drum=program == -1)
    for _ in range(num_fills):
        header = ["FillBar_Start", "TimeSig_4/4"] + (["ACBarNoteDensity_4"] if draw(st.booleans()) else [])
        plan.force(ids(tok, header)).free(0, tables.single_id["FillBar_End"], draw(st.integers(1, 40)))
    return {"kind": "fill", "prompt": ids(tok, tokens), "plan": plan, "fills": num_fills, "programs": [program]}


@st.composite
def cases(draw, tok):
    rows = draw(st.integers(1, 3))
    return [fill_case(tok, draw) if draw(st.booleans()) else loop_case(tok, draw) for _ in range(rows)]


def run_rows(tok, rows, seed: int, scale: float) -> list[list[int]]:
    """Drive the processor with random logits and argmax, as ``generate`` would; generated ids per row."""
    tables = grammar_tables(tok)
    eos, pad = tok.vocab["EOS_None"], tok.pad_token_id
    processor = GrammarConstraint(tables, [r["plan"] for r in rows], eos, pad)
    input_ids, _ = left_pad([r["prompt"] for r in rows], pad, torch.device("cpu"))
    start = input_ids.shape[1]
    generator = torch.Generator().manual_seed(seed)
    finished = torch.zeros(len(rows), dtype=torch.bool)
    for _ in range(max(r["plan"].max_new_tokens(tables) for r in rows)):
        logits = torch.randn(len(rows), tables.vocab_size, generator=generator) * scale
        scores = processor(input_ids, logits)
        assert torch.isfinite(scores).any(dim=1).all(), "a row was left without any allowed id"
        chosen = torch.where(finished, pad, scores.argmax(dim=1))
        finished |= chosen == eos
        input_ids = torch.cat([input_ids, chosen[:, None]], dim=1)
        if finished.all():
            break
    assert finished.all(), "a row did not end within its plan's token bound"
    out = []
    for row in input_ids[:, start:].tolist():
        out.append(row[: row.index(eos)])
    return out


def check_row(tok, row, generated: list[int]) -> None:
    tables = grammar_tables(tok)
    assert len(generated) < row["plan"].max_new_tokens(tables)
    tokens, unknown = tok.ids_to_tokens(row["prompt"] + generated)
    assert unknown == 0
    assert count_grammar_errors(tok, tokens) == 0, tokens
    assert tok.decode_tokens(tokens).num_errors == 0
    new_tokens, _ = tok.ids_to_tokens(generated)
    family = families(tok)
    if row["kind"] == "loop":
        bars, programs = track_stats(tokens)
        assert bars == [row["bars"]] * len(row["programs"])
        assert programs == row["programs"]
        if row["min_notes"]:
            score = tok.decode_tokens(tokens).score
            assert [len(t.notes) > 0 for t in score.tracks] == [True] * len(programs), "an empty track"
    else:
        assert new_tokens.count("FillBar_End") == row["fills"]
        assert "Bar_None" not in new_tokens, "a fill holds exactly one bar"
    # no control, placeholder or structure token outside the forced headers
    headers = [i for i, t in enumerate(tokens) if t in ("Track_Start", "FillBar_Start")]
    for i, token in enumerate(tokens):
        if family[token].startswith("AC"):
            assert any(h < i and all(family[x].startswith(HEADER_FAMILIES) or x.startswith("TimeSig") or
                                     x == "FillBar_Start" for x in tokens[h:i]) for h in headers), (i, tokens)
    assert "Infill_Bar" not in new_tokens
    track_drum = None
    for token in tokens:  # a fill belongs to the prompt's (only) track
        if token.startswith("Program_"):
            track_drum = token == "Program_-1"
        assert not (token.startswith("Pitch_") and track_drum), "pitched note in a drum track"
        assert not (token.startswith("PitchDrum_") and track_drum is False), "drum note in a pitched track"
    for kind, fixed in (("TimeSig_", row["plan"].timesig_id), ("Tempo_", row["plan"].tempo_id)):
        values = {t for t in new_tokens if t.startswith(kind)}
        if fixed >= 0:
            assert values <= {tok.id_tokens()[fixed][0]}
        elif kind == "TimeSig_" and row["kind"] == "loop":
            assert len(values) <= 1, "the tracks of a loop share one time signature"


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.5, 3.0, 20.0]))
def test_never_an_invalid_sequence(tok, data, seed, scale):
    rows = data.draw(cases(tok))
    for row, generated in zip(rows, run_rows(tok, rows, seed, scale), strict=True):
        check_row(tok, row, generated)


def test_tables_agree_with_the_grammar(tok):
    """``follow`` holds an id exactly when its base tokens chain validly after the family."""
    tables = grammar_tables(tok)
    family = families(tok)
    index = {f: i for i, f in enumerate(tables.families)}
    generator = torch.Generator().manual_seed(0)
    for v in torch.randint(0, tables.vocab_size, (200,), generator=generator).tolist():
        tokens = tok.id_tokens()[v]
        for f in ("Duration", "Position", "Bar", "TimeSig", "ACTrackNOMML"):
            expected = count_grammar_errors(tok, [_token_of(tok, f), *tokens]) == 0 if _token_of(tok, f) else None
            if expected is not None:
                assert bool(tables.follow[index[f], v]) == expected, (f, tokens)
        assert tables.families[int(tables.last_family[v])] == family[tokens[-1]]
        assert int(tables.bars[v]) == tokens.count("Bar_None")


def _token_of(tok, family_name: str) -> str | None:
    """Some base token of a family."""
    family = families(tok)
    return next((t for t in tok.vocab if family[t] == family_name), None)


def test_closing_keeps_bar_counts_with_tiny_budgets(tok):
    """A budget of 1 id per segment still gives every track its bars and a note (closing mode)."""
    tables = grammar_tables(tok)
    headers = [track_prompt_ids(tok, p) for p in (0, -1)]
    plan = Plan().free(4, tables.single_id["Track_End"], 1, 1).force(headers[1]).free(
        4, tables.single_id["Track_End"], 1, 1)
    row = {"kind": "loop", "prompt": headers[0], "plan": plan, "bars": 4, "programs": [0, -1], "min_notes": 1}
    check_row(tok, row, run_rows(tok, [row], seed=1, scale=1.0)[0])
