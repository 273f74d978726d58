"""Generation: exact bars and tracks from a random model, batch = sequential, infill, runs, 04 notebook."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from symusic import Score

from mmmlib.core import ParamError
from mmmlib.generation import (
    BarInfill,
    GenerateParams,
    LoopRequest,
    PieceRequest,
    Sampling,
    TrackInfill,
    TrackSpec,
    generate,
    generate_batch,
    piece_state,
)
from mmmlib.generation import engine as gen_module
from mmmlib.generation import sweep as runs
from mmmlib.generation.language import language_of
from mmmlib.generation.sampling import SeededGumbel, SeededTopKSampler, bits_to_uniform
from mmmlib.tokens.tokenizer import ControlSwitches, build_tokenizer
from tests.generate_fixtures import midi_of, one_thread, tiny_model, tiny_model_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_and_tok():
    return tiny_model()


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def loop_requests(n: int, **kw) -> list[LoopRequest]:
    tracks = [(TrackSpec(0, {"NOMML": 4}), TrackSpec(-1)), (TrackSpec(33, {"LoopCount": "1", "LoopDuration": "8-12"}),),
              (TrackSpec(-1, {"NOMML": 12}), TrackSpec(48), TrackSpec(81))]
    return [LoopRequest(tracks[i % 3], num_bars=1 + i % 3, time_signature=("4/4", None, "3/4")[i % 3],
                        tempo=(None, 100.0)[i % 2], seed=i, max_tokens_per_bar=12, **kw) for i in range(n)]


# --------------------------------------------------------------------------- loops
def test_every_loop_has_the_requested_bars_and_tracks(model_and_tok):
    model, tok = model_and_tok
    requests = loop_requests(9)
    for request, gen in zip(requests, generate_batch(model, tok, requests, batch_size=9), strict=True):
        assert gen.num_errors == 0
        assert gen.bars_per_track == [request.num_bars] * len(request.tracks)
        assert gen.programs == [t.program for t in request.tracks]
        assert len(gen.tokens_per_track) == len(request.tracks) and sum(gen.tokens_per_track) == gen.num_tokens
        assert len(gen.score.tracks) == len(request.tracks)
        assert all(len(track.notes) > 0 for track in gen.score.tracks)
        ts = gen.score.time_signatures[0]
        if request.time_signature:
            assert f"{ts.numerator}/{ts.denominator}" == request.time_signature
        bar_ticks = gen.score.ticks_per_quarter * 4 * ts.numerator // ts.denominator
        assert gen.score.end() <= request.num_bars * bar_ticks, "notes are clipped at the loop end"
        if request.tempo:
            assert gen.score.tempos[0].qpm == pytest.approx(request.tempo)


def test_batch_and_sequential_give_identical_tokens(model_and_tok):
    model, tok = model_and_tok
    requests = loop_requests(4)
    sampling = Sampling(temperature=1.2, top_k=30, top_p=0.9, repetition_penalty=1.1)
    batched = generate_batch(model, tok, requests, sampling, batch_size=4)
    one_by_one = [generate(model, tok, None, r, sampling) for r in requests]
    assert [g.tokens for g in batched] == [g.tokens for g in one_by_one]
    other_seed = generate(model, tok, None, replace(requests[0], seed=99), sampling)
    assert other_seed.tokens != batched[0].tokens


def test_bad_requests_fail_before_the_model_runs(model_and_tok, monkeypatch):
    model, tok = model_and_tok
    monkeypatch.setattr(gen_module, "run_passes", lambda *a, **k: pytest.fail("the model ran"))
    bad = [LoopRequest((TrackSpec(200),)), LoopRequest((TrackSpec(0, {"NOMML": 13}),)),
           LoopRequest((TrackSpec(0, {"Mood": 1}),)), LoopRequest((TrackSpec(0),), num_bars=0),
           LoopRequest((TrackSpec(0),), time_signature="13/16")]
    for request in bad:
        with pytest.raises(ValueError):
            generate_batch(model, tok, [loop_requests(1)[0], request])


def test_seeded_noise_samples_the_softmax():
    """Gumbel noise from the hash: finite at the extremes, and argmax(logits + noise) ~ softmax."""
    extremes = bits_to_uniform(torch.tensor([0, 0xFFFFFFFF], dtype=torch.long))
    assert (extremes > 0).all() and (extremes < 1).all()
    logits = torch.log(torch.tensor([[1.0, 3.0, 0.0]])).expand(20000, 3)
    noise = SeededGumbel(range(20000), prompt_len=0, device=torch.device("cpu"))
    picks = noise(torch.zeros(20000, 0, dtype=torch.long), logits.clone()).argmax(dim=1)
    assert (picks != 2).all(), "a masked id was sampled"
    assert (picks == 1).float().mean().item() == pytest.approx(0.75, abs=0.015)


def test_top_k_sampler_draws_what_the_full_vocabulary_warpers_draw():
    """Top-k, top-p and the seeded noise on the k best ids give the full-vocabulary pipeline's sample."""
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(512, 3000, generator=generator) * 3
    scores[:, ::3] = float("-inf")  # a grammar mask
    ids = torch.zeros(512, 7, dtype=torch.long)
    for top_k, top_p in ((20, 0.95), (5, 1.0), (0, 0.9)):
        full = scores.clone()
        if top_k:
            full = TopKLogitsWarper(top_k)(ids, full)
        full = TopPLogitsWarper(top_p)(ids, full) if top_p < 1 else full
        expected = SeededGumbel(range(512), 3, torch.device("cpu"))(ids, full).argmax(dim=1)
        sampled = SeededTopKSampler(range(512), 3, top_k, top_p, torch.device("cpu"))(ids, scores.clone())
        assert torch.isfinite(sampled).sum(dim=1).eq(1).all()
        assert (sampled.argmax(dim=1) == expected).float().mean() > 0.998, (top_k, top_p)


# --------------------------------------------------------------------------- pieces
def test_piece_infill_and_new_tracks_keep_bars_and_context(model_and_tok, monkeypatch):
    model, tok = model_and_tok
    path = midi_of(tiny_model_dir())
    score = Score(str(path))
    before = piece_state(tok, score)
    seen = []
    real_run = gen_module.run_passes

    def spy(model_, tok_, passes, *args, **kwargs):
        for p in passes:
            tokens, _ = tok.ids_to_tokens(p.prompt)
            per_track = [0]
            for t in tokens:
                per_track[-1] += t in ("Bar_None", "Infill_Bar")
                if t == "Track_End":
                    per_track.append(0)
            seen.append(max(per_track))
        return real_run(model_, tok_, passes, *args, **kwargs)

    monkeypatch.setattr(gen_module, "run_passes", spy)
    request = PieceRequest(bar_infills=(BarInfill(1, 2, 7, {3: {"NoteDensity": 4}}),),
                           track_infills=(TrackInfill(0, {"NOMML": 2}),),
                           new_tracks=(TrackSpec(33, {"NOMML": 4}),), context_bars=4, seed=3, max_tokens_per_bar=12)
    result = generate(model, tok, path, request)
    assert seen and max(seen) <= 4, "a pass saw more bars than context_bars"
    assert result.num_passes == len(seen) > 3
    assert result.num_errors == 0
    num_bars = before.num_bars
    assert result.bars_per_track == [num_bars] * (len(before.tracks) + 1)
    after = piece_state(tok, result.score)
    assert len(result.score.tracks) == len(before.tracks) + 1
    untouched = [i for i in range(len(before.tracks)) if i not in (0, before.index_of[1])]
    for i in untouched:  # tracks the request did not touch come back as they were
        assert after.tracks[i].bars == before.tracks[i].bars
    target = before.index_of[1]
    assert after.tracks[target].bars[:2] == before.tracks[target].bars[:2]
    assert after.tracks[target].bars[7:] == before.tracks[target].bars[7:]


def test_piece_requests_batch_like_sequential(model_and_tok):
    model, tok = model_and_tok
    path = midi_of(tiny_model_dir())
    requests = [(path, PieceRequest(bar_infills=(BarInfill(0, 1, 3),), new_tracks=(TrackSpec(-1),), context_bars=2,
                                    seed=seed, max_tokens_per_bar=8)) for seed in (1, 2)] + loop_requests(1)
    batched = generate_batch(model, tok, requests, batch_size=3)
    one_by_one = [generate(model, tok, *r) if isinstance(r, tuple) else generate(model, tok, None, r)
                  for r in requests]
    assert [g.tokens for g in batched] == [g.tokens for g in one_by_one]


def test_piece_request_errors(model_and_tok):
    model, tok = model_and_tok
    path = midi_of(tiny_model_dir())
    for request in (PieceRequest(bar_infills=(BarInfill(0, 5, 3),)), PieceRequest(bar_infills=(BarInfill(9, 0, 1),)),
                    PieceRequest(new_tracks=(TrackSpec(128),)), PieceRequest(context_bars=0)):
        with pytest.raises(ValueError):
            generate(model, tok, path, request)


# --------------------------------------------------------------------------- runs
def run_params(tmp_path: Path, **kw) -> GenerateParams:
    values = dict(model_dir=str(tiny_model_dir()), output_folder=str(tmp_path / "gen"), label="t", rank=0,
                  num_ranks=2, num_generations=1, max_attempts=2, batch=4, nomml=-2, num_bars=1, n_tracks=1,
                  programs="random", loop_controls=True, loop_count=1, loop_duration_bars=1, track_controls={},
                  time_signature="4/4", tempo=120.0, check_loop=False, temperature=1.0, top_k=20, top_p=0.95,
                  repetition_penalty=1.0, max_tokens_per_bar=8, seed=0, device="cpu", num_threads=0, num_plots=2)
    values.update(kw)
    return GenerateParams(**values)


def stable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["seconds"]).reset_index(drop=True)


def test_ranks_split_generations_without_overlap():
    levels = runs.nomml_levels(-2)
    plans = [runs.plan_generations(levels, 5, r, 3) for r in range(3)]
    ids = [g.gen_id for plan in plans for g in plan]
    assert len(ids) == len(set(ids)) == 14 * 5


def test_levels_are_paired_same_programs_and_seeds_for_every_level(model_and_tok, tmp_path):
    lang = language_of(model_and_tok[1])
    p = run_params(tmp_path, n_tracks=3)
    plan = runs.plan_generations(runs.nomml_levels(-2), 4, 0, 1)
    by_index: dict[int, set] = {}
    for spec in plan:
        request = runs.loop_request(p, spec, 0, lang)
        by_index.setdefault(spec.index, set()).add((request.seed, tuple(t.program for t in request.tracks)))
    assert all(len(pairs) == 1 for pairs in by_index.values())  # the baseline and levels 0-12 share them
    assert len({next(iter(pairs)) for pairs in by_index.values()}) == 4  # while generations differ


def test_the_sweeps_no_control_generations_request_no_loop_controls_either(model_and_tok, tmp_path):
    lang = language_of(model_and_tok[1])
    sweep = run_params(tmp_path)
    specs = runs.plan_generations(runs.nomml_levels(-2), 1, 0, 1)
    requests = {spec.nomml: runs.loop_request(sweep, spec, 0, lang) for spec in specs}
    assert requests[-1].tracks[0].controls == {}  # the baseline of every control
    assert len(requests[3].tracks[0].controls) == 3  # NOMML, loop count, loop duration
    alone = run_params(tmp_path, nomml=-1)  # a run without NOMML still gets the loop controls it asked for
    assert len(runs.loop_request(alone, specs[0], 0, lang).tracks[0].controls) == 2


def test_resume_after_a_kill_has_no_duplicates_and_no_gaps(model_and_tok, tmp_path, monkeypatch):
    model, tok = model_and_tok
    p = run_params(tmp_path)
    reference = stable(runs.run_generation(p, model, tok, log=False))
    assert set(reference["status"]) == {"ok"}
    assert len(reference) == len(runs.plan_generations(runs.nomml_levels(-2), 1, 0, 2))
    results = Path(p.output_folder) / p.label / "RESULTS_0.csv"
    full = results.read_bytes()
    lines = full.splitlines(keepends=True)
    for cut in (len(full) - 7, sum(len(x) for x in lines[:3]) + 5, 10):  # mid-row, mid-file, mid-header
        results.write_bytes(full[:cut])
        (results.parent / "MIDI" / ".nomml03_00000_a0.mid.tmp").write_bytes(b"half a file")
        again = stable(runs.run_generation(p, model, tok, log=False))
        pd.testing.assert_frame_equal(again, reference)
    # killed while appending a generation's rows: half of them reach the file
    results.write_bytes(b"".join(lines[:3]))
    real_append, calls = runs.append_durably, []

    def dying_append(path, text):
        calls.append(text)
        if len(calls) == 2:
            real_append(path, text[: len(text) // 2])
            raise KeyboardInterrupt
        real_append(path, text)

    monkeypatch.setattr(runs, "append_durably", dying_append)
    with pytest.raises(KeyboardInterrupt):
        runs.run_generation(p, model, tok, log=False)
    monkeypatch.setattr(runs, "append_durably", real_append)
    final = stable(runs.run_generation(p, model, tok, log=False))
    pd.testing.assert_frame_equal(final, reference)
    assert not final.duplicated(["gen_id", "attempt", "track_idx"]).any()
    for path in final["midi_path"]:
        assert Score(str(results.parent / path)).tracks


def test_failed_attempts_are_retried_and_recorded(model_and_tok, tmp_path):
    model, tok = model_and_tok
    p = run_params(tmp_path, nomml=0, num_ranks=1, num_generations=2, max_attempts=2, check_loop=True)
    rows = runs.run_generation(p, model, tok, log=False)
    assert set(rows.groupby("gen_id")["attempt"].max()) <= {0, 1}
    failed = rows[rows["status"] == "failed"]
    assert (failed["reason"].str.len() > 0).all()
    for _, part in rows.groupby("gen_id"):
        assert list(part["attempt"]) == list(range(part["attempt"].max() + 1))
        assert (part["status"].iloc[:-1] == "failed").all(), "only the last attempt may pass"


def test_bad_params_are_rejected_before_the_model_loads(tmp_path, monkeypatch):
    import mmmlib.training
    import mmmlib.training.model

    for owner in (mmmlib.training, mmmlib.training.model):  # the notebook calls training.load
        monkeypatch.setattr(owner, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    for kw in (dict(nomml=13), dict(programs=[200]), dict(num_bars=0), dict(nomml=-3),
               dict(track_controls={"ACTrackMood": 1}), dict(time_signature="13/16"), dict(programs="all")):
        with pytest.raises(ParamError):
            run_params(tmp_path, **kw)
    no_tokenizer = tmp_path / "no_tok"
    no_tokenizer.mkdir()
    shutil.copy(tiny_model_dir() / "config.json", no_tokenizer)
    with pytest.raises(ParamError, match="tokenizer"):
        run_params(tmp_path, model_dir=str(no_tokenizer))
    without_nomml = tmp_path / "no_nomml"
    without_nomml.mkdir()
    shutil.copy(tiny_model_dir() / "config.json", without_nomml)
    build_tokenizer(controls=ControlSwitches(nomml=False)).save(without_nomml / "tokenizer.json")
    with pytest.raises(ParamError, match="NOMML"):
        run_params(tmp_path, model_dir=str(without_nomml), nomml=3)
    run_params(tmp_path, model_dir=str(without_nomml), nomml=-1)  # no NOMML control asked: fine


def test_notebook_04_runs_with_papermill(tmp_path):
    import papermill

    out_dir = tmp_path / "gen"
    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "04_generate.ipynb"), str(tmp_path / "04.ipynb"),
        parameters=dict(model_dir=str(tiny_model_dir()), output_folder=str(out_dir), label="nb", nomml=0,
                        num_generations=3, batch=3, n_tracks=2, num_bars=2, max_tokens_per_bar=12, device="cpu",
                        num_plots=2),
        kernel_name="python3", progress_bar=False, cwd=str(REPO_ROOT))
    label = out_dir / "nb"
    rows = list(csv.DictReader(io.StringIO((label / "RESULTS_0.csv").read_text())))
    assert len({r["gen_id"] for r in rows}) == 3
    assert {r["nomml_requested"] for r in rows} == {"0"}
    assert all((label / r["midi_path"]).is_file() for r in rows)
    assert json.loads((label / "rank_0" / "params.json").read_text())["nomml"] == 0
    from mmmlib.evaluation import audio  # a player per piano roll, for the loops that passed
    from mmmlib.generation import final_generations

    if audio.find_soundfont() and audio.synthesizer_name():
        final = final_generations(pd.read_csv(label / "RESULTS_0.csv"), label)
        assert len(list((label / "rank_0" / "audio").glob("*.wav"))) == min(2, final["gen_id"].nunique())
