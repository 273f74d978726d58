"""The studio (06): requests from per-track parameters, batched variations, measurement, edits, the notebook."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from symusic import Score

from mmmlib.core import ParamError
from mmmlib.studio import StudioParams, control_table, edit_request, loop_requests, request_table, variations
from mmmlib.tokens.controls import LOOP_COUNT_TYPE, LOOP_DURATION_TYPE, NOMML_TYPE
from tests.generate_fixtures import midi_of, one_thread, tiny_model, tiny_model_dir
from tests.published_fixtures import TOKENIZER, needs_published, tiny_published_dir, tiny_published_model

REPO_ROOT = Path(__file__).resolve().parents[1]
TRACKS = [{"program": 33, "nomml": 2, "loop_count": 1, "loop_duration_bars": 2}, {"program": -1}]


def params(tmp_path: Path, **overrides) -> StudioParams:
    values = dict(model_dir=str(tiny_model_dir()), tokenizer_path="", tracks=TRACKS, num_bars=2, time_signature="4/4",
                  tempo=120.0, num_variations=3, seed=0, temperature=1.0, top_k=20, top_p=0.95,
                  repetition_penalty=1.0, max_tokens_per_bar=12, midi_file="", infill_track=0, infill_bars=[0, 1],
                  new_track_program=0, new_track_nomml=-1, context_bars=4, chosen_variation=0,
                  output_folder=str(tmp_path / "studio"), soundfont="", device="cpu", num_threads=1)
    values.update(overrides)
    return StudioParams(**values)


def test_tracks_become_requests_with_their_own_controls(tmp_path):
    requests = loop_requests(params(tmp_path), tiny_model()[1])
    assert len(requests) == 3 and len({r.seed for r in requests}) == 3
    first, drums = requests[0].tracks
    assert (first.program, drums.program) == (33, -1)
    # 2 bars of 4/4 = 8 beats: the [8, 12) bin; drums ask for nothing
    assert first.controls == {NOMML_TYPE: 2, LOOP_COUNT_TYPE: "1", LOOP_DURATION_TYPE: "8-12"}
    assert drums.controls == {}
    table = request_table(requests[0])
    assert list(table["program"]) == [33, -1] and table.loc[1, NOMML_TYPE] == ""


@pytest.mark.parametrize(("override", "name"), [
    ({"tracks": [{"program": 33, "nomml": 13}]}, "tracks[0].nomml"),
    ({"tracks": [{"program": 33, "nomll": 2}]}, "unknown keys"),
    ({"tracks": [{"nomml": 2}]}, "program"),
    ({"tracks": []}, "tracks"),
    ({"chosen_variation": 3}, "chosen_variation"),
    ({"infill_bars": [2, 1]}, "infill_bars"),
    ({"new_track_program": 128}, "new_track_program"),
    ({"time_signature": "four"}, "time_signature"),
    ({"model_dir": "nowhere"}, "model_dir"),
])
def test_bad_params_name_the_parameter(tmp_path, override, name):
    with pytest.raises(ParamError, match=name.replace("[", r"\[").replace("]", r"\]")):
        params(tmp_path, **override)


def test_variations_are_batched_valid_and_measured(tmp_path):
    p = params(tmp_path)
    model, tok = tiny_model()
    with one_thread():
        gens = variations(model, tok, p)
        again = variations(model, tok, p)
    assert [g.tokens for g in gens] == [g.tokens for g in again]  # seeded: the same parameters, the same loops
    assert len({tuple(g.tokens) for g in gens}) == 3  # and the variations differ
    assert all(g.bars_per_track == [2, 2] and g.num_errors == 0 for g in gens)
    table = control_table(p.tracks, gens, p.time_signature)
    assert len(table) == 6 and list(table["program"]) == [33, -1] * 3
    assert table["nomml_requested"].tolist() == [2, pd.NA] * 3
    melodic = table[table["track"] == 0]
    assert melodic["nomml_ok"].tolist() == (melodic["nomml_measured"] == 2).tolist()
    assert table.loc[table["track"] == 1, "nomml_ok"].isna().all()  # nothing requested, nothing judged
    assert table["loop_beats_requested"].fillna(-1).tolist() == [8.0, -1] * 3


def test_edit_request_checks_the_file_first(tmp_path):
    score, tok = Score(str(midi_of(tiny_model_dir()))), tiny_model()[1]
    with pytest.raises(ValueError, match="infill_track"):
        edit_request(params(tmp_path, infill_track=len(score.tracks)), score, tok)
    request = edit_request(params(tmp_path, new_track_program=-2, infill_bars=[1, 2]), score, tok)
    assert len(request.bar_infills) == 1 and request.bar_infills[0].bar_start == 1 and not request.new_tracks


def test_notebook_06_runs_with_papermill(tmp_path):
    import papermill

    out = tmp_path / "studio"
    midi = midi_of(tiny_model_dir())
    with one_thread():
        papermill.execute_notebook(
            str(REPO_ROOT / "notebooks" / "06_studio.ipynb"), str(tmp_path / "06.ipynb"),
            parameters=dict(model_dir=str(tiny_model_dir()), output_folder=str(out), num_variations=2, num_bars=2,
                            max_tokens_per_bar=12, midi_file=str(midi), infill_track=0, infill_bars=[0, 1],
                            new_track_program=40, context_bars=4, device="cpu", num_threads=1),
            kernel_name="python3", progress_bar=False, cwd=str(REPO_ROOT))
    assert {f"variation_{k}.mid" for k in range(2)} <= {f.name for f in out.iterdir()}
    controls = pd.read_csv(out / "controls.csv")
    assert len(controls) == 4  # 2 variations x 2 tracks
    before, after = Score(str(out / "edit_before.mid")), Score(str(out / "edit_after.mid"))
    assert len(after.tracks) == len(before.tracks) + 1  # the new track
    assert (out / "variations.png").is_file() and (out / "edit.png").is_file()


@needs_published
def test_the_same_parameters_drive_the_published_model(tmp_path):
    p = params(tmp_path, model_dir=str(tiny_published_dir()), tokenizer_path=str(TOKENIZER), repetition_penalty=0.0)
    model, tok = tiny_published_model()
    first = loop_requests(p, tok)[0].tracks[0]
    # the same meaning, in the published names: 2 bars of 4/4 = 8 beats, the (6, 8] bin
    assert first.controls == {"ACMedianMetricLevel": 2, "ACLoopCount": "1", "ACLoopDurationQuantile": 2}
    with one_thread():
        gens = variations(model, tok, p)
    assert all(g.bars_per_track == [2, 2] and g.num_errors == 0 for g in gens)
    assert len(control_table(p.tracks, gens, p.time_signature)) == 6
