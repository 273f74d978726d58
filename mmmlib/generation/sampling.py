"""Batched sampling with per-row seeds: left padding, KV cache, and the grammar constraint.

``transformers``' ``generate`` samples with one global RNG, so a row's tokens would
depend on the rows batched with it. Here ``generate`` runs greedy (``do_sample=False``)
over logits that our processors have already turned into a sample: after the grammar
mask, repetition penalty and temperature, :class:`SeededTopKSampler` keeps the top-k ids, then
the top-p nucleus among them, and adds Gumbel noise drawn from a counter-based hash of
``(row seed, step, token id)`` (:class:`SeededGumbel` is the same noise over the whole
vocabulary). The argmax of ``logits + Gumbel noise`` is a sample of ``softmax(logits)`` (the
Gumbel-max trick), and the noise of a row depends on its seed and step only, so a request
gives the same tokens alone or in any batch (up to float rounding of the batched forward
pass). Working on the k best ids only keeps sampling cheap with a large vocabulary (the
published model's 16,000 ids): a full-vocabulary top-p sort and hash cost more than the
model's step on a CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from mmmlib.generation.constraint import GrammarConstraint, Plan, grammar_tables
from mmmlib.generation.language import language_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PreTrainedModel

    from mmmlib.generation.language import Language

_MASK32 = 0xFFFFFFFF
# Odd multipliers below 2**31, so that no int64 product overflows (x < 2**32).
_MIX = (0x7FEB352D, 0x2C1B3C6D, 0x297A2D39)


@dataclass(frozen=True)
class Sampling:
    """Sampling settings (defaults: MMM's top-k 20 and top-p 0.95).

    :param temperature: divides the logits (> 0).
    :param top_k: keep the k most likely ids (0: all).
    :param top_p: keep the smallest set of ids holding this probability (1.0: all).
    :param repetition_penalty: CTRL-style penalty on ids already in the sequence (1.0: none;
        0: the language's default, 1.2 for the published model and 1.0 for mmmlib's,
        see :meth:`for_language`).
    """

    temperature: float = 1.0
    top_k: int = 20
    top_p: float = 0.95
    repetition_penalty: float = 1.0

    def for_language(self, lang: Language) -> Sampling:
        """These settings, with a repetition penalty of 0 replaced by the language's default.

        :param lang: the language generated in.
        :return: the settings to sample with.
        """
        if self.repetition_penalty:
            return self
        return Sampling(self.temperature, self.top_k, self.top_p, lang.default_repetition_penalty)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty < 0:
            raise ValueError(f"repetition_penalty must be > 0 (0: the language's default), got {self.repetition_penalty}")

    def warpers(self, truncate: bool = True) -> list[LogitsProcessor]:
        """``transformers`` processors for these settings, in MMM's order.

        :param truncate: include top-k and top-p (False: :class:`SeededTopKSampler` does them).
        :return: the processors.
        """
        out: list[LogitsProcessor] = []
        if self.repetition_penalty not in (0.0, 1.0):
            out.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.temperature != 1.0:
            out.append(TemperatureLogitsWarper(self.temperature))
        if truncate and self.top_k > 0:
            out.append(TopKLogitsWarper(self.top_k))
        if truncate and self.top_p < 1.0:
            out.append(TopPLogitsWarper(self.top_p))
        return out


def _hash_base(seeds: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``[rows, vocab]`` int64 keys of ``(seed, id)``; a step is added to them before mixing."""
    ids = torch.arange(vocab_size, device=seeds.device, dtype=torch.long)
    return (seeds[:, None] & 0x7FFFFFFF) * _MIX[0] + ids[None, :] * _MIX[1]


def _keys_to_uniform(keys: torch.Tensor) -> torch.Tensor:
    """Mix 32-bit keys (multiply / xor-shift rounds, no int64 overflow) into uniforms in (0, 1)."""
    x = keys & _MASK32
    for multiplier in _MIX:
        x = x ^ (x >> 16)
        x = (x * multiplier) & _MASK32
    return bits_to_uniform(x ^ (x >> 15))


def bits_to_uniform(bits: torch.Tensor) -> torch.Tensor:
    """Uniforms in (0, 1) from 32-bit integers, never 0 or 1.

    23 bits: ``(k + 0.5) / 2**23`` is exact in float32 (24 bits would round the top value
    to 1.0, whose Gumbel noise is infinite and turns a masked ``-inf`` into NaN).
    """
    return ((bits >> 9).to(torch.float32) + 0.5) / float(1 << 23)


def hash_uniform(seeds: torch.Tensor, step: int, vocab_size: int) -> torch.Tensor:
    """``[rows, vocab]`` uniforms in (0, 1) from ``(seed, step, id)``, the same on every device."""
    return _keys_to_uniform(_hash_base(seeds, vocab_size) + (step & 0x7FFFFFFF) * _MIX[2])


class SeededGumbel(LogitsProcessor):
    """Adds per-row seeded Gumbel noise; the argmax of the result is a sample (see module doc)."""

    def __init__(self, seeds: Sequence[int], prompt_len: int, device: torch.device) -> None:
        self.seeds = torch.tensor([int(s) & 0x7FFFFFFF for s in seeds], dtype=torch.long, device=device)
        self.prompt_len = prompt_len
        self.base: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.base is None:
            self.base = _hash_base(self.seeds, scores.shape[1])
        step = input_ids.shape[1] - self.prompt_len
        u = _keys_to_uniform(self.base + (step & 0x7FFFFFFF) * _MIX[2])
        return scores - torch.log(-torch.log(u))


class SeededTopKSampler(LogitsProcessor):
    """Top-k, then top-p among those, then seeded Gumbel-max: only the sampled id stays finite.

    The same sample as ``TopKLogitsWarper``, ``TopPLogitsWarper`` and :class:`SeededGumbel` in a
    row (ties at the k-th logit aside: exactly ``k`` ids are kept), computed on ``[rows, k]``
    instead of ``[rows, vocab]``: the noise of an id is the hash of ``(seed, step, id)`` either way.

    :param seeds: one seed per row.
    :param prompt_len: width of the (left-padded) prompts; steps count from there.
    :param top_k: ids kept (0: all).
    :param top_p: nucleus mass kept among them (1.0: all).
    :param device: where the rows live.
    """

    def __init__(self, seeds: Sequence[int], prompt_len: int, top_k: int, top_p: float, device: torch.device) -> None:
        self.seeds = torch.tensor([int(s) & 0x7FFFFFFF for s in seeds], dtype=torch.long, device=device)
        self.prompt_len, self.top_k, self.top_p = prompt_len, top_k, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Scores with ``-inf`` everywhere but the sampled id of each row."""
        k = min(self.top_k or scores.shape[1], scores.shape[1])
        values, index = scores.topk(k, dim=1)  # descending
        if self.top_p < 1.0:  # keep an id while the mass of the more likely ones is below top_p
            probs = values.float().softmax(dim=1)
            before = probs.cumsum(dim=1) - probs
            values = values.masked_fill((before >= self.top_p) & (torch.arange(k, device=values.device) > 0),
                                        float("-inf"))
        step = input_ids.shape[1] - self.prompt_len
        keys = (self.seeds[:, None] & 0x7FFFFFFF) * _MIX[0] + index * _MIX[1] + (step & 0x7FFFFFFF) * _MIX[2]
        noisy = values - torch.log(-torch.log(_keys_to_uniform(keys)))
        chosen = index.gather(1, noisy.argmax(dim=1, keepdim=True))
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, chosen, 0.0)


@dataclass
class Pass:
    """One row of a batched generation: prompt ids, what to generate, the seed."""

    prompt: list[int]
    plan: Plan
    seed: int


@dataclass
class PassResult:
    """Generated ids of one :class:`Pass` (EOS and padding removed), its share of the time,
    and the decoding steps of its batch (its ids plus the steps spent waiting for longer rows)."""

    ids: list[int]
    seconds: float
    steps: int = 0


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of left-padded prompts."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids.to(device), mask.to(device)


def special(tok: Language | object) -> tuple[int, int]:
    """``(eos_id, pad_id)`` of a language (or of a tokenizer's).

    :param tok: a :class:`~mmmlib.generation.language.Language` or a tokenizer.
    :return: the two ids.
    """
    lang = language_of(tok)
    return lang.eos_id, lang.pad_id


@torch.no_grad()
def run_passes(model: PreTrainedModel, tok: Language | object, passes: Sequence[Pass], sampling: Sampling,
               use_constraints: bool = True, cache_implementation: str | None = None) -> list[PassResult]:
    """Generate every pass in one ``model.generate`` call (one batch).

    :param model: causal LM (eval mode) on its device.
    :param tok: its language (or tokenizer).
    :param passes: the rows.
    :param sampling: sampling settings.
    :param use_constraints: apply :class:`~mmmlib.generation.constraint.GrammarConstraint` (off: only the
        benchmark's baseline uses it, to price the constraint).
    :param cache_implementation: ``transformers`` cache (e.g. ``"static"`` on GPU); None: dynamic.
    :return: one result per pass, in order.
    """
    device = model.device
    eos_id, pad_id = special(tok)
    tables = grammar_tables(tok, device)
    ids, mask = left_pad([p.prompt for p in passes], pad_id, device)
    processors: list[LogitsProcessor] = []
    if use_constraints:
        processors.append(GrammarConstraint(tables, [p.plan for p in passes], eos_id, pad_id))
    processors += sampling.warpers(truncate=False)
    processors.append(SeededTopKSampler([p.seed for p in passes], ids.shape[1], sampling.top_k, sampling.top_p, device))
    config = GenerationConfig(do_sample=False, max_new_tokens=max(p.plan.max_new_tokens(tables) for p in passes),
                              eos_token_id=eos_id, pad_token_id=pad_id, use_cache=True,
                              cache_implementation=cache_implementation)
    start = time.perf_counter()
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                         logits_processor=LogitsProcessorList(processors))
    seconds = (time.perf_counter() - start) / len(passes)
    rows = out[:, ids.shape[1]:].cpu().tolist()
    results = []
    for row in rows:
        cut = row.index(eos_id) if eos_id in row else len(row)
        results.append(PassResult(row[:cut], seconds, len(row)))
    return results
