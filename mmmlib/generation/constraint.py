"""Constrained decoding: a token language's grammar as tensors, enforced on BPE ids, batched.

The allowed successions of token *families* come from the
:class:`~mmmlib.generation.language.Language` (mmmlib's dialect: MidiTok's REMI type graph
reshaped for MMM tracks, controls and infill markup; the published dialect: its REAPER
layout with microtiming and loop markers). They are turned once per language into lookup
tables over the BPE vocabulary (:class:`GrammarTables`). An id stands for all the base tokens
BPE merged into it, whatever they are, so merges that cross structure tokens
(``Bar_None TimeSig_4/4 Position_0`` as one id) are counted and checked token by token; an id
that stands for no base token (the published ``▁``) is a pseudo token its language places.

- ``follow[f, v]``: id ``v`` may come after family ``f``: the family of its *first*
  base token may follow ``f`` and every succession *inside* ``v`` is allowed;
- per id: family of its last base token, ``Bar_None`` count (a row never writes more bars
  than its segment holds), note count (``Pitch`` / ``PitchDrum`` tokens), whether it is plain
  musical content (no control, placeholder or structure token), whether it holds pitched or
  drum notes, its time signature, tempo and loop markers, its largest ``Position`` before its
  own bar line (positions past the end of a short bar would move notes into the next bar: they
  are kept inside the current time signature; positions after a bar line inside the id are
  checked against the id's own time signature);
- ``dist[f]``: fewest single-token ids after ``f`` before a bar or track may end
  (``Position -> Tempo``, ``Pitch -> Velocity -> Duration``...), without starting a bar and
  without optional markup (loop markers); and the same when a note must still be written
  first (``TimeSig -> Pitch -> ...``).

:class:`GrammarConstraint` is a ``transformers`` logits processor that follows a
:class:`Plan` per row: forced ids (track headers, fill headers, ``EOS``) and free
segments of musical content that end with a given id (``Track_End`` or ``FillBar_End``)
exactly when the segment holds its target number of bars. A ``Loop_End`` needs an open
``Loop_Start`` of its segment. Its state is a handful of ``[batch]`` tensors and each step is a few
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

from mmmlib.generation.language import language_of
from mmmlib.tokens.special import BAR, TRACK_END

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mmmlib.generation.language import Language

FORCE, FREE, DONE = 0, 1, 2  # kinds of plan steps
NOTE_FAMILIES = frozenset({"Pitch", "PitchDrum"})
UNREACHABLE = 10_000
NO_POSITION_LIMIT = 1 << 30


@dataclass
class GrammarTables:
    """Per-id and per-family lookup tables of one language (see module doc)."""

    families: list[str]
    follow: torch.Tensor  # [F, V] bool
    last_family: torch.Tensor  # [V] long
    bars: torch.Tensor  # [V] long: Bar_None tokens in the id
    notes: torch.Tensor  # [V] long: Pitch/PitchDrum tokens in the id
    content: torch.Tensor  # [V] bool: only musical content (Bar, TimeSig, Position, notes, Tempo...)
    is_bar: torch.Tensor  # [V] bool: the id is Bar_None alone
    has_pitch: torch.Tensor  # [V] bool: holds a Pitch token (pitched track)
    has_drum_pitch: torch.Tensor  # [V] bool: holds a PitchDrum token (drum track)
    is_timesig: torch.Tensor  # [V] bool: holds a TimeSig token
    position: torch.Tensor  # [V] long: largest Position before the id's own bar or TimeSig, -1 none
    ts_slot: torch.Tensor  # [V] long: index of the id's (last) TimeSig among the T time signatures, T: none
    meter: torch.Tensor  # [(T+1)^2, V] bool: allowed for row time signature slot x current bar's slot (T: any)
    tempo: torch.Tensor  # [V] long: the single-token id of its Tempo, -1 none, -2 several
    program_drum: torch.Tensor  # [V] long: 1 Program_-1, 0 other programs, -1 not a program
    loop_starts: torch.Tensor  # [V] long: Loop_Start tokens in the id
    loop_ends: torch.Tensor  # [V] long: Loop_End tokens in the id
    dist: torch.Tensor  # [2F] long: rows F.. when a note is still needed
    music: torch.Tensor  # [2F, V] bool: follow & content & pitch kind; + F drums
    closing: torch.Tensor  # [4F, V] bool: single content ids that lower dist; + F drums, + 2F note needed
    bar_cost: int  # ids of an empty bar (Bar_None, then down to dist 0)
    max_dist: int  # largest finite dist
    margin: int  # largest rise of the closing need in one step
    has_loops: bool  # the vocabulary has loop markers (their pairing is then tracked)
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


def _meter_of(tokens: tuple[str, ...], ts_index: dict[str, int], limit_of: dict[str, int]) -> tuple[int, int, bool]:
    """``(slot of the last TimeSig or -1, largest Position before the id's own bar, own positions fit)``.

    Positions after a ``Bar_None`` or ``TimeSig`` inside the id belong to the id's own bar and
    are checked here against its time signature; those before belong to the current bar.
    """
    slot, before, fits, own, own_ts = -1, -1, True, False, ""
    for t in tokens:
        kind = t.split("_", 1)[0]
        if t == BAR:
            own, own_ts = True, ""
        elif kind == "TimeSig":
            if slot >= 0 and ts_index[t] != slot:
                fits = False  # two different time signatures in one id: never allowed
            slot, own, own_ts = ts_index[t], True, t
        elif kind == "Position":
            value = int(t.split("_")[1])
            if not own:
                before = max(before, value)
            elif own_ts and value >= limit_of[own_ts]:
                fits = False
    return slot, before, fits


def _value_tables(lang: Language, id_tokens: list[tuple[str, ...]], single_id: dict[str, int]) -> dict[str, torch.Tensor]:
    """Per id: time signature, positions, tempo, program and loop marker values (see :class:`GrammarTables`)."""
    num_v = len(id_tokens)
    timesigs = [t for t in single_id if t.startswith("TimeSig_")]
    ts_index = {t: k for k, t in enumerate(timesigs)}
    limit_of = {t: lang.bar_positions(t.split("_", 1)[1]) for t in timesigs}
    num_ts = len(timesigs)
    tempo = torch.full((num_v,), -1, dtype=torch.long)
    program_drum = torch.full((num_v,), -1, dtype=torch.long)
    meters = [_meter_of(tokens, ts_index, limit_of) for tokens in id_tokens]
    for i, tokens in enumerate(id_tokens):
        tempos = [single_id[t] for t in tokens if t.startswith("Tempo_")]
        tempo[i] = tempos[0] if len(tempos) == 1 else (-2 if tempos else -1)
        if len(tokens) == 1 and tokens[0].startswith("Program_"):
            program_drum[i] = int(tokens[0] == "Program_-1")
    slot = torch.tensor([m[0] for m in meters])
    ts_slot = torch.where(slot >= 0, slot, num_ts)
    position = torch.tensor([m[1] for m in meters])
    fits = torch.tensor([m[2] for m in meters])
    # allowed for row slot a (num_ts: any) x current bar slot b (num_ts: unknown, no position limit)
    rows = torch.arange(num_ts + 1)[:, None]
    allowed_ts = (ts_slot[None, :] == num_ts) | (ts_slot[None, :] == rows) | (rows == num_ts)
    limits = torch.tensor([limit_of[t] for t in timesigs] + [NO_POSITION_LIMIT])
    inside = position[None, :] < limits[:, None]
    meter = (allowed_ts[:, None, :] & inside[None, :, :] & fits[None, None, :]).reshape((num_ts + 1) ** 2, num_v)
    return {"tempo": tempo, "program_drum": program_drum, "position": position, "is_timesig": slot >= 0,
            "ts_slot": ts_slot, "meter": meter,
            "loop_starts": torch.tensor([tokens.count("Loop_Start") for tokens in id_tokens]),
            "loop_ends": torch.tensor([tokens.count("Loop_End") for tokens in id_tokens])}


def build_tables(lang: Language) -> GrammarTables:
    """Lookup tables of a language (CPU tensors); see :func:`grammar_tables` for the cached version."""
    g = lang.grammar()
    id_tokens = lang.id_tokens()
    id_families = [[lang.family(t) for t in tokens] for tokens in id_tokens]
    families = sorted(set(g) | {f for fams in id_families for f in fams})
    index = {f: i for i, f in enumerate(families)}
    num_f = len(families)
    single_id: dict[str, int] = {}
    for i, tokens in enumerate(id_tokens):  # the base id first: BPE may spell a base token again ("▁" + it)
        if len(tokens) == 1:
            single_id.setdefault(tokens[0], i)
    content_families = {f for f in families if f not in lang.non_content and not f.startswith("AC")}
    closable = content_families - lang.markers  # closing never writes optional markup
    follow = _follow_table(g, families, id_families)
    content = torch.tensor([all(f in content_families for f in fams) for fams in id_families])
    plain_dist = _closing_distances(g, families, closable)
    dist = torch.tensor(plain_dist + _note_distances(g, families, closable, plain_dist))
    last_family = torch.tensor([index[fams[-1]] for fams in id_families])
    is_bar = torch.tensor([tokens == (BAR,) for tokens in id_tokens])
    single = torch.tensor([len(tokens) == 1 for tokens in id_tokens])
    no_marker = torch.tensor([not any(f in lang.markers for f in fams) for fams in id_families])
    steps = follow & (content & single & ~is_bar & no_marker)[None, :]
    note_ids = torch.tensor([len(f) == 1 and f[0] in NOTE_FAMILIES for f in id_families])
    closing = steps & (dist[last_family][None, :] < dist[:num_f, None])
    after = torch.where(note_ids, dist[last_family], dist[num_f + last_family])  # a note id meets the need
    closing_note = steps & (after[None, :] < dist[num_f:, None])
    has_pitch = torch.tensor(["Pitch" in fams for fams in id_families])
    has_drum_pitch = torch.tensor(["PitchDrum" in fams for fams in id_families])
    kinds = torch.stack([~has_drum_pitch, ~has_pitch])  # pitched track, drum track
    music = (follow & content[None, :])[None] & kinds[:, None, :]
    closing_all = torch.stack([closing, closing_note])[:, None] & kinds[None, :, None, :]
    finite = dist[dist < UNREACHABLE]
    values = _value_tables(lang, id_tokens, single_id)
    return GrammarTables(
        families=families, follow=follow, last_family=last_family,
        bars=torch.tensor([sum(t == BAR for t in tokens) for tokens in id_tokens]),
        notes=torch.tensor([sum(f in NOTE_FAMILIES for f in fams) for fams in id_families]),
        content=content, is_bar=is_bar, has_pitch=has_pitch, has_drum_pitch=has_drum_pitch,
        dist=dist, music=music.reshape(2 * num_f, len(id_tokens)),
        closing=closing_all.reshape(4 * num_f, len(id_tokens)),
        bar_cost=1 + int(dist[index["Bar"]]), max_dist=int(finite.max()), margin=int(finite.max()) + 1,
        has_loops=bool(values["loop_ends"].any()), single_id=single_id, **values,
    )


def grammar_tables(tok: Language | object, device: torch.device | str = "cpu") -> GrammarTables:
    """:func:`build_tables` of a language (or of a tokenizer's, :func:`language_of`), cached per device.

    :param tok: a :class:`~mmmlib.generation.language.Language` or a tokenizer of either dialect.
    :param device: where the tensors go.
    :return: the tables.
    """
    lang = language_of(tok)
    cache = lang.cache.setdefault("grammar_tables", {})
    key = str(torch.device(device))
    if key not in cache:
        cpu = cache.get("cpu") or build_tables(lang)
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
        self.open_loops = zeros.clone()  # Loop_Start without their Loop_End in the segment
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
        if t.has_loops:
            opened = self.open_loops + counting * (t.loop_starts[token] - t.loop_ends[token])
            self.open_loops = opened.clamp(min=0) * keep
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
        # no more Bar_None than the segment's bars (an id may hold several); a Loop_End closes an open loop
        extra = extra & (t.bars[None, :] <= (target - self.bars).clamp(min=0)[:, None])
        if t.has_loops:
            extra = extra & (t.loop_ends[None, :] <= self.open_loops[:, None])
        music = t.music[row] & extra
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
