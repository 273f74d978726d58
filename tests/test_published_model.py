"""The published MIDI-GPT-Loop model: load its folder, generate in its language, fine-tune it, run 04 -> 05.

The checkpoint itself cannot be downloaded here: a randomly initialised model of the published
configuration stands in for it (the exact 41.6M configuration where loading is tested, a tiny one
with the same vocabulary elsewhere). Random weights are enough: the grammar constraint alone
must make every output valid, with its bars and tracks exact.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from symusic import Note, Score, TimeSignature, Track

from mmmlib import training
from mmmlib.core.errors import DataError
from mmmlib.core.params import ParamError
from mmmlib.data import detect_loops, write_corpus
from mmmlib.generation import (
    BarInfill,
    GenerateParams,
    LoopRequest,
    PieceRequest,
    Sampling,
    TrackSpec,
    generate,
    generate_batch,
    sweep,
)
from mmmlib.generation import engine as engine_module
from mmmlib.generation.constraint import GrammarConstraint, Plan, grammar_tables
from mmmlib.generation.language import MarkedLoop, PublishedLanguage, language_of, load_language
from mmmlib.generation.loop import track_stats
from mmmlib.generation.marked_loops import is_repeating, loop_score
from mmmlib.generation.sampling import left_pad
from tests.generate_fixtures import one_thread, tiny_model_dir
from tests.published_fixtures import (
    TOKENIZER,
    needs_published,
    save_model_folder,
    tiny_published_dir,
    tiny_published_model,
    write_published_tokens,
)

pytestmark = needs_published
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def lang() -> PublishedLanguage:
    return load_language(TOKENIZER)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pubcorpus")
    write_corpus(folder, num_files=4, seed=2)
    return sorted(folder.rglob("*.mid"))


# --------------------------------------------------------------------------- part 2: loading
class Pickled:
    """An object whose unpickling would write a file: weights_only must refuse it."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pickle code ran"))


def test_exact_published_configuration_loads_from_safetensors_and_bin(tmp_path):
    st_dir = save_model_folder(tmp_path / "st")
    bin_dir = save_model_folder(tmp_path / "bin", weights="bin")
    shutil.copyfile(TOKENIZER, st_dir / TOKENIZER.name)  # found in the folder, by content
    model_st, tok = training.load(st_dir, device="cpu", dtype="fp32")
    model_bin, _ = training.load(bin_dir, TOKENIZER, device="cpu", dtype="fp32")
    config = model_st.config
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads, config.intermediate_size, config.sliding_window,
            config.max_position_embeddings) == (16000, 512, 8, 8, 4, 1536, 384, 8192)
    assert round(training.count_parameters(model_st) / 1e6, 1) == 41.6
    assert len(tok) == 16000 and type(tok).__name__ == "PublishedTokenizer"
    ids = torch.tensor([[7, 811, 565, 8]])  # Track_Start ▁ Program_-1 Track_End
    with torch.no_grad():
        assert torch.equal(model_st(ids).logits, model_bin(ids).logits), "both weight files are the same model"
    # a .bin holding pickled code is refused, and the code never runs
    (bin_dir / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Pickled(tmp_path / "pwned")}, protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        training.load(bin_dir, TOKENIZER, device="cpu")
    assert not (tmp_path / "pwned").exists()


def test_a_tokenizer_of_another_vocabulary_is_refused(tmp_path):
    with pytest.raises(DataError, match="16000"):
        training.load(tiny_published_dir(), tiny_model_dir() / "tokenizer.json", device="cpu")
    with pytest.raises(FileNotFoundError, match="tokenizer_path"):
        training.load(tiny_published_dir(), device="cpu")  # the folder ships no tokenizer


# --------------------------------------------------------------------------- part 3: the grammar
def run_rows(lang, prompts, plans, seed: int, bias: dict[int, float]) -> list[list[int]]:
    """Drive the constraint with random logits (``bias`` added to some ids) and argmax."""
    tables = grammar_tables(lang)
    processor = GrammarConstraint(tables, plans, lang.eos_id, lang.pad_id)
    input_ids, _ = left_pad(prompts, lang.pad_id, torch.device("cpu"))
    start = input_ids.shape[1]
    generator = torch.Generator().manual_seed(seed)
    finished = torch.zeros(len(plans), dtype=torch.bool)
    for _ in range(max(p.max_new_tokens(tables) for p in plans)):
        logits = torch.randn(len(plans), tables.vocab_size, generator=generator) * 3
        for i, value in bias.items():
            logits[:, i] += value
        scores = processor(input_ids, logits)
        assert torch.isfinite(scores).any(dim=1).all(), "a row was left without any allowed id"
        chosen = torch.where(finished, lang.pad_id, scores.argmax(dim=1))
        finished |= chosen == lang.eos_id
        input_ids = torch.cat([input_ids, chosen[:, None]], dim=1)
        if finished.all():
            break
    assert finished.all(), "a row did not end within its plan's token bound"
    return [row[: row.index(lang.eos_id)] for row in input_ids[:, start:].tolist()]


@pytest.mark.parametrize("seed", range(4))
def test_merged_structure_ids_keep_every_row_valid(lang, seed):
    """Ids holding Bar_None+TimeSig+Position, the empty ▁ id and loop markers, favoured on purpose."""
    tables = grammar_tables(lang)
    merged = [i for i, t in enumerate(lang.id_tokens()) if len(t) > 2 and t[0] == "Bar_None"][:400]
    bias = {**{i: 4.0 for i in merged}, lang.token_id("\u2581"): 9.0, lang.token_id("Loop_Start"): 5.0,
            lang.token_id("Loop_End"): 5.0, lang.token_id("Track_End"): 3.0}
    end, metaspace = tables.single_id["Track_End"], lang.token_id("\u2581")
    prompts, plans, expected = [], [], []
    for row, (programs, bars) in enumerate([((0, -1), 2), ((-1,), 1), ((33, 0, 81), 3), ((0,), 4)]):
        headers = [lang.tokens_to_ids(lang.track_header(p, lang.control_values(nomml=row, loop_count=1,
                                                                              loop_duration_beats=8)))
                   for p in programs]
        headers[0].insert(1, metaspace)  # the encoder's own header: Track_Start ▁ Program_P
        plan = Plan(drum=programs[0] == -1, timesig_id=tables.single_id["TimeSig_4/4"] if row % 2 else -1)
        for i, header in enumerate(headers):
            if i:
                plan.force(header)
            plan.free(bars, end, budget=8 + 20 * row, min_notes=1, bar_budget=0 if row else 6)
        prompts.append(headers[0])
        plans.append(plan)
        expected.append((list(programs), bars))
    rows = run_rows(lang, prompts, plans, seed, bias)
    written = [i for row in rows for i in row]
    assert any(i in merged for i in written) and lang.token_id("Loop_Start") in written, "the bias reached them"
    for prompt, generated, (programs, bars) in zip(prompts, rows, expected, strict=True):
        tokens, unknown = lang.ids_to_tokens(prompt + generated)
        decoded = lang.decode(tokens)
        assert unknown == 0 and decoded.num_errors == 0, tokens
        assert track_stats(tokens) == ([bars] * len(programs), programs)
        assert [len(t.notes) > 0 for t in decoded.score.tracks] == [True] * len(programs)
        assert metaspace not in generated, "the empty id is never generated"
        new = lang.ids_to_tokens(generated)[0]
        assert not [t for t in new if t.startswith(("Infill", "FillBar"))]
        for i, token in enumerate(new):  # controls only in the forced headers: Track_Start Program_P <controls>
            if token.startswith("AC"):
                j = i
                while new[j - 1].startswith("AC"):
                    j -= 1
                assert new[j - 1].startswith("Program_") and new[j - 2] == "Track_Start", new
        opened = 0
        for token in new:  # a Loop_End always closes an open Loop_Start of its track
            opened = 0 if token == "Track_End" else opened + (token == "Loop_Start") - (token == "Loop_End")
            assert opened >= 0, new
        assert len({t for t in new if t.startswith("TimeSig_")}) <= 1


def test_one_fill_span_holds_every_masked_bar(lang):
    tables = grammar_tables(lang)
    bar = ["Bar_None", "TimeSig_3/4", "Position_0", "Pitch_60", "Velocity_63", "Duration_12"]
    prompt = lang.tokens_to_ids(["Track_Start", "Program_0", *bar, "Infill_Bar", "Infill_Bar", "Infill_Bar",
                                 *bar, "Track_End"])
    plan = Plan(timesig_id=tables.single_id["TimeSig_3/4"])
    for segment in lang.fill_layout(["TimeSig_3/4"] * 3, [[], [], []]):
        plan.force(lang.tokens_to_ids(segment.header)).free(segment.num_bars, tables.single_id["FillBar_End"], 30)
    generated = run_rows(lang, [prompt], [plan], 0, {})[0]
    new = lang.ids_to_tokens(generated)[0]
    assert new[0] == "FillBar_Start" and new[-1] == "FillBar_End" and new.count("FillBar_Start") == 1
    assert new.count("Bar_None") == 3 and len(lang.fill_contents(new)) == 3
    assert all(content[0] == "TimeSig_3/4" for content in lang.fill_contents(new))


# --------------------------------------------------------------------------- part 3: generation
def test_loops_with_nomml_and_loop_controls_are_valid():
    model, tok = tiny_published_model()
    lang = language_of(tok)
    requests = [LoopRequest(tuple(TrackSpec(p, lang.control_values(nomml=i, loop_count=i % 6, loop_duration_beats=6 + 4 * i))
                                  for p in programs), num_bars=1 + i % 3, time_signature=("4/4", "3/4", None)[i % 3],
                            tempo=(None, 100.0)[i % 2], seed=i, max_tokens_per_bar=16)
                for i, programs in enumerate([(0, -1), (33,), (-1, 48, 81), (25, 0)])]
    generations = generate_batch(model, tok, requests, Sampling(repetition_penalty=0), batch_size=4)
    for request, gen in zip(requests, generations, strict=True):
        assert gen.num_errors == 0
        assert gen.bars_per_track == [request.num_bars] * len(request.tracks)
        assert gen.programs == [t.program for t in request.tracks]
        assert all(len(track.notes) for track in gen.score.tracks) and len(gen.score.tracks) == len(request.tracks)
        header = gen.tokens[:gen.tokens.index("Bar_None")]
        controls = request.tracks[0].controls
        assert f"ACMedianMetricLevel_{controls['ACMedianMetricLevel']}" in header
        assert f"ACLoopCount_{controls['ACLoopCount']}" in header and "ACLoopDurationQuantile_" in header[-1]
        if request.time_signature:
            ts = gen.score.time_signatures[0]
            assert f"{ts.numerator}/{ts.denominator}" == request.time_signature
    alone = generate(model, tok, None, requests[2], Sampling(repetition_penalty=0))
    assert alone.tokens == generations[2].tokens, "a request gives the same tokens alone or in a batch"


def test_bar_infill_and_new_tracks_speak_mmm_inference_format(corpus, monkeypatch):
    model, tok = tiny_published_model()
    lang = language_of(tok)
    seen = []
    real = engine_module.run_passes
    monkeypatch.setattr(engine_module, "run_passes", lambda m, lg, passes, *a, **k: seen.extend(passes) or
                        real(m, lg, passes, *a, **k))
    request = PieceRequest(bar_infills=(BarInfill(0, 1, 3),), new_tracks=(TrackSpec(33, lang.control_values(nomml=2)),),
                           context_bars=4, seed=1, max_tokens_per_bar=16)
    gen = generate(model, tok, corpus[0], request)
    assert gen.num_errors == 0 and len(set(gen.bars_per_track)) == 1 and gen.programs[-1] == 33
    fill = lang.ids_to_tokens(seen[0].prompt)[0]
    assert fill.count("Infill_Bar") == 2 and "FillBar_Start" not in fill  # the span is forced, then generated
    new_track = lang.ids_to_tokens(seen[1].prompt)[0]
    assert new_track[-4:] == ["Infill_Track", "Track_Start", "Program_33", "ACMedianMetricLevel_2"]


def test_04_writes_the_loops_the_model_marks_as_files(tmp_path):
    model, tok = tiny_published_model()
    lang = language_of(tok)
    boost = torch.zeros(lang.vocab_size)
    boost[[lang.token_id("Loop_Start"), lang.token_id("Loop_End")]] = 30.0  # a model that marks loops
    handle = model.lm_head.register_forward_hook(lambda module, inputs, out: out + boost.to(out.dtype))
    p = GenerateParams(model_dir=str(tiny_published_dir()), tokenizer_path=str(TOKENIZER), output_folder=str(tmp_path),
                       label="marks", rank=0, num_ranks=1, num_generations=2, max_attempts=1, batch=2, nomml=3,
                       num_bars=2, n_tracks=2, programs=[0, -1], loop_controls=True, loop_count=1, loop_duration_bars=1,
                       track_controls={}, time_signature="4/4", tempo=120.0, check_loop=False, temperature=1.0,
                       top_k=20, top_p=0.95, repetition_penalty=0.0, max_tokens_per_bar=16, seed=0, device="cpu",
                       num_threads=0, num_plots=0)
    try:
        rows = sweep.run_generation(p, model, tok, log=False)
    finally:
        handle.remove()
    assert (rows["status"] == "ok").all() and rows["n_loop_markers"].sum() > 0
    files = [f for cell in rows["loop_files"].dropna() for f in str(cell).split(";")]
    assert len(files) == rows["n_loop_markers"].sum()
    for name in files:
        loop = Score(str(tmp_path / "marks" / name))
        assert len(loop.tracks) <= 1 and loop.end() <= 2 * 4 * loop.ticks_per_quarter, "a span of the 2 bars"
    assert any(len(Score(str(tmp_path / "marks" / name)).tracks) for name in files), "spans hold notes"


def test_marked_loops_are_checked_with_the_detector():
    score = Score(480)
    track = Track(program=0)
    for bar in range(4):  # a one-bar riff, four times
        track.notes.extend(Note(bar * 1920 + k * 480, 240, 60 + k, 90) for k in range(4))
    score.tracks.append(track)
    score.time_signatures.append(TimeSignature(0, 4, 4))
    found = detect_loops(score)
    assert found, "the riff repeats"
    marked = MarkedLoop(0, found[0].start_tick, found[0].end_tick)
    assert is_repeating(marked, found, 480)
    assert not is_repeating(MarkedLoop(0, found[0].start_tick + 240, found[0].end_tick), found, 480)
    assert len(loop_score(score, marked).tracks[0].notes) == 4 * (found[0].end_tick - found[0].start_tick) // 1920


def test_an_open_loop_ends_with_its_track(lang):
    tokens = ["Track_Start", "Program_0", "Bar_None", "TimeSig_4/4", "Position_0", "Pitch_60", "Velocity_63",
              "Duration_12", "Loop_Start", "Bar_None", "TimeSig_4/4", "Position_6", "Pitch_62", "Velocity_63",
              "Duration_6", "Track_End"]
    decoded = lang.decode(tokens)
    assert decoded.num_errors == 0 and decoded.loops == [MarkedLoop(0, 0, 2 * 4 * 1920)]


# --------------------------------------------------------------------------- 03: fine-tuning
def test_03_fine_tunes_a_published_model_and_refuses_other_languages(tmp_path, corpus):
    from tests.test_train import tiny_params

    tokens = write_published_tokens(tmp_path / "tokens", corpus)
    toy = {"tokenizer_path": str(TOKENIZER), "tokens_dir": str(tokens)}
    p = tiny_params(tmp_path / "model", toy, init_from=str(tiny_published_dir()), max_seq_len=256, max_steps=2,
                    warmup_steps=1, eval_every_steps=2, save_every_steps=2, eval_max_batches=1, batch_size=2)
    summary = training.run(p)
    assert summary["step"] == 2 and summary["final_valid_loss"] < summary["initial_valid_loss"] + 1.0
    tuned = json.loads((tmp_path / "model" / "config.json").read_text())
    assert tuned["hidden_size"] == 64, "the init_from model, not a new model of preset"
    model, tok = training.load(tmp_path / "model", device="cpu")  # its copied tokenizer is the published one
    assert len(tok) == 16000 and type(tok).__name__ == "PublishedTokenizer"
    ours = tiny_model_dir() / "tokenizer.json"
    with pytest.raises(ParamError, match="`init_from`.*16000"):
        tiny_params(tmp_path / "m2", {"tokenizer_path": str(ours), "tokens_dir": str(tokens)},
                    init_from=str(tiny_published_dir()))
    shutil.copyfile(ours, tokens / "tokenizer.json")
    with pytest.raises(ParamError, match="`tokens_dir`"):
        tiny_params(tmp_path / "m3", toy, init_from=str(tiny_published_dir()), max_seq_len=256)


# --------------------------------------------------------------------------- 04 -> 05
def test_notebooks_04_and_05_run_on_a_published_model_folder(tmp_path):
    import papermill

    out = tmp_path / "gen"
    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "04_generate.ipynb"), str(tmp_path / "04.ipynb"),
        parameters=dict(model_dir=str(tiny_published_dir()), tokenizer_path=str(TOKENIZER), nomml=0,
                        output_folder=str(out), label="pub", num_generations=3, batch=3, n_tracks=2, num_bars=2,
                        max_tokens_per_bar=16, loop_controls=True, device="cpu", num_plots=1),
        kernel_name="python3", progress_bar=False, cwd=str(REPO_ROOT))
    rows = list(csv.DictReader(io.StringIO((out / "pub" / "RESULTS_0.csv").read_text())))
    assert {r["status"] for r in rows} == {"ok"} and len({r["gen_id"] for r in rows}) == 3
    assert {r["loop_duration_bin_requested"] for r in rows} == {"2"}  # 2 bars of 4/4: 8 quarters, bin (6, 8]
    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "05_evaluate.ipynb"), str(tmp_path / "05.ipynb"),
        parameters=dict(source=str(out), label="pub", reference_dir="", output_dir=str(tmp_path / "eval"),
                        bootstrap=20, num_audio=0),
        kernel_name="python3", progress_bar=False, cwd=str(REPO_ROOT))
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["validity"] == 1.0 and summary["num_generations"] == 3
