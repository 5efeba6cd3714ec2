"""The rows being decoded: what a call asks for (`DecodeParams`) and gets (`RowOutput`), and the
running batch that several calls' rows share (`RunningBatch`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from judgekit.backends.local_engine.attention import PrefixRuns
from judgekit.backends.local_engine.caches import KV, make_layer
from judgekit.backends.local_engine.internals import cache_over


@dataclass
class DecodeParams:
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    grammar: Any = None  # an xgrammar CompiledGrammar
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class RowOutput:
    ids: list[int] = field(default_factory=list)
    logprobs: list[tuple[int, float, list[tuple[int, float]]]] = field(default_factory=list)
    stopped: bool = False


@dataclass
class EngineStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0
    decode_steps: int = 0
    decode_tokens: int = 0
    peak_rows: int = 0
    """The most rows one decode step ran (several calls' rows when they shared the batch)."""
    decode_s: float = 0.0
    prefill_s: float = 0.0
    grammar_s: float = 0.0
    """Time in the xgrammar matchers (mask fill, token accept), part of decode_s."""


KV_ROOM = 128
"""The batch's KV buffers hold this many positions beyond the filled ones, and grow by as many
when full: room for max_new_tokens (512 by default) up front would cost 16 rows ~190 MB more
here, where most samples end long before (~220 tokens on LLMBar)."""

ROW_BUDGET = 32
"""At most this many rows decode in one batch (calls wait beyond it): a step's cost grows with
its rows, and 16-24 rows already decode at ~5x the tokens/s of one row here."""


def row_seed(seed: int, prompt: int, sample: int) -> int:
    """The sampling seed of one row, from the call's seed and the row's place in the call: each
    row draws from its own generator, so its tokens never depend on which other calls happen to
    share its batch."""
    digest = hashlib.blake2b(f"{seed}:{prompt}:{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(eq=False)
class Call:
    """One `DecodeEngine.generate` call, from submission until its last row has finished."""

    prompts: list[list[int]]
    rows: list[int]
    params: DecodeParams
    outputs: list[list[RowOutput]] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False

    @property
    def n_rows(self) -> int:
        return sum(self.rows)


@dataclass(eq=False)
class Row:
    output: RowOutput
    position: int
    """The position of the token the next step writes (the prompt's length, then one more a
    step)."""
    matcher: Any = None
    generator: torch.Generator | None = None


@dataclass(eq=False)
class Run:
    """A call's rows in the running batch: consecutive, sharing one prefix (batch 1, read once
    per step by cascade attention) or, with `prefix` None, each holding its whole prompt."""

    call: Call
    prefix: KV | None
    rows: list[Row]
    bitmask: Any = None  # xgrammar's token bitmask for the rows, when the call has a grammar


class RunningBatch:
    """The rows being decoded, of one or more calls (`Run`s, in batch order).

    Every row's own KV (the part of its prompt after its run's prefix, then its tokens) lies in
    buffers left-padded to one write position, so a step appends every row's token at the same
    index; `valid` masks the padding. Finished rows leave between steps (`drop`, an index
    select, as within a single call); a call joins between steps (`add`), which copies the kept
    rows into new buffers and cuts off the columns no row uses any more, so a batch that new
    calls keep joining never grows wider than its longest-lived row."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.cache: Any = None
        self.length = 0
        """Filled positions of the buffers (the next step writes at this index)."""
        self.valid = torch.ones((0, 0), dtype=torch.bool)
        """[rows, capacity]: False on a row's left padding."""
        self.starts: list[int] = []
        """Per row, the column where its own keys begin (after its left padding)."""
        self.logits: torch.Tensor | None = None
        """[rows, vocab]: the logits every row picks its next token from."""
        self.padded = False

    def __len__(self) -> int:
        return sum(len(run.rows) for run in self.runs)

    @property
    def rows(self) -> list[Row]:
        return [row for run in self.runs for row in run.rows]

    def add(self, run: Run, kvs: list[KV], own: list[int], owner: list[int],
            logits: torch.Tensor) -> None:
        """Append `run`'s rows: row r holds the last own[owner[r]] tokens of kvs[owner[r]] (its
        prompt's KV, batch 1), and picks its first token from logits[r]."""
        kept = len(self)
        unused = 0  # leading columns no kept row reads any more
        if kept:
            unused = int(self.valid[:, :self.length].any(0).to(torch.int8).argmax())
        old_width = self.length - unused
        width = max([old_width, *own])
        remaining = [run.call.params.max_new_tokens]
        remaining += [r.call.params.max_new_tokens - len(row.output.ids)
                      for r in self.runs for row in r.rows]
        capacity = width + min(max(remaining), KV_ROOM)
        # Layer by layer, each old layer freed once copied: a whole second copy of the batch's
        # buffers (plus a staging copy) raised a 16-row run's peak RSS by ~1 GB (measured).
        old_layers: list[Any] = self.cache.layers if kept else []
        layers: list[Any] = []
        for layer in range(len(kvs[0])):
            ref = kvs[0][layer][0]
            keys = ref.new_zeros((kept + len(owner), ref.shape[1], capacity, ref.shape[3]))
            values = torch.zeros_like(keys)
            if kept:
                old = old_layers[layer]
                keys[:kept, :, width - old_width:width] = old.keys[:, :, unused:]
                values[:kept, :, width - old_width:width] = old.values[:, :, unused:]
                old_layers[layer] = None
            for r, i in enumerate(owner):
                k, v = kvs[i][layer]
                keys[kept + r, :, width - own[i]:width] = k[0, :, k.shape[2] - own[i]:]
                values[kept + r, :, width - own[i]:width] = v[0, :, v.shape[2] - own[i]:]
            layers.append(make_layer(keys, values, capacity, filled=width))
        self.cache = cache_over(layers)
        valid = torch.ones((kept + len(owner), capacity), dtype=torch.bool)
        if kept:
            valid[:kept, :width - old_width] = False
            valid[:kept, width - old_width:width] = self.valid[:, unused:self.length]
        for r, i in enumerate(owner):
            valid[kept + r, :width - own[i]] = False
        self.valid = valid
        self.starts = valid[:, :width].to(torch.int8).argmax(1).tolist()
        self.padded = not bool(valid[:, :width].all())
        self.length = width
        if kept:
            assert self.logits is not None  # the kept rows' logits of the last step
            logits = torch.cat([self.logits, logits])
        self.logits = logits
        self.runs.append(run)

    def reserve_next(self) -> None:
        """Room in every buffer for the next step's token: `KV_ROOM` more positions at a time."""
        capacity = self.valid.shape[1]
        if self.length < capacity:
            return
        capacity = self.length + KV_ROOM
        for layer in self.cache.layers:
            layer.reserve(capacity)
        self.valid = torch.cat([self.valid, self.valid.new_ones((len(self), KV_ROOM))], dim=1)

    def drop(self, positions: Sequence[int]) -> list[Call]:
        """Remove the rows at these batch positions; the calls left with no row."""
        gone = set(positions)
        index = torch.tensor([b for b in range(len(self)) if b not in gone], dtype=torch.long)
        ended: list[Call] = []
        first = 0
        for run in self.runs:
            n = len(run.rows)
            run.rows = [row for j, row in enumerate(run.rows) if first + j not in gone]
            first += n
            if not run.rows:
                ended.append(run.call)
        self.runs = [run for run in self.runs if run.rows]
        if self.runs:
            for layer in self.cache.layers:
                layer.batch_select_indices(index)
            self.valid = self.valid.index_select(0, index)
            self.starts = [s for b, s in enumerate(self.starts) if b not in gone]
        self.logits = None  # every row has picked from them
        return ended

    def prefix_arg(self) -> KV | PrefixRuns | None:
        """The `jk_prefix` of this step: one call's prefix itself, every run's when several
        calls share the batch, None when no row reads a prefix."""
        if all(run.prefix is None for run in self.runs):
            return None
        if len(self.runs) == 1:
            return self.runs[0].prefix
        return PrefixRuns(tuple((run.prefix, len(run.rows)) for run in self.runs))
