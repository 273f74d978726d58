"""Constrained decoding: the tokenizer's grammar as tensors, enforced on BPE ids, batched.

The allowed successions of token *families* come from :func:`mmmlib.tokens.vocab.grammar_rules`
(MidiTok's REMI type graph, reshaped for MMM tracks, controls and infill markup). They
are turned once per tokenizer into lookup tables over the BPE vocabulary
(:class:`GrammarTables`):

- ``follow[f, v]``: id ``v`` may come after family ``f``: the family of its *first*
  base token may follow ``f`` and every succession *inside* ``v`` is allowed;
- per id: family of its last base token, ``Bar_None`` count, note count (``Pitch`` /
  ``PitchDrum`` tokens), whether it is plain musical content (no control, placeholder or
  structure token), whether it holds pitched or drum notes, a time signature or a tempo,
  its largest ``Position`` (REMI can write positions past the end of a short bar, which
  would move notes into the next bar: they are kept inside the current time signature);
- ``dist[f]``: fewest single-token ids after ``f`` before a bar or track may end
  (``Position -> Tempo``, ``Pitch -> Velocity -> Duration``...), without starting a bar;
  and the same when a note must still be written first (``TimeSig -> Pitch -> ...``).

:class:`GrammarConstraint` is a ``transformers`` logits processor that follows a
:class:`Plan` per row: forced ids (track headers, fill headers, ``EOS``) and free
segments of musical content that end with a given id (``Track_End`` or ``FillBar_End``)
exactly when the segment holds its target number of bars (a fill holds one bar: no
``Bar_None``). Its state is a handful of ``[batch]`` tensors and each step is a few
gathers and boolean ops over ``[batch, vocab]``: no Python loop over rows, no BPE
decoding, no host sync. When a segment nears its token budget, or a bar its own budget
(so that a model that never ends its bars still spreads its notes over every bar), the
processor switches to *closing*: only ids that bring it closer to its end (``dist``
decreasing, through a note when the segment still needs one, then empty bars, then the
end id) are allowed, so every row ends within its budget and never without its notes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING

import torch
from transformers import LogitsProcessor

from mmmlib.tokens.tokenizer import BAR, TRACK_END
from mmmlib.tokens.vocab import STRUCTURE_TOKENS, grammar_rules, token_family

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mmmlib.tokens.tokenizer import MMMLoop

FORCE, FREE, DONE = 0, 1, 2  # kinds of plan steps
NOTE_FAMILIES = frozenset({"Pitch", "PitchDrum"})
NON_CONTENT = frozenset({*STRUCTURE_TOKENS, "Program"}) - {BAR}
UNREACHABLE = 10_000


@dataclass
class GrammarTables:
    """Per-id and per-family lookup tables of one tokenizer (see module doc)."""

    families: list[str]
    follow: torch.Tensor  # [F, V] bool
    last_family: torch.Tensor  # [V] long
    bars: torch.Tensor  # [V] long: Bar_None tokens in the id
    notes: torch.Tensor  # [V] long: Pitch/PitchDrum tokens in the id
    content: torch.Tensor  # [V] bool: only musical content (Bar, TimeSig, Position, notes, Tempo...)
    is_bar: torch.Tensor  # [V] bool
    has_pitch: torch.Tensor  # [V] bool: holds a Pitch token (pitched track)
    has_drum_pitch: torch.Tensor  # [V] bool: holds a PitchDrum token (drum track)
    is_timesig: torch.Tensor  # [V] bool
    position: torch.Tensor  # [V] long: largest Position value in the id, -1 none
    bar_positions: torch.Tensor  # [V] long: positions in a bar of each TimeSig id (0 for other ids)
    ts_slot: torch.Tensor  # [V] long: index of each TimeSig id among the T time signatures (T for others)
    meter: torch.Tensor  # [(T+1)^2, V] bool: allowed time signature slot x current bar's slot (T: any)
    tempo: torch.Tensor  # [V] long: the single-token id of its Tempo, -1 none, -2 several
    program_drum: torch.Tensor  # [V] long: 1 Program_-1, 0 other programs, -1 not a program
    dist: torch.Tensor  # [2F] long: rows F.. when a note is still needed
    music: torch.Tensor  # [4F, V] bool: follow & content & pitch kind; + F drums, + 2F no Bar_None
    closing: torch.Tensor  # [4F, V] bool: single content ids that lower dist; + F drums, + 2F note needed
    bar_cost: int  # ids of an empty bar (Bar_None, then down to dist 0)
    max_dist: int  # largest finite dist
    margin: int  # largest rise of the closing need in one step
    single_id: dict[str, int] = field(repr=False)  # id of each base token

    def to(self, device: torch.device | str) -> GrammarTables:
        """Copy with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **moved)

    @property
    def vocab_size(self) -> int:
        return int(self.last_family.shape[0])


def _note_distances(g: dict[str, frozenset[str]], families: list[str], content_families: set[str],
                    dist: list[int]) -> list[int]:
    """Per family, fewest content tokens (never ``Bar``) to write a note and reach a family
    after which ``Track_End`` may follow."""
    plain = dict(zip(families, dist, strict=True))
    note = dict.fromkeys(families, UNREACHABLE)
    changed = True
    while changed:  # relaxation to a fixed point: a few dozen families
        changed = False
        for f in families:
            for nxt in g.get(f, ()):
                if nxt not in content_families or nxt == "Bar" or nxt not in note:
                    continue
                value = 1 + (plain[nxt] if nxt in NOTE_FAMILIES else note[nxt])
                if value < note[f]:
                    note[f], changed = value, True
    return [note[f] for f in families]


def _closing_distances(g: dict[str, frozenset[str]], families: list[str], content_families: set[str]) -> list[int]:
    """Per family, fewest content tokens (never ``Bar``) before ``Track_End`` may follow."""
    dist = {f: (0 if TRACK_END in g.get(f, ()) else UNREACHABLE) for f in families}
    queue = deque(f for f in families if dist[f] == 0)
    predecessors: dict[str, list[str]] = {f: [] for f in families}
    for f in families:
        for nxt in g.get(f, ()):
            if nxt in content_families and nxt != "Bar" and nxt in predecessors:
                predecessors[nxt].append(f)
    while queue:  # BFS backwards from the families a segment may end after
        f = queue.popleft()
        for prev in predecessors[f]:
            if dist[prev] > dist[f] + 1:
                dist[prev] = dist[f] + 1
                queue.append(prev)
    return [dist[f] for f in families]


def _follow_table(g: dict[str, frozenset[str]], families: list[str], id_families: list[list[str]]) -> torch.Tensor:
    """``[F, V]``: the id's first family may follow ``f`` and its inner successions are allowed."""
    index = {f: i for i, f in enumerate(families)}
    first = torch.tensor([index[fams[0]] for fams in id_families])
    inner_ok = torch.tensor([all(b in g.get(a, ()) for a, b in zip(fams[:-1], fams[1:], strict=True))
                             for fams in id_families])
    follow = torch.zeros(len(families), len(id_families), dtype=torch.bool)
    for fi, f in enumerate(families):
        ok = torch.zeros(len(families), dtype=torch.bool)
        ok[[index[n] for n in g.get(f, ()) if n in index]] = True
        follow[fi] = ok[first] & inner_ok
    return follow


def _value_tables(tok: MMMLoop, id_tokens: list[tuple[str, ...]], single_id: dict[str, int]) -> dict[str, torch.Tensor]:
    """Per id: time signature, positions, tempo and program values (see :class:`GrammarTables`)."""
    num_v = len(id_tokens)
    tempo = torch.full((num_v,), -1, dtype=torch.long)
    program_drum = torch.full((num_v,), -1, dtype=torch.long)
    bar_positions = torch.zeros(num_v, dtype=torch.long)
    for i, tokens in enumerate(id_tokens):
        tempos = [single_id[t] for t in tokens if t.startswith("Tempo_")]
        tempo[i] = tempos[0] if len(tempos) == 1 else (-2 if tempos else -1)
        if len(tokens) == 1 and tokens[0].startswith("Program_"):
            program_drum[i] = int(tokens[0] == "Program_-1")
        if len(tokens) == 1 and tokens[0].startswith("TimeSig_"):  # positions count beats of the denominator
            bar_positions[i] = int(tokens[0].split("_")[1].split("/")[0]) * tok.config.max_num_pos_per_beat
    position = [max((int(t.split("_")[1]) for t in tokens if t.startswith("Position_")), default=-1)
                for tokens in id_tokens]
    position_t, is_timesig = torch.tensor(position), bar_positions > 0
    ts_ids = is_timesig.nonzero().flatten()
    num_ts = len(ts_ids)
    ts_slot = torch.full((num_v,), num_ts, dtype=torch.long)
    ts_slot[ts_ids] = torch.arange(num_ts)
    # allowed slot a (num_ts: any) x bar slot b (num_ts: unknown, no position limit)
    allowed_ts = torch.cat([~is_timesig[None, :] | (ts_slot[None, :] == torch.arange(num_ts)[:, None]),
                            torch.ones(1, num_v, dtype=torch.bool)])
    limits = torch.cat([bar_positions[ts_ids], torch.tensor([1 << 30])])
    inside = position_t[None, :] < limits[:, None]
    meter = (allowed_ts[:, None, :] & inside[None, :, :]).reshape((num_ts + 1) ** 2, num_v)
    return {"tempo": tempo, "program_drum": program_drum, "bar_positions": bar_positions, "position": position_t,
            "is_timesig": is_timesig, "ts_slot": ts_slot, "meter": meter}


def build_tables(tok: MMMLoop) -> GrammarTables:
    """Lookup tables of ``tok`` (CPU tensors); see :func:`grammar_tables` for the cached version."""
    g = grammar_rules(tok)
    specials = frozenset(tok.special_tokens)
    id_tokens = tok.id_tokens()
    id_families = [[token_family(t, specials) for t in tokens] for tokens in id_tokens]
    families = sorted(set(g) | {f for fams in id_families for f in fams})
    index = {f: i for i, f in enumerate(families)}
    num_f, num_v = len(families), len(id_tokens)
    single_id = {tokens[0]: i for i, tokens in enumerate(id_tokens) if len(tokens) == 1}
    content_families = {f for f in families if f not in NON_CONTENT and not f.startswith("AC")}
    follow = _follow_table(g, families, id_families)
    content = torch.tensor([all(f in content_families for f in fams) for fams in id_families])
    plain_dist = _closing_distances(g, families, content_families)
    dist = torch.tensor(plain_dist + _note_distances(g, families, content_families, plain_dist))
    last_family = torch.tensor([index[fams[-1]] for fams in id_families])
    is_bar = torch.tensor([tokens == (BAR,) for tokens in id_tokens])
    single = torch.tensor([len(tokens) == 1 for tokens in id_tokens])
    steps = follow & (content & single & ~is_bar)[None, :]
    note_ids = torch.tensor([len(f) == 1 and f[0] in NOTE_FAMILIES for f in id_families])
    closing = steps & (dist[last_family][None, :] < dist[:num_f, None])
    after = torch.where(note_ids, dist[last_family], dist[num_f + last_family])  # a note id meets the need
    closing_note = steps & (after[None, :] < dist[num_f:, None])
    has_pitch = torch.tensor(["Pitch" in fams for fams in id_families])
    has_drum_pitch = torch.tensor(["PitchDrum" in fams for fams in id_families])
    kinds = torch.stack([~has_drum_pitch, ~has_pitch])  # pitched track, drum track
    music = (follow & content[None, :])[None] & kinds[:, None, :]
    music = torch.stack([music, music & ~is_bar[None, None, :]])  # no Bar_None once the bars are all there
    closing_all = torch.stack([closing, closing_note])[:, None] & kinds[None, :, None, :]
    finite = dist[dist < UNREACHABLE]
    return GrammarTables(
        families=families, follow=follow, last_family=last_family,
        bars=torch.tensor([sum(t == BAR for t in tokens) for tokens in id_tokens]),
        notes=torch.tensor([sum(f in NOTE_FAMILIES for f in fams) for fams in id_families]),
        content=content, is_bar=is_bar, has_pitch=has_pitch, has_drum_pitch=has_drum_pitch,
        dist=dist, music=music.reshape(4 * num_f, num_v), closing=closing_all.reshape(4 * num_f, num_v),
        bar_cost=1 + int(dist[index["Bar"]]), max_dist=int(finite.max()), margin=int(finite.max()) + 1,
        single_id=single_id, **_value_tables(tok, id_tokens, single_id),
    )


def grammar_tables(tok: MMMLoop, device: torch.device | str = "cpu") -> GrammarTables:
    """:func:`build_tables`, cached on the tokenizer per device."""
    cache = tok.__dict__.setdefault("_mmmlib_grammar_tables", {})
    key = str(torch.device(device))
    if key not in cache:
        cpu = cache.get("cpu") or build_tables(tok)
        cache["cpu"] = cpu
        cache[key] = cpu.to(device)
    return cache[key]


# --------------------------------------------------------------------------- plans
@dataclass
class Plan:
    """What one row must produce after its prompt: forced ids and free segments, then EOS.

    :param drum: the row's track is a drum track at the start (``PitchDrum`` notes);
        a forced ``Program`` id updates it.
    :param timesig_id: the only ``TimeSig`` id allowed (-1: the first one generated
        or forced is kept for the rest of the row).
    :param tempo_id: the only ``Tempo`` id allowed (-1: any).
    """

    steps: list[tuple[int, ...]] = field(default_factory=list)  # kind, id, bars, budget, notes, bar budget
    drum: bool = False
    timesig_id: int = -1
    tempo_id: int = -1

    def force(self, ids: Sequence[int]) -> Plan:
        """Append forced ids (emitted as they are, without grammar checks)."""
        self.steps += [(FORCE, int(i), 0, 0, 0, 0) for i in ids]
        return self

    def free(self, num_bars: int, end_id: int, budget: int, min_notes: int = 0, bar_budget: int = 0) -> Plan:
        """Append a free segment of ``num_bars`` ``Bar_None`` that ends with ``end_id``.

        :param budget: most ids of the segment (the end id included); the processor
            closes the segment early enough to keep to it.
        :param min_notes: notes needed before ``end_id`` (0 or 1: closing writes one note at most).
        :param bar_budget: most ids of one bar before it is closed (0: no limit per bar).
        """
        if min_notes not in (0, 1):
            raise ValueError(f"min_notes must be 0 or 1, got {min_notes}")
        self.steps.append((FREE, int(end_id), int(num_bars), int(budget), int(min_notes), int(bar_budget)))
        return self

    def max_new_tokens(self, tables: GrammarTables) -> int:
        """Upper bound of the ids this plan generates (closing may overrun a tiny budget)."""
        total = 1  # EOS
        for kind, _, bars, budget, *_ in self.steps:
            floor = bars * tables.bar_cost + tables.max_dist + tables.margin + 1
            total += 1 if kind == FORCE else max(budget, floor)
        return total


def plans_to_tensors(plans: Sequence[Plan], eos_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Stack plans into ``[rows, steps]`` tensors, each ending with a forced EOS then DONE."""
    width = max(len(p.steps) for p in plans) + 2
    rows = [[*p.steps, (FORCE, eos_id, 0, 0, 0, 0)] + [(DONE, 0, 0, 0, 0, 0)] * (width - len(p.steps) - 1)
            for p in plans]
    table = torch.tensor(rows, dtype=torch.long, device=device)
    names = ("kind", "token", "bars", "budget", "notes", "bar_budget")
    return {name: table[:, :, i].contiguous() for i, name in enumerate(names)}


class GrammarConstraint(LogitsProcessor):
    """Masks the logits of every row to the ids its :class:`Plan` and the grammar allow.

    Create one per ``generate`` call: it keeps the state of its rows.

    :param tables: :func:`grammar_tables` on the model's device.
    :param plans: one plan per row of the batch.
    :param eos_id: the id ending each row; ``pad_id`` is allowed once a row is done.
    """

    def __init__(self, tables: GrammarTables, plans: Sequence[Plan], eos_id: int, pad_id: int) -> None:
        device = tables.follow.device
        self.t = tables
        self.plan = plans_to_tensors(plans, eos_id, device)
        self.pad_id = pad_id
        self.num_families = len(tables.families)
        self.rows = torch.arange(len(plans), device=device)
        self.vocab = torch.arange(tables.vocab_size, device=device)
        self.drum = torch.tensor([p.drum for p in plans], device=device)
        self.any_ts = int(tables.ts_slot.max())  # the slot meaning "any" / "unknown"
        timesig = torch.tensor([p.timesig_id for p in plans], device=device)
        self.ts = torch.where(timesig >= 0, tables.ts_slot[timesig.clamp(min=0)], self.any_ts)
        self.bar_ts = self.ts.clone()  # the time signature of the current bar (positions)
        tempo_id = torch.tensor([p.tempo_id for p in plans], device=device)[:, None]
        # fixed for the whole call: the tempo ids each row may use
        self.tempo_ok = (tables.tempo[None, :] == -1) | (tempo_id < 0) | (tables.tempo[None, :] == tempo_id)
        zeros = torch.zeros(len(plans), dtype=torch.long, device=device)
        self.ptr, self.bars, self.notes, self.used = zeros.clone(), zeros.clone(), zeros.clone(), zeros.clone()
        self.bar_used = zeros.clone()  # ids since the last Bar_None of the segment
        self.family: torch.Tensor | None = None

    def _at(self, name: str) -> torch.Tensor:
        return self.plan[name][self.rows, self.ptr]

    def advance(self, token: torch.Tensor) -> None:
        """Update the row states with the ids just emitted (``[rows]``)."""
        t = self.t
        kind, end = self._at("kind"), self._at("token")
        moving = (kind == FORCE) | ((kind == FREE) & (token == end))
        counting = (kind == FREE) & ~moving
        keep = (~moving).long()
        self.bars = (self.bars + counting * t.bars[token]) * keep
        self.notes = (self.notes + counting * t.notes[token]) * keep
        self.used = (self.used + counting.long()) * keep
        self.bar_used = (self.bar_used + counting.long()) * keep * (t.bars[token] == 0).long()
        self.ptr = torch.clamp(self.ptr + moving.long(), max=self.plan["kind"].shape[1] - 1)
        self.family = t.last_family[token]
        program = t.program_drum[token]
        self.drum = torch.where(program >= 0, program == 1, self.drum)
        slot = t.ts_slot[token]
        self.ts = torch.where(t.is_timesig[token] & (self.ts == self.any_ts), slot, self.ts)
        self.bar_ts = torch.where(t.is_timesig[token], slot, self.bar_ts)

    def allowed(self) -> torch.Tensor:
        """``[rows, vocab]`` bool mask of the ids each row may emit next."""
        t, vocab = self.t, self.vocab[None, :]
        kind, token = self._at("kind"), self._at("token")
        target, budget, min_notes = self._at("bars"), self._at("budget"), self._at("notes")
        # forced rows: their id; done rows: padding; free rows: their end id (when allowed)
        chosen = vocab == torch.where(kind == DONE, self.pad_id, token)[:, None]
        row = self.family + self.num_families * self.drum.long()
        # time signature kept, notes inside the bar, tempo kept
        extra = self.tempo_ok & t.meter[self.ts * (self.any_ts + 1) + self.bar_ts]
        music = t.music[row + 2 * self.num_families * (self.bars >= target).long()] & extra
        needs_note = (self.notes < min_notes).long()
        dist = t.dist[self.family + self.num_families * needs_note]
        need = dist + (target - self.bars) * t.bar_cost + 1 + t.margin
        bar_budget = self._at("bar_budget")
        closing = (self.used + need >= budget) | ((bar_budget > 0) & (self.bar_used + dist + t.margin >= bar_budget))
        close = (t.closing[row + 2 * self.num_families * needs_note] & extra) | (music & t.is_bar[None, :])
        end_ok = t.follow[self.family, token] & (self.bars == target) & (self.notes >= min_notes)
        free = torch.where(closing[:, None], close, music) | (chosen & end_ok[:, None])
        return torch.where((kind == FREE)[:, None], free, chosen)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Mask ``scores`` (``[rows, vocab]``); the first call reads the prompts' last ids."""
        last = input_ids[:, -1]
        if self.family is None:
            self.family = self.t.last_family[last]
        else:
            self.advance(last)
        return torch.where(self.allowed(), scores, float("-inf"))
