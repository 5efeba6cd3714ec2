"""Concurrent calls to the fast local engine decode in one batch (`DecodeEngine`'s shared loop).

The scheduling tests drive a tiny Llama with random weights (a real transformers model built
from a config, nothing downloaded), because they need many decode steps in milliseconds: calls
that join a running batch must get exactly the tokens and log-probabilities they get alone
(fp32 and bf16 with int4 kernels: decoding is batch-invariant), a failing call must
not take the others down, and `co_batch=False` must run calls one after another. The embedded
model repeats the check with a grammar, log-probabilities and a forced line in
tests/backends/test_local.py (`test_calls_sharing_the_batch_get_what_they_get_alone`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from support.cobatch import GatedTuner, run_together

from judgekit.backends.local_engine import (
    Call,
    DecodeEngine,
    DecodeParams,
    PrefixRuns,
    Row,
    RowOutput,
    Run,
    RunningBatch,
    cascade_attention,
    row_seed,
)

# -- pieces, no model ---------------------------------------------------------------------------


def test_cascade_attention_reads_each_calls_own_prefix() -> None:
    """Three calls share one decode batch: two read their own prefixes (of different lengths),
    one holds its whole prompt; every row equals attention over its full sequence."""

    class Layer:
        layer_idx = 0

    g = torch.Generator().manual_seed(1)
    heads, kv_heads, dim, own = 4, 2, 8, 6
    runs = [(30, 2), (None, 1), (11, 3)]  # (prefix length or None, rows)
    rows = sum(n for _, n in runs)
    q = torch.randn(rows, heads, 1, dim, generator=g)
    own_k, own_v = (torch.randn(rows, kv_heads, own, dim, generator=g) for _ in range(2))
    keep = torch.ones(rows, 1, 1, own, dtype=torch.bool)
    keep[3, ..., :2] = False  # a left-padded row
    prefixes = [None if n is None else [tuple(torch.randn(1, kv_heads, n, dim, generator=g)
                                              for _ in range(2))] for n, _ in runs]
    starts = [int((~keep[r, 0, 0]).sum()) for r in range(rows)]
    out, _ = cascade_attention(Layer(), q, own_k, own_v, None, scaling=0.3,
                               jk_prefix=PrefixRuns(tuple(
                                   (p, n) for p, (_, n) in zip(prefixes, runs, strict=True))),
                               jk_starts=starts)
    first = 0
    for prefix, (_, n) in zip(prefixes, runs, strict=True):
        for r in range(first, first + n):
            k, v, m = own_k[r:r + 1], own_v[r:r + 1], keep[r:r + 1]
            if prefix is not None:
                (pk, pv), = prefix
                k, v = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
                m = torch.cat([torch.ones(1, 1, 1, pk.shape[2], dtype=torch.bool), m], -1)
            ref = torch.nn.functional.scaled_dot_product_attention(
                q[r:r + 1], k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=m,
                scale=0.3)
            assert torch.allclose(out[r:r + 1], ref.transpose(1, 2), atol=1e-5), r
        first += n


def test_a_rows_attention_is_the_same_in_any_batch() -> None:
    """Batch invariance of decode attention (`row_attention`): one call's row, with its own
    prefix and left-padded own keys, gives the same bits alone and beside 1 to 12 rows of other
    calls (other prefixes, other padding), at every position. The prefix and own parts are merged by their
    log-sum-exps: merged over the whole batch at once, a row's values fell in the SIMD body or
    the scalar tail of torch's logaddexp depending on the rows beside it (fails so on this CPU)."""
    from judgekit.backends.local_engine import row_attention

    g = torch.Generator().manual_seed(4)
    heads, kv_heads, dim, width = 9, 3, 64, 40

    def call(own: int) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        prefix = [tuple(torch.randn(1, kv_heads, 50 + own, dim, generator=g) for _ in range(2))]
        keys, values = (torch.randn(1, kv_heads, width, dim, generator=g) for _ in range(2))
        return prefix, torch.randn(1, heads, 1, dim, generator=g), keys, values

    for trial in range(64):  # a last-bit difference shows in ~1% of merged values
        mine = call(7)
        alone = row_attention(mine[1], mine[2], mine[3], [width - 7],
                              PrefixRuns(((mine[0], 1),)), 0, 0.125)
        others = 1 + trial % 8
        rest = [call(int(n)) for n in torch.randint(1, width, (others,), generator=g)]
        place = trial % (others + 1)  # every position of every batch size
        calls = [*rest[:place], mine, *rest[place:]]
        starts = [width - 7 if c is mine else 1 + place for c in calls]
        out = row_attention(torch.cat([c[1] for c in calls]), torch.cat([c[2] for c in calls]),
                            torch.cat([c[3] for c in calls]), starts,
                            PrefixRuns(tuple((c[0], 1) for c in calls)), 0, 0.125)
        assert torch.equal(out[place:place + 1], alone), (trial, others, place)


def test_decode_attention_is_the_same_on_one_thread_and_on_two() -> None:
    """The decode thread count is tuned while a run goes on, so a row's attention must not
    depend on it. torch's fp32 flash kernel does for fewer than 4 queries a head on this CPU
    (the check below records it: with no such CPU, no adversary); `row_attention` pads them."""
    from judgekit.backends.local_engine import ATTENTION_MIN_QUERIES, row_attention

    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    g = torch.Generator().manual_seed(2)
    rows, heads, kv_heads, dim = 3, 6, 3, 64  # the embedded model's 3 queries a kv head
    q = torch.randn(rows, heads, 1, dim, generator=g)
    keys, values = (torch.randn(rows, kv_heads, 300, dim, generator=g) for _ in range(2))
    prefix = [tuple(torch.randn(1, kv_heads, 500, dim, generator=g) for _ in range(2))]
    starts = [0, 40, 7]
    raw = q.reshape(rows, kv_heads, heads // kv_heads, dim)[:1]
    assert raw.shape[2] < ATTENTION_MIN_QUERIES
    saved = torch.get_num_threads()
    outs, flashes = [], []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(row_attention(q, keys, values, starts, prefix, 0, 0.125))
            flashes.append(torch.cat([flash(raw, k, v, 0.0, False, scale=0.125)[0] for k, v in
                                      [*prefix, *((keys[r:r + 1, :, s:], values[r:r + 1, :, s:])
                                                  for r, s in enumerate(starts))]]))
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(outs[0], outs[1])
    if torch.equal(flashes[0], flashes[1]):
        warnings.warn("the flash kernel is thread-invariant on this CPU", stacklevel=1)


def _layers(tokens: int, start: float, layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A batch-1 KV whose token t holds the value start + t (keys) and -(start + t) (values)."""
    ramp = (start + torch.arange(tokens, dtype=torch.float32)).reshape(1, 1, tokens, 1)
    return [(ramp.expand(1, 1, tokens, 2).clone(), -ramp.expand(1, 1, tokens, 2).clone())
            for _ in range(layers)]


def _run(rows: int, max_new: int = 8) -> Run:
    call = Call([[0]], [rows], DecodeParams(max_new_tokens=max_new))
    return Run(call, None, [Row(RowOutput(), position=0) for _ in range(rows)])


def test_a_joining_call_cuts_the_columns_no_row_reads_any_more() -> None:
    batch = RunningBatch()
    a, b = _run(2), _run(1)
    batch.add(a, [_layers(5, 100.0)], own=[5], owner=[0, 0], logits=torch.zeros(2, 3))
    batch.add(b, [_layers(2, 200.0)], own=[2], owner=[0], logits=torch.ones(1, 3))
    assert batch.length == 5 and batch.padded and len(batch) == 3
    assert batch.valid[:, :5].tolist()[2] == [False, False, False, True, True]
    assert batch.starts == [0, 0, 3]  # where each row's own keys begin
    assert batch.logits is not None and batch.logits[:, 0].tolist() == [0.0, 0.0, 1.0]
    for layer in batch.cache.layers:  # a decode step appends one token per row
        layer.update(torch.full((3, 1, 1, 2), 7.0), torch.full((3, 1, 1, 2), -7.0))
    batch.length += 1
    ended = batch.drop([0, 1])  # call a's rows finish
    assert ended == [a.call] and len(batch) == 1 and [r.call for r in batch.runs] == [b.call]
    batch.logits = torch.ones(1, 3)
    c = _run(1)
    batch.add(c, [_layers(1, 300.0)], own=[1], owner=[0], logits=torch.full((1, 3), 2.0))
    # b's three padded columns are gone: width is b's 2 prompt tokens + 1 token, not 6
    assert batch.length == 3 and len(batch) == 2
    keys = batch.cache.layers[0].keys[:, 0, :, 0]
    assert keys[0].tolist() == [200.0, 201.0, 7.0]
    assert keys[1, 2].item() == 300.0
    assert batch.valid[:, :3].tolist() == [[True, True, True], [False, False, True]]
    assert batch.starts == [0, 2]
    assert batch.cache.layers[0].kbuf.shape[2] >= 3 + 8  # room for max_new_tokens more


def test_row_seeds_depend_on_the_call_and_the_row_only() -> None:
    seeds = {row_seed(7, p, s) for p in range(3) for s in range(4)}
    assert len(seeds) == 12 and row_seed(7, 1, 2) == row_seed(7, 1, 2) != row_seed(8, 1, 2)
    assert all(0 <= s < 2**63 for s in seeds)


# -- a tiny real model --------------------------------------------------------------------------

VOCAB = 96


def _on_a_4bit_grid(weight: torch.Tensor, seed: int) -> torch.Tensor:
    """Random weights of the form mn + q * step per group of 32 inputs (GGUF Q4_1's)."""
    g = torch.Generator().manual_seed(seed)
    out, groups = weight.shape[0], weight.shape[1] // 32
    q = torch.randint(0, 16, (out, groups, 32), generator=g).float()
    step = torch.rand((out, groups, 1), generator=g) * 0.02 + 0.005
    mn = -8 * step
    return (mn + q * step).reshape(weight.shape)


def _bf16_cpu_on_avx2_kernels() -> bool:
    """A CPU with native bf16 whose ATen kernels were forced below AVX-512
    (ATEN_CPU_CAPABILITY=avx2), the one setting where torch's bf16 SDPA prefill raises; seen on a
    Xeon with AMX under torch 2.11. On a CPU without native bf16 (this CI machine) bf16 is
    emulated and the bf16 tests run."""
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        flags = next((line for line in fh if line.startswith("flags")), "").split()
    native = bool({"avx512_bf16", "amx_bf16"} & set(flags))
    return native and not torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512")


@pytest.fixture(scope="module", params=["fp32", "bf16-int4", "fp32-forward"])
def tiny_model(request: pytest.FixtureRequest) -> tuple[Any, bool]:
    """A tiny Llama as the engine prepares the embedded one, and whether the engine decodes
    with its written-out step: fp32 dense (this CPU's default), bf16 with int4 kernels (a CPU
    with native bf16), and fp32 through transformers' forward (a model the step does not know)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from judgekit.backends.local_engine import optimize_model

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, attn_implementation="sdpa")
    model = LlamaForCausalLM(config).eval()
    int4 = request.param == "bf16-int4"
    if int4 and _bf16_cpu_on_avx2_kernels():
        pytest.skip("bf16 on a CPU with AVX512-BF16/AMX forced onto ATen's AVX2 kernels: torch's "
                    "bf16 flash attention raises there (pack_vnni2), and the engine never picks "
                    "bf16 in that setting (cpu_has_native_bf16)")
    if int4:
        with torch.no_grad():
            for i, layer in enumerate(model.model.modules()):
                if type(layer) is torch.nn.Linear:
                    layer.weight.copy_(_on_a_4bit_grid(layer.weight, i))
    counts = optimize_model(model, torch.bfloat16 if int4 else torch.float32, int4=int4)
    assert counts["int4"] == (14 if int4 else 0)
    return model, request.param != "fp32-forward"


def _engine(tiny: tuple[Any, bool], **kwargs: Any) -> DecodeEngine:
    model, decode_step = tiny
    engine = DecodeEngine(model, None, eos_ids=set(), prefix_cache_bytes=64 << 20,
                          threads=GatedTuner(), decode_step=decode_step, **kwargs)
    assert engine.cascade  # the tiny model runs the same attention as the embedded one
    assert (engine.step is not None) == decode_step
    return engine


def _prompt(seed: int, shared: int = 48, own: int = 9) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    head = torch.randint(0, VOCAB - 1, (shared,), generator=torch.Generator().manual_seed(0))
    return [*head.tolist(), *torch.randint(0, VOCAB - 1, (own,), generator=g).tolist()]


CALLS: list[tuple[list[list[int]], list[int], DecodeParams]] = [
    ([_prompt(1), _prompt(2)], [3, 2], DecodeParams(max_new_tokens=40, temperature=0.9,
                                                     seed=5)),
    ([_prompt(3)], [1], DecodeParams(max_new_tokens=25, logprobs=True, top_logprobs=2)),
    ([_prompt(4, own=30)], [4], DecodeParams(max_new_tokens=12, temperature=1.0, top_p=0.8,
                                              seed=11)),
    ([_prompt(5, shared=3)], [2], DecodeParams(max_new_tokens=30)),
]


def _outputs(rows: list[list[RowOutput]]) -> list[list[tuple[list[int], bool, list[Any]]]]:
    """Tokens and log-probabilities, exactly (decoding is batch-invariant, see `linear_rows`)."""
    return [[(r.ids, r.stopped, r.logprobs) for r in prompt_rows] for prompt_rows in rows]


@torch.inference_mode()
def test_calls_that_join_a_running_batch_get_the_tokens_they_get_alone(tiny_model: tuple[Any, bool]) -> None:
    engine = _engine(tiny_model)
    alone = [_outputs(engine.generate(*call)) for call in CALLS]
    assert engine.stats.peak_rows == 5  # one call at a time: its own rows
    together = run_together(engine, [lambda c=call: engine.generate(*c) for call in CALLS])
    assert [_outputs(r) for r in together] == alone
    assert engine.stats.peak_rows == 12  # all four calls' rows in one step
    assert [len(call[0][0][0]) for call in alone] == [40, 25, 12, 30]  # rows end apart


@torch.inference_mode()
def test_a_lone_row_gets_its_tokens_when_others_join(tiny_model: tuple[Any, bool]) -> None:
    """A one-row call reads its prompt's prefix apart (`row_attention`) whether or not other
    calls join, so its tokens are the ones it gets alone, and no later row is padded to its
    whole prompt's length."""
    engine = _engine(tiny_model)
    order = [CALLS[1], CALLS[0], CALLS[2]]
    alone = [_outputs(engine.generate(*call)) for call in order]
    together = run_together(engine, [lambda c=call: engine.generate(*c) for call in order])
    assert [_outputs(r) for r in together] == alone
    assert engine.stats.peak_rows == 1 + 5 + 4


@torch.inference_mode()
def test_without_co_batching_calls_run_one_after_another(tiny_model: tuple[Any, bool]) -> None:
    engine = _engine(tiny_model, co_batch=False)
    together = run_together(engine, [lambda c=call: engine.generate(*c) for call in CALLS])
    assert all(isinstance(r, list) for r in together)
    assert engine.stats.peak_rows == 5


@torch.inference_mode()
def test_a_call_that_fails_to_prefill_fails_alone(tiny_model: tuple[Any, bool]) -> None:
    engine = _engine(tiny_model)
    bad = [[1, 2, VOCAB + 50]]  # no such token: the embedding lookup fails
    calls: list[Callable[[], Any]] = [
        lambda: engine.generate(*CALLS[0]),
        lambda: engine.generate(bad, [2], DecodeParams(max_new_tokens=5)),
        lambda: engine.generate(*CALLS[1]),
    ]
    first, failed, last = run_together(engine, calls)
    assert isinstance(failed, IndexError)
    assert isinstance(first, list) and isinstance(last, list)
    assert len(first[0]) == 3 and len(last[0][0].ids) == 25


@torch.inference_mode()
def test_a_failed_step_fails_the_calls_in_the_batch_and_the_engine_recovers(
        tiny_model: tuple[Any, bool]) -> None:
    """A decode step that raises (say, out of memory) fails the calls whose rows it ran, in
    their own threads; the engine then serves new calls."""
    engine = _engine(tiny_model)
    step = engine.step

    def broken(*args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError("out of memory (injected)")

    engine.step = broken  # type: ignore[assignment]
    results = run_together(engine, [lambda c=call: engine.generate(*c) for call in CALLS[:3]])
    assert all(isinstance(r, RuntimeError) and "injected" in str(r) for r in results)
    assert len(engine.batch) == 0 and engine.queued == 0
    engine.step = step
    assert len(engine.generate(*CALLS[1])[0][0].ids) == 25
