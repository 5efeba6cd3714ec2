"""The engine: prefix cache lookups, prefill in fixed chunks, and one decode loop that
concurrent calls share (`DecodeEngine`)."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch

from judgekit.backends.local_engine.attention import (
    ATTENTION_MIN_QUERIES,
    CASCADE_MIN_PREFIX,
    install_cascade_attention,
)
from judgekit.backends.local_engine.batch import (
    ROW_BUDGET,
    Call,
    DecodeParams,
    EngineStats,
    Row,
    RowOutput,
    Run,
    RunningBatch,
    row_seed,
)
from judgekit.backends.local_engine.caches import (
    KV,
    CacheEntry,
    PrefixCache,
    cache_kv,
    common_prefix,
    kv_slice,
    make_cache,
    release_free_memory,
)
from judgekit.backends.local_engine.grammar import attach_grammar, pick
from judgekit.backends.local_engine.internals import cache_keyword
from judgekit.backends.local_engine.matmul import prefill_phase
from judgekit.backends.local_engine.step import LlamaDecodeStep
from judgekit.backends.local_engine.tuning import (
    PREFILL_PROBE_PERIOD,
    PREFILL_TUNE_TOKENS,
    ThreadTuner,
)

PREFILL_CHUNK = 256
"""Prefill runs in chunks that start at multiples of this position (see DecodeEngine._prefill).
Every chunk reads all the bf16 weights (~210 MB for the embedded model), which a decode step in
between evicts from the cache: on LLMBar prompts during a judging run, 256-token chunks
prefilled 950 tokens/s against 670 for 128 (measured). Larger chunks recompute more after a
cache hit (up to a chunk, see `_lookup`): the ~810-token shared template keeps 768 cached
tokens at 256, as at 128, but only 512 at 512."""

class DecodeEngine:
    """Drives a loaded causal LM: prefix cache, suffix prefill, and one decode loop that
    concurrent calls share.

    Calls from several threads (the judge keeps several items in flight) decode as one batch:
    between two steps, waiting calls are prefilled and join the running batch (up to
    `row_budget` rows), and each call returns as soon as its own rows have finished. Decoding
    a small model is bound by reading the weights once per step, so 16 rows cost about 1.6x the
    time of 4 (measured here). No thread of our own runs the loop: the first caller drives it
    until its own call is done, then hands it to a waiting caller; errors surface in the
    callers' threads and nothing outlives the calls.

    With `co_batch=False` a call joins only an empty batch, so calls run one after another.
    Either way a call's tokens are the ones it gets alone: decoding is batch-invariant
    (`linear_rows`) and each row samples from its own generator (`row_seed`)."""

    def __init__(self, model: Any, tokenizer: Any, eos_ids: set[int], *,
                 prefix_cache_bytes: int, prefix_cache: bool = True,
                 threads: ThreadTuner | None = None, decode_step: bool = True,
                 co_batch: bool = True, row_budget: int = ROW_BUDGET,
                 prefill_threads: ThreadTuner | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.use_prefix_cache = prefix_cache
        self.cache = PrefixCache(prefix_cache_bytes)
        self.threads = threads or ThreadTuner()
        self.prefill_threads = prefill_threads or ThreadTuner(
            self.threads.fixed, base_period=PREFILL_PROBE_PERIOD)
        """The thread count of prefill chunks, tuned apart from decoding's (see `ThreadTuner`)."""
        self._cache_kw = cache_keyword(model)
        self._dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        self.stats = EngineStats()
        self.cascade = install_cascade_attention(model)
        self.step = LlamaDecodeStep.for_model(model) if decode_step else None
        """The written-out decode step (`LlamaDecodeStep`), or None: transformers' forward."""
        self.co_batch = co_batch
        self.row_budget = row_budget
        self.batch = RunningBatch()
        self._turn = threading.Condition()
        self._waiting: deque[Call] = deque()
        self._admitting: list[Call] = []
        self._driving = False

    # -- forward ------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, cache: Any, positions: torch.Tensor,
                 mask: torch.Tensor | None, **extra: Any) -> torch.Tensor:
        out = self.model(input_ids=ids, position_ids=positions, attention_mask=mask,
                         use_cache=True, logits_to_keep=1, **{self._cache_kw: cache}, **extra)
        return out.logits[:, -1, :].float()

    def _prefill(self, ids: Sequence[int], start: int, kv: KV | None,
                 last_alone: bool) -> tuple[Any, torch.Tensor | None]:
        """Run ids[start:] on top of `kv` (the KV of ids[:start], batch 1): the new cache, and
        the logits after the last token when `last_alone`.

        Prefill runs in chunks at fixed absolute positions (multiples of PREFILL_CHUNK): a
        matmul or attention over M rows gives bitwise different rows for different M (BLAS
        libraries pick kernels and blocking by shape; measured), so a token must be computed
        in the same piece whether or not its prefix came from the cache. Reuse is therefore
        cut back to a chunk boundary (`_lookup`); that recomputes fewer than PREFILL_CHUNK
        tokens, and keeps the cached path exactly the uncached one. The last token of a prompt,
        and a piece of fewer than `ATTENTION_MIN_QUERIES` tokens (whose attention rounded
        differently by thread count in fp32), run one token at a time with a decode step's
        arithmetic (`linear_rows`, `row_attention`)."""
        if kv is None:
            kv = self._empty_kv()
        cache = make_cache(kv, len(ids))
        end = len(ids) - 1 if last_alone else len(ids)
        tokens = torch.tensor([list(ids)], dtype=torch.long)
        positions = torch.arange(len(ids)).unsqueeze(0)
        logits = None
        tuner = self.prefill_threads
        pos = start
        while pos < end:
            stop = min((pos // PREFILL_CHUNK + 1) * PREFILL_CHUNK, end)
            measured = stop - pos >= PREFILL_TUNE_TOKENS
            threads = tuner.before_step() if measured else tuner.settle()
            t = time.perf_counter()
            if stop - pos >= ATTENTION_MIN_QUERIES:
                with prefill_phase():
                    self._forward(tokens[:, pos:stop], cache, positions[:, pos:stop], None)
            else:
                for one in range(pos, stop):
                    self._forward(tokens[:, one:one + 1], cache, positions[:, one:one + 1], None)
            if measured:
                tuner.after_step(threads, (time.perf_counter() - t) / (stop - pos))
            pos = stop
        if last_alone:
            tuner.settle()
            logits = self._forward(tokens[:, end:], cache, positions[:, end:], None)
        self.stats.reused_tokens += start
        self.stats.prefilled_tokens += len(ids) - start
        return cache, logits

    def _empty_kv(self) -> KV:
        cfg = self.model.config.get_text_config(decoder=True)
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        empty = torch.empty((1, heads, 0, head_dim), dtype=self._dtype)
        return [(empty, empty) for _ in range(cfg.num_hidden_layers)]

    def _lookup(self, ids: Sequence[int], limit: int) -> tuple[int, KV | None]:
        """How much of `ids` the cache can give (at most `limit` tokens), as views: the whole
        prompt but its last token when the same prompt was seen, else the shared tokens that
        were computed in whole chunks (see `_prefill`)."""
        if not self.use_prefix_cache:
            return 0, None
        n, entry = self.cache.longest(ids)
        if entry is None:
            return 0, None
        if entry.prompt and n == len(ids) == entry.tokens:
            reuse = len(ids) - 1
        else:
            reuse = min(n // PREFILL_CHUNK * PREFILL_CHUNK, entry.aligned)
        reuse = min(reuse, limit)
        if reuse <= 0:
            return 0, None
        self.cache.hits += 1
        return reuse, kv_slice(entry.kv, reuse)

    def _shared_kv(self, ids: list[int]) -> tuple[int, KV | None]:
        """The KV of the whole chunks of `ids` (the prefix a call's prompts share), cached or
        computed and stored: (its length, its KV)."""
        aligned = len(ids) // PREFILL_CHUNK * PREFILL_CHUNK
        if aligned == 0:
            return 0, None
        ids = ids[:aligned]
        n, kv = self._lookup(ids, aligned)
        if n == aligned and kv is not None:
            self.stats.reused_tokens += n
            return n, kv
        cache, _ = self._prefill(ids, n, kv, last_alone=False)
        snap = cache_kv(cache)
        self.cache.put(ids, CacheEntry(snap, aligned, prompt=False))
        return aligned, snap

    def _prompt_kv(self, ids: list[int], base_len: int,
                   base: KV | None) -> tuple[KV, torch.Tensor]:
        """KV of the whole prompt (batch 1) and the logits after its last token; the cache may
        hold more of it than the call's shared prefix (the same prompt seen before)."""
        n, kv = self._lookup(ids, len(ids) - 1)
        if n <= base_len:
            n, kv = base_len, base
        cache, logits = self._prefill(ids, n, kv, last_alone=True)
        assert logits is not None
        snap = cache_kv(cache)
        if self.use_prefix_cache:
            aligned = (len(ids) - 1) // PREFILL_CHUNK * PREFILL_CHUNK
            self.cache.put(ids, CacheEntry(snap, aligned, prompt=True))
        return snap, logits

    # -- calls and the shared loop --------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Calls waiting to join the decode batch."""
        with self._turn:
            return len(self._waiting)

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], rows: list[int],
                 params: DecodeParams) -> list[list[RowOutput]]:
        """Decode rows[i] samples of prompts[i]. Blocks until they are done; concurrent calls
        share the decode batch (see the class docstring)."""
        call = Call(prompts, rows, params)
        with self._turn:
            self._waiting.append(call)
            while self._driving and not call.done:
                self._turn.wait()
            drive = not call.done
            if drive:
                self._driving = True
        if drive:
            try:
                self._drive(call)
            finally:
                with self._turn:
                    self._driving = False
                    self._turn.notify_all()
        if call.error is not None:
            raise call.error
        return call.outputs

    def _drive(self, own: Call) -> None:
        """Run the loop (admit waiting calls, one decode step) until `own` is done."""
        caller = torch.get_num_threads()
        self.threads.start()
        self.prefill_threads.start(candidate=caller)
        try:
            while not own.done:
                self._admit()
                if len(self.batch):
                    t = time.perf_counter()
                    self._step()
                    self.stats.decode_s += time.perf_counter() - t
        except BaseException as exc:  # every call in flight shares the failed step
            for call in [run.call for run in self.batch.runs] + self._admitting:
                self._finish(call, exc)
            self._admitting = []
            self.batch = RunningBatch()
            if not own.done:
                with self._turn:
                    if own in self._waiting:
                        self._waiting.remove(own)
                self._finish(own, exc)
        finally:
            self.prefill_threads.finish()  # back to decoding's count, then to the caller's
            self.threads.finish()
            if not len(self.batch):
                release_free_memory()

    def _finish(self, call: Call, error: BaseException | None = None) -> None:
        with self._turn:
            call.error = error
            call.done = True
            self._turn.notify_all()

    def _admit(self) -> None:
        """Prefill the waiting calls that fit and add their rows to the batch."""
        with self._turn:
            room = self.row_budget - len(self.batch)
            while self._waiting:
                call = self._waiting[0]
                if (len(self.batch) or self._admitting) and (
                        not self.co_batch or call.n_rows > room):
                    break
                self._admitting.append(self._waiting.popleft())
                room -= call.n_rows
        if not self._admitting:
            return
        t0 = time.perf_counter()
        while self._admitting:
            call = self._admitting[0]
            if call.n_rows == 0:
                call.outputs = [[] for _ in call.rows]
                self._admitting.pop(0)
                self._finish(call)
                continue
            try:
                kvs, first_logits, shared = self._prefill_call(call.prompts)
            except Exception as exc:  # this call's prompts failed; the batch is untouched
                self._admitting.pop(0)
                self._finish(call, exc)
                continue
            self._join(call, kvs, first_logits, shared)
            self._admitting.pop(0)
        release_free_memory()
        self.stats.prefill_s += time.perf_counter() - t0

    def _prefill_call(self, prompts: list[list[int]]) -> tuple[list[KV], list[torch.Tensor], int]:
        """Each prompt's KV (batch 1) and the logits after it, and the prefix the prompts
        share (for one prompt: all but its last token). The shared prefix is prefilled once
        when several prompts share it, whether or not it was cached."""
        shared = min(len(p) for p in prompts) - 1
        for ids in prompts[1:]:
            shared = min(shared, common_prefix(prompts[0], ids))
        base_len, base = 0, None
        if len(prompts) > 1 and self.use_prefix_cache:
            base_len, base = self._shared_kv(prompts[0][:shared])
        kvs: list[KV] = []
        first_logits: list[torch.Tensor] = []
        for ids in prompts:
            kv, logits = self._prompt_kv(ids, base_len, base)
            kvs.append(kv)
            first_logits.append(logits)
        self.stats.prompt_tokens += sum(len(p) for p in prompts)
        return kvs, first_logits, shared

    def _join(self, call: Call, kvs: list[KV], first_logits: list[torch.Tensor],
              shared: int) -> None:
        """Add `call`'s rows to the batch. Its rows read the prefix its prompts share once per
        step (`row_attention`) and hold only the rest. The split depends on the call alone, never
        on whether other calls share the batch (a lone row used to hold its whole prompt until
        another call joined, which changed its attention's rounding mid-call)."""
        params = call.params
        owner = [i for i, n in enumerate(call.rows) for _ in range(n)]
        start = shared if self.cascade and shared >= CASCADE_MIN_PREFIX else 0
        call.outputs = [[RowOutput() for _ in range(n)] for n in call.rows]
        rows: list[Row] = []
        for i, n in enumerate(call.rows):
            for sample in range(n):
                row = Row(call.outputs[i][sample], position=len(call.prompts[i]))
                if not params.greedy:
                    row.generator = torch.Generator()
                    row.generator.manual_seed(
                        row_seed(params.seed, i, sample) if params.seed is not None
                        else int.from_bytes(os.urandom(8), "little") >> 1)
                rows.append(row)
        run = Run(call, kv_slice(kvs[0], start) if start else None, rows)
        if params.grammar is not None:
            attach_grammar(run, params.grammar)
        logits = torch.cat([first_logits[i] for i in owner], dim=0)
        self.batch.add(run, kvs, [len(p) - start for p in call.prompts], owner, logits)

    def _step(self) -> None:
        """Every row picks a token; finished rows leave (their calls end when none is left);
        the rest run one forward pass together."""
        batch = self.batch
        assert batch.logits is not None
        finished: list[int] = []
        first = 0
        for run in batch.runs:
            n = len(run.rows)
            finished += [first + j for j in pick(run, batch.logits[first:first + n],
                                                 self.eos_ids, self.tokenizer, self.stats)]
            first += n
        self.stats.decode_tokens += len(batch)
        self.stats.peak_rows = max(self.stats.peak_rows, len(batch))
        if finished:
            ended = batch.drop(finished)
            for call in ended:
                self._finish(call)
            if not len(batch):
                self.batch = RunningBatch()
                return
            release_free_memory()  # the index select freed a copy of every buffer
        rows = batch.rows
        batch.reserve_next()
        tokens = torch.tensor([[row.output.ids[-1]] for row in rows], dtype=torch.long)
        positions = torch.tensor([[row.position] for row in rows], dtype=torch.long)
        prefix = batch.prefix_arg()
        threads = self.threads.before_step()
        t = time.perf_counter()
        if self.step is not None:
            logits = self.step(tokens, batch.cache, positions, batch.starts, prefix)
        elif self.cascade:  # transformers' forward, attention by `row_attention`
            logits = self._forward(tokens, batch.cache, positions, None, jk_prefix=prefix,
                                   jk_starts=batch.starts)
        else:  # a model the engine's attention cannot drive: masked, not batch-invariant
            mask = batch.valid[:, None, None, :batch.length + 1] if batch.padded else None
            logits = self._forward(tokens, batch.cache, positions, mask)
        self.threads.after_step(threads, time.perf_counter() - t)
        batch.logits = logits
        batch.length += 1
        for row in rows:
            row.position += 1
        self.stats.decode_steps += 1
