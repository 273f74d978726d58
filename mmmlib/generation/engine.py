"""Generation API: new multitrack loops, and infill / new tracks on an existing piece.

- :class:`LoopRequest`: a new loop of ``num_bars`` bars, one :class:`TrackSpec` (program
  and track controls: NOMML, loop count / duration bin, density, polyphony...) per track.
  The tracks are generated one after the other in one sequence, in MMM order: each
  track header (``Track_Start Program_P <controls>``) is forced once the previous track
  has ended, so every track is conditioned on the ones before it.
- :class:`PieceRequest` (:mod:`mmmlib.generation.infill`): bar infill, whole-track infill and new
  tracks on a score, window by window of ``context_bars`` bars.

Every request becomes one or more passes (:class:`~mmmlib.generation.sampling.Pass`: prompt ids, a
:class:`~mmmlib.generation.constraint.Plan`, a seed derived from the request's seed).
:func:`generate_batch` runs the passes of many requests together (left padding, KV
cache, per-row seeded sampling), so its outputs equal those of :func:`generate` called
request by request with the same seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from symusic import Score

from mmmlib.generation.infill import PieceRequest, piece_job
from mmmlib.generation.language import language_of
from mmmlib.generation.loop import Generation, LoopRequest, loop_job, max_positions
from mmmlib.generation.sampling import Pass, Sampling, run_passes

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence

    from transformers import PreTrainedModel

    from mmmlib.generation.language import Language
    from mmmlib.tokens.published import PublishedTokenizer
    from mmmlib.tokens.tokenizer import MMMLoop

# A request: a new loop, or (score or MIDI path, edits on it).
Request = LoopRequest | tuple[Any, PieceRequest]


# --------------------------------------------------------------------------- entry points
def _job(lang: Language, request: Request, positions: int) -> Generator[Pass, Any, Generation]:
    if isinstance(request, LoopRequest):
        return loop_job(lang, request, positions)
    score, piece_request = request
    return piece_job(lang, load_score(score), piece_request, positions)


def load_score(score_or_path: Score | str | Path) -> Score:
    """A score, read from a MIDI file when given a path."""
    if isinstance(score_or_path, (str, Path)):
        if not Path(score_or_path).is_file():
            raise FileNotFoundError(f"no MIDI file at {score_or_path}")
        return Score(str(score_or_path))
    return score_or_path


def generate_batch(model: PreTrainedModel, tok: MMMLoop | PublishedTokenizer | Language, requests: Sequence[Request],
                   sampling: Sampling | None = None, batch_size: int = 64,
                   cache_implementation: str | None = None) -> list[Generation]:
    """Generate many requests on one device, ``batch_size`` rows per ``model.generate``.

    A request is a :class:`LoopRequest` or a ``(score or MIDI path, PieceRequest)`` pair.
    Piece requests take several passes; pass ``k`` of every request runs in the same
    batches. Outputs equal :func:`generate` called request by request.

    :param model: the causal LM (eval mode), e.g. from :func:`mmmlib.training.model.load`.
    :param tok: its tokenizer, of either dialect (mmmlib's :class:`~mmmlib.tokens.tokenizer.MMMLoop` or
        the published :class:`~mmmlib.tokens.published.PublishedTokenizer`), or its
        :class:`~mmmlib.generation.language.Language`.
    :param requests: the requests (each with its seed).
    :param sampling: sampling settings (default :class:`~mmmlib.generation.sampling.Sampling`; a
        repetition penalty of 0 takes the language's default, 1.2 for the published model).
    :param batch_size: rows per ``model.generate`` call.
    :param cache_implementation: ``transformers`` KV cache (``"static"`` on GPU), None: dynamic.
    :return: one :class:`Generation` per request, in order.
    """
    lang = language_of(tok)
    sampling = (sampling or Sampling()).for_language(lang)
    positions = max_positions(model)
    jobs = [_job(lang, r, positions) for r in requests]
    outputs: list[Generation | None] = [None] * len(jobs)
    pending = {i: next(job) for i, job in enumerate(jobs)}  # validates every request first
    while pending:
        order = sorted(pending)
        results = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            passes = [pending[i] for i in chunk]
            outs = run_passes(model, lang, passes, sampling, cache_implementation=cache_implementation)
            results.update(zip(chunk, outs, strict=True))
        pending = {}
        for i, result in results.items():
            try:
                pending[i] = jobs[i].send(result)
            except StopIteration as done:
                outputs[i] = done.value
    return outputs  # type: ignore[return-value]


def generate(model: PreTrainedModel, tok: MMMLoop | PublishedTokenizer | Language, score_or_path: Score | str | Path | None,
             request: LoopRequest | PieceRequest, sampling: Sampling | None = None) -> Generation:
    """Generate one request.

    :param score_or_path: the piece to edit (a :class:`PieceRequest`), or None for a
        :class:`LoopRequest`.
    :param request: what to generate.
    :param sampling: sampling settings.
    :return: the :class:`Generation`.
    """
    if isinstance(request, LoopRequest):
        if score_or_path is not None:
            raise ValueError("a LoopRequest makes a new loop: pass score_or_path=None")
        return generate_batch(model, tok, [request], sampling)[0]
    if score_or_path is None:
        raise ValueError("a PieceRequest needs a score or a MIDI path")
    return generate_batch(model, tok, [(score_or_path, request)], sampling)[0]
