"""The local transformers backend: the fast engine's pieces (prefix cache, int4 re-pack, thread
tuner, sampling, streaming materialisation) and, on the real embedded model (`model` marker),
exactness against the uncached and `generate` paths and the context-length refusal."""

from __future__ import annotations

import json
import struct
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from support.cobatch import gate, run_together

from judgekit.backends.base import GenerationResult
from judgekit.backends.local import TransformersBackend, context_window
from judgekit.backends.local_engine import (
    DECODE_COLUMN_BLOCK,
    DECODE_ROW_BLOCK,
    MATMUL_ROW_BLOCK,
    PREFILL_CHUNK,
    CacheEntry,
    DecodeParams,
    Int4Linear,
    Int8GridLinear,
    PrefixCache,
    RowBlockedLinear,
    ThreadTuner,
    choose,
    common_prefix,
    int4_grid,
    int4_pays,
    int8_grid,
    kv_bytes,
    linear_rows,
    optimize_model,
    prefill_phase,
)
from judgekit.config import GenerationConfig
from judgekit.embedded import SafetensorsStreamWriter
from judgekit.errors import ContextLengthError
from judgekit.schema import Message

# -- pieces, no model ---------------------------------------------------------------------------


def _kv(tokens: int, layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.full((1, 1, tokens, 4), float(i)), torch.full((1, 1, tokens, 4), float(-i)))
            for i in range(layers)]


def test_prefix_cache_finds_the_longest_common_prefix_and_evicts_by_bytes() -> None:
    def entry(tokens: int) -> CacheEntry:
        return CacheEntry(_kv(tokens), aligned=0, prompt=True)

    cache = PrefixCache(max_bytes=kv_bytes(_kv(10)) * 2)
    cache.put([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], entry(10))
    cache.put([1, 2, 3, 9, 9], entry(5))
    n, found = cache.longest([1, 2, 3, 4, 5, 0])
    assert n == 5 and found is not None and found.tokens == 10
    assert cache.longest([7, 7])[0] == 0
    cache.put([5] * 10, entry(10))  # over budget: the least recently used entry goes
    assert len(cache) == 2 and cache.longest([1, 2, 3, 9])[0] == 3
    assert cache.bytes <= cache.max_bytes
    assert common_prefix([1, 2, 3], (1, 2, 4)) == 2 and common_prefix([], [1]) == 0


def _q4_weight(out_f: int, in_f: int, levels: int = 15, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, levels + 1, (out_f, in_f // 32, 32), generator=g).float()
    q[..., 0], q[..., 1] = 0, levels  # every group spans its levels, as GGUF Q4 blocks do
    step = torch.rand((out_f, in_f // 32, 1), generator=g) * 0.02 + 1e-3
    mn = torch.randn((out_f, in_f // 32, 1), generator=g) * 0.05
    return (mn + q * step).reshape(out_f, in_f)


@pytest.mark.parametrize("levels", [15, 11])
def test_weights_on_a_4bit_grid_are_repacked_losslessly(levels: int) -> None:
    w = _q4_weight(64, 128, levels)
    grid = int4_grid(w)
    assert grid is not None
    q, step, mn = grid
    rebuilt = (mn.repeat_interleave(32, dim=1) + q.float() * step.repeat_interleave(32, dim=1))
    assert torch.allclose(rebuilt, w, atol=1e-6)
    x = torch.randn(3, 128)
    for dtype in (torch.float32, torch.bfloat16):
        out = Int4Linear(q, step, mn, None, dtype)(x.to(dtype)).float()
        ref = x @ w.t()
        assert (out - ref).norm() / ref.norm() < 1e-2  # only bf16 rounding of scale and zero


def _q8_weight(out_f: int, in_f: int, seed: int = 0) -> torch.Tensor:
    """A GGUF Q8_0 weight dequantised: d * q per group of 32, d = max |w| / 127 in fp16."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-127, 128, (out_f, in_f // 32, 32), generator=g).float()
    q[..., 0] = 127  # Q8_0 scales every block to its largest weight
    d = (torch.rand((out_f, in_f // 32, 1), generator=g) * 0.01 + 1e-4).half().float()
    return (q * d).reshape(out_f, in_f)


def test_weights_on_an_8bit_grid_run_as_two_int4_halves() -> None:
    """A Q8_0 weight (the embedded model's tied lm_head) is found exactly, and its int4-pair
    product is x @ w.T up to bf16 rounding of the group scale; prefill runs the dense weight
    itself, bit for bit, and every decode step the kernel, whatever its rows."""
    w = _q8_weight(64, 128)
    grid = int8_grid(w)
    assert grid is not None
    q, d = grid
    assert torch.equal(q.float() * d.repeat_interleave(32, dim=1), w)
    weight = torch.nn.Parameter(w.to(torch.bfloat16), requires_grad=False)
    layer = Int8GridLinear(weight, None, q, d, torch.bfloat16)
    assert layer.weight is weight
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 128, generator=g).to(torch.bfloat16)
    out = layer(x).float()
    ref = x.float() @ w.t()
    assert out.shape == (2, 1, 64)
    assert (out - ref).norm() / ref.norm() < 1e-2
    dense = torch.nn.functional.linear(x, weight)
    assert not torch.equal(layer(x), dense)  # one row: the int4 kernel, not the dense weight
    with prefill_phase():
        assert torch.equal(layer(x), dense)
    many = torch.randn(20, 128, generator=g).to(torch.bfloat16)  # any decode step: the kernel
    assert torch.equal(layer(many)[5:6], layer(many[5:6]))  # a row's bits, alone or not
    assert not torch.equal(layer(many), torch.nn.functional.linear(many, weight))


def test_weights_off_an_8bit_grid_or_the_int4_packing_stay_dense() -> None:
    w = _q8_weight(64, 128)
    w[3, 5] += 1e-3
    assert int8_grid(w) is None
    assert int8_grid(torch.randn(64, 128)) is None
    # torch packs only output dims that are a multiple of 16 (it raises on 24)
    assert int8_grid(_q8_weight(24, 64)) is None
    assert int4_grid(_q4_weight(24, 64)) is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_a_tied_q8_head_runs_on_the_int4_kernel_in_bf16_only(dtype: torch.dtype) -> None:
    """In bf16 the tied lm_head on an 8-bit grid becomes Int8GridLinear and stays tied to the
    embedding; in fp32 the int4 kernel is slower than dense (`int4_pays`), so it stays dense."""
    embedding = torch.nn.Embedding(64, 128)
    with torch.no_grad():
        embedding.weight.copy_(_q8_weight(64, 128))
    head = torch.nn.Linear(128, 64, bias=False)
    head.weight = embedding.weight
    model = torch.nn.Sequential(embedding, head)
    model.get_input_embeddings = lambda: model[0]  # type: ignore[method-assign,assignment]
    counts = optimize_model(model, dtype, int4=True)
    if dtype == torch.bfloat16:
        assert counts["int8"] == 1 and counts["dense"] == 0
        assert isinstance(model[1], Int8GridLinear)
    else:
        assert counts["int8"] == 0 and counts["dense"] == 1
        assert isinstance(model[1], RowBlockedLinear)
    assert model[1].weight is model[0].weight and model[0].weight.dtype == dtype
    assert int4_pays(torch.bfloat16) and not int4_pays(torch.float32)


def test_without_a_working_int4_kernel_the_weights_stay_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    from judgekit.backends import local_engine

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("no int4 kernel in this torch build")

    local_engine.int4_kernel_works.cache_clear()
    monkeypatch.setattr(torch, "_convert_weight_to_int4pack_for_cpu", missing, raising=False)
    try:
        assert not local_engine.int4_kernel_works(torch.bfloat16)
        model = torch.nn.Sequential(torch.nn.Embedding(8, 128), torch.nn.Linear(128, 64))
        model.get_input_embeddings = lambda: model[0]  # type: ignore[method-assign,assignment]
        with torch.no_grad():
            model[1].weight.copy_(_q4_weight(64, 128))
        counts = local_engine.optimize_model(model, torch.bfloat16, int4=True)
    finally:
        local_engine.int4_kernel_works.cache_clear()  # the real kernel, for the other tests
    assert counts == {"int4": 0, "int8": 0, "dense": 1, "fused": 0}
    assert not isinstance(model[1], Int4Linear) and model[1].weight.dtype == torch.bfloat16


def _tiny_llama(seed: int = 0) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for i, module in enumerate(m for m in model.modules() if type(m) is torch.nn.Linear):
            if module is not model.lm_head:
                module.weight.copy_(_q4_weight(*module.weight.shape, seed=i))
    return model


@pytest.mark.parametrize("int4", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_written_out_llama_step_is_transformers_forward(dtype: torch.dtype, int4: bool) -> None:
    """LlamaDecodeStep (fused q/k/v and gate/up: int4, or dense when the weights stay dense)
    gives transformers' logits for decode steps over a cache, with left padding, on the same
    weights."""
    from judgekit.backends.local_engine import LlamaDecodeStep, make_cache, optimize_model
    from judgekit.backends.local_engine.internals import cache_keyword

    model = _tiny_llama()
    counts = optimize_model(model, dtype, int4=int4)
    assert counts["int4"] == (14 if int4 else 0) and counts["fused"] == 4
    if not int4:  # the separate layers' weights are views of the fused layer's rows
        attn = model.model.layers[0].self_attn
        assert attn.k_proj.weight.data_ptr() == (attn.jk_qkv.weight.data_ptr()
                                                 + attn.q_proj.weight.numel() * dtype.itemsize)
    step = LlamaDecodeStep.for_model(model)
    assert step is not None
    rows, width = 3, 9
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 96, (rows, width), generator=g)
    valid = torch.ones(rows, width + 1, dtype=torch.bool)
    valid[0, :4] = False  # row 0 is left-padded
    positions = (valid[:, :width].cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=prompt, attention_mask=valid[:, :width].long(),
                    position_ids=positions, use_cache=True)
        kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        nxt = torch.randint(0, 96, (rows, 1), generator=g)
        pos = positions[:, -1:] + 1
        ref = model(input_ids=nxt, attention_mask=valid.long(), position_ids=pos,
                    use_cache=True, **{cache_keyword(model): make_cache(kv, width + 1)}
                    ).logits[:, -1]
        got = step(nxt, make_cache(kv, width + 1), pos, [4, 0, 0])
    # tight enough that dropping the padding mask fails (2.6e-4 in fp32, 1e-3 in bf16)
    tol = 1e-5 if dtype == torch.float32 else 2e-4
    assert torch.allclose(got, ref.float(), atol=tol, rtol=0), (got - ref).abs().max()


def test_dense_matmuls_of_many_rows_run_in_row_blocks_of_the_same_result() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 150, 64, generator=g).to(torch.bfloat16)  # 300 rows: three blocks
    weight = torch.randn(48, 64, generator=g).to(torch.bfloat16)
    bias = torch.randn(48, generator=g).to(torch.bfloat16)
    with prefill_phase():
        out = linear_rows(x, weight, bias)
    assert out.shape == (2, 150, 48)
    flat = x.reshape(300, 64)
    blocks = [torch.nn.functional.linear(flat[i:i + MATMUL_ROW_BLOCK], weight, bias)
              for i in range(0, 300, MATMUL_ROW_BLOCK)]
    assert torch.equal(out.reshape(300, 48), torch.cat(blocks))  # exactly each block's bits
    assert torch.allclose(out.float(), torch.nn.functional.linear(x, weight, bias).float(),
                          atol=0.1, rtol=0.02)
    layer = torch.nn.Linear(64, 48)
    model = torch.nn.Sequential(torch.nn.Embedding(8, 64), layer)
    model.get_input_embeddings = lambda: model[0]  # type: ignore[method-assign,assignment]
    assert optimize_model(model, torch.float32, int4=True)["dense"] == 1  # not on a 4-bit grid
    assert isinstance(model[1], RowBlockedLinear) and model[1].weight is layer.weight


def _batch_mismatches(linear: Any, weight: torch.Tensor, bias: torch.Tensor | None,
                      max_rows: int) -> list[tuple[int, int]]:
    """(rows, position) of every batch, of up to `max_rows` rows of random data, in which row 0's
    data at that position does not give, bitwise, what it gives alone."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, weight.shape[1], generator=g).to(weight.dtype)
    alone = linear(x, weight, bias)[0]
    bad = []
    for rows in range(2, max_rows + 1):
        for position in range(rows):
            batch = torch.randn(rows, weight.shape[1], generator=g).to(weight.dtype)
            batch[position] = x[0]
            if not torch.equal(linear(batch, weight, bias)[position], alone):
                bad.append((rows, position))
    return bad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_rows_matmul_is_the_same_in_any_batch(dtype: torch.dtype) -> None:
    """Batch invariance of the engine's decode matmuls (`linear_rows`): a row alone and the same
    row at every position of batches of 2 to 9 other random rows (three row blocks), over a
    weight of two column blocks, give the same bits, on 1 thread and on 2. Plain
    `nn.functional.linear` does not (MKL picks its fp32 kernel by the row count: on the AVX2
    CPU of CI, 1 row against 2-3 against 4+); where it happens to, the check has no adversary
    on that CPU and says so."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(DECODE_COLUMN_BLOCK + 96, 64, generator=g).to(dtype)
    bias = torch.randn(weight.shape[0], generator=g).to(dtype)
    max_rows = 2 * DECODE_ROW_BLOCK + 1
    saved = torch.get_num_threads()
    plain: list[tuple[int, int]] = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert _batch_mismatches(linear_rows, weight, bias, max_rows) == []
            plain += _batch_mismatches(torch.nn.functional.linear, weight, bias, max_rows)
    finally:
        torch.set_num_threads(saved)
    if not plain:
        warnings.warn(f"plain linear is batch-invariant for these shapes on this CPU ({dtype})",
                      stacklevel=1)


def test_ordinary_weights_are_never_quantised() -> None:
    assert int4_grid(torch.randn(64, 128)) is None
    assert int4_grid(torch.randn(64, 100)) is None  # not a multiple of the group size


def test_thread_tuner_keeps_the_faster_count_and_backs_off() -> None:
    saved = torch.get_num_threads()
    tuner = ThreadTuner()
    tuner.start()
    assert tuner.best == 1  # starts safe
    tuner.other = 2  # as on a 2-core machine
    cost = {2: 0.010, 1: 0.020}  # an idle machine: two threads win
    for _ in range(200):
        n = tuner.before_step()
        tuner.after_step(n, cost[n])
    assert tuner.best == 2
    cost = {2: 0.050, 1: 0.020}  # a neighbour's load arrives: one thread wins
    for _ in range(200):
        n = tuner.before_step()
        tuner.after_step(n, cost[n])
    assert tuner.best == 1
    cost = {2: 0.080, 1: 0.020}
    for _ in range(400):
        n = tuner.before_step()
        tuner.after_step(n, cost[n])
    assert tuner.best == 1
    probes_before, period = tuner._step, tuner._period
    assert period > ThreadTuner.BASE_PERIOD  # losing probes made probing rarer
    tuner.finish()
    assert torch.get_num_threads() == saved and probes_before > 0
    fixed = ThreadTuner(1)
    fixed.start()
    assert fixed.before_step() == 1 and fixed.other is None
    fixed.finish()


def test_prefill_tuner_tries_the_callers_count_soon_even_from_one_thread() -> None:
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as the decode tuner leaves it before prefill starts
        tuner = ThreadTuner(base_period=4)
        tuner.start(candidate=2)
        assert (tuner.best, tuner.other) == (1, 2)
        counts = []
        for _ in range(8):
            n = tuner.before_step()
            counts.append(n)
            tuner.after_step(n, {1: 2.0, 2: 1.0}[n])
        assert counts[:4] == [1, 1, 1, 1] and counts[4] == 2 and tuner.best == 2
        tuner.settle()
        assert torch.get_num_threads() == 2
        tuner.finish()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)


def test_cascade_attention_equals_attention_over_the_whole_sequence() -> None:
    from judgekit.backends.local_engine import cascade_attention

    class Layer:
        layer_idx = 0

    g = torch.Generator().manual_seed(0)
    rows, heads, kv_heads, dim, shared, own = 3, 6, 2, 16, 40, 7
    q = torch.randn(rows, heads, 1, dim, generator=g)
    prefix_k, prefix_v = (torch.randn(1, kv_heads, shared, dim, generator=g) for _ in range(2))
    own_k, own_v = (torch.randn(rows, kv_heads, own, dim, generator=g) for _ in range(2))
    keep = torch.ones(rows, 1, 1, own, dtype=torch.bool)
    keep[0, ..., :3] = False  # a left-padded row
    out, _ = cascade_attention(Layer(), q, own_k, own_v, None, scaling=0.25,
                               jk_prefix=[(prefix_k, prefix_v)], jk_starts=[3, 0, 0])
    full_k = torch.cat([prefix_k.expand(rows, -1, -1, -1), own_k], 2).repeat_interleave(3, 1)
    full_v = torch.cat([prefix_v.expand(rows, -1, -1, -1), own_v], 2).repeat_interleave(3, 1)
    full_mask = torch.cat([torch.ones(rows, 1, 1, shared, dtype=torch.bool), keep], -1)
    ref = torch.nn.functional.scaled_dot_product_attention(q, full_k, full_v,
                                                           attn_mask=full_mask, scale=0.25)
    assert torch.allclose(out, ref.transpose(1, 2), atol=1e-5)


def test_sampling_never_picks_a_masked_token() -> None:
    logits = torch.full((4, 50), float("-inf"))
    logits[:, 7] = 0.0
    logits[:, 30] = 1.0
    gen = torch.Generator().manual_seed(0)
    for top_p in (1.0, 0.5):
        params = DecodeParams(max_new_tokens=1, temperature=1.0, top_p=top_p)
        seen = {int(t) for _ in range(200) for t in choose(logits, params, [gen] * 4)}
        assert seen <= {7, 30} and (top_p < 1.0 or seen == {7, 30})
    assert choose(logits, DecodeParams(max_new_tokens=1), None).tolist() == [30] * 4


def test_streamed_safetensors_load_back(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.torch import load_file

    path = tmp_path / "model.safetensors"
    tensors = {"a.weight": torch.randn(3, 5), "b.bias": np.arange(7, dtype=np.float32)}
    with SafetensorsStreamWriter(path, n_tensors=2) as writer:
        for name, value in tensors.items():
            writer.add(name, value)
    loaded = load_file(str(path))
    assert torch.equal(loaded["a.weight"], tensors["a.weight"])
    assert loaded["b.bias"].tolist() == list(range(7))
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    assert header_len % 8 == 0 and json.loads(raw[8:8 + header_len])["__metadata__"] == {
        "format": "pt"}


def test_context_window_reads_the_config() -> None:
    class Config:
        max_position_embeddings = 2048

    class NoLimit:
        pass

    class Tok:
        model_max_length = 512

    assert context_window(Config()) == 2048
    assert context_window(NoLimit(), Tok()) == 512
    assert context_window(NoLimit()) is None


# -- the real embedded model ---------------------------------------------------------------------

SYSTEM = ("You judge answers to questions. Read the question and both responses, decide which "
          "response is more helpful, accurate and specific, and say why in one short line. ") * 10
GRAMMAR = 'root ::= "Better: Response " [12] "\\nReason: " [^\\n]{1,100} "\\n"'
SCORES = 'root ::= "Scores: " [1-9] ", " [1-9]'


def _messages(query: str, a: str, b: str, system: str = SYSTEM) -> list[Message]:
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"Question: {query}\nResponse 1: {a}\nResponse 2: {b}"}]


ITEM_A = ("Give me one tip for learning a new language.", "Practise fifteen minutes every day.",
          "Languages are hard.")
ITEM_B = ("How do I boil an egg?", "Put it in boiling water for 8 minutes.", "Eggs are tasty.")


def _requests(item: tuple[str, str, str],
              system: str = SYSTEM) -> list[tuple[list[Message], int]]:
    q, a, b = item
    return [(_messages(q, a, b, system), 2), (_messages(q, b, a, system), 2)]


SHORT = SYSTEM[:len(SYSTEM) // 4]  # the generate path is slow: a shorter prompt


def _texts(results: list[Any]) -> list[list[str]]:
    assert all(isinstance(r, GenerationResult) for r in results)
    return [[c.text for c in r.completions] for r in results]


@pytest.fixture(scope="module")
def fast() -> Iterator[TransformersBackend]:
    backend = TransformersBackend.from_spec("embedded")
    backend.tokenizer  # noqa: B018 - load
    yield backend


@pytest.mark.model
def test_prefix_cache_is_exact_at_temperature_zero(fast: TransformersBackend) -> None:
    config = GenerationConfig(temperature=0.0, max_tokens=40, grammar=GRAMMAR)
    engine = fast.engine
    assert engine is not None and engine.cascade
    weights = fast.weights_summary  # int4 kernels in bf16 only (see int4_pays)
    in_bf16 = weights["dtype"] == "bfloat16"
    assert (weights["int4"] > 0) == in_bf16 and (weights["int8"] == 1) == in_bf16  # Q8_0 lm_head
    assert engine.step is not None  # the written-out Llama decode step
    engine.use_prefix_cache = False
    engine.cache.clear()
    uncached = {name: _texts(fast.generate_many_sync(_requests(item), config))
                for name, item in (("a", ITEM_A), ("b", ITEM_B))}
    assert len(engine.cache) == 0
    engine.use_prefix_cache = True
    assert _texts(fast.generate_many_sync(_requests(ITEM_A), config)) == uncached["a"]
    entry = engine.cache.entries()[0].kv
    before = [(k.clone(), v.clone()) for k, v in entry]
    reused = engine.stats.reused_tokens
    assert _texts(fast.generate_many_sync(_requests(ITEM_A), config)) == uncached["a"]
    assert _texts(fast.generate_many_sync(_requests(ITEM_B), config)) == uncached["b"]
    assert engine.stats.reused_tokens - reused > 2 * len(SYSTEM) // 8  # the system prompt
    assert all(torch.equal(k, k0) and torch.equal(v, v0)
               for (k, v), (k0, v0) in zip(entry, before, strict=True))  # never written to
    assert all(t.startswith("Better: Response ") for r in uncached.values() for row in r
               for t in row)


@pytest.mark.model
def test_prefill_gives_the_same_bits_on_one_thread_and_on_two(fast: TransformersBackend) -> None:
    """Prefill's thread count is tuned while a run goes on, so a prompt's KV must not depend on
    it (a 256-row bf16 matmul did: oneDNN split it differently on 2 threads)."""
    engine = fast.engine
    assert engine is not None
    ids = fast.tokenizer(SYSTEM * 2)["input_ids"]
    assert len(ids) > 2 * PREFILL_CHUNK  # whole chunks, each a 256-row matmul
    tuner, kvs = engine.prefill_threads, {}
    try:
        for threads in (1, 2):
            engine.prefill_threads = ThreadTuner(threads)
            engine.cache.clear()
            engine.generate([ids], [1], DecodeParams(max_new_tokens=1))
            (entry,) = engine.cache.entries()
            kvs[threads] = entry.kv
    finally:
        engine.prefill_threads = tuner
        engine.cache.clear()
    assert all(torch.equal(a, b) for (k1, v1), (k2, v2) in zip(kvs[1], kvs[2], strict=True)
               for a, b in ((k1, k2), (v1, v2)))


@pytest.fixture(scope="module")
def fp32() -> TransformersBackend:
    """The fast engine in fp32 (no int4 by default there, see `int4_pays`): its rows do not
    depend on batch shapes beyond the last bits, so outputs can be compared token for token."""
    return TransformersBackend.from_spec("embedded", dtype="float32")


@pytest.mark.model
def test_fp32_engine_matches_generate(fp32: TransformersBackend) -> None:
    """The fast engine in fp32 with the prefix cache gives generate's greedy tokens, its
    log-probabilities and its forced scores line."""
    engine = fp32
    old = TransformersBackend.from_spec("embedded", fast=False)
    config = GenerationConfig(temperature=0.0, max_tokens=12, grammar=GRAMMAR)
    assert _texts(engine.generate_many_sync(_requests(ITEM_A, SHORT), config)) == _texts(
        old.generate_many_sync(_requests(ITEM_A, SHORT), config))
    assert engine.weights_summary["dtype"] == "float32"
    assert engine.weights_summary["int4"] == engine.weights_summary["int8"] == 0
    lp_config = GenerationConfig(temperature=0.0, max_tokens=2, logprobs=True, top_logprobs=3)
    messages = _messages(*ITEM_B, system=SHORT)
    new_lp = engine.generate_sync(messages, lp_config).completions[0].logprobs
    old_lp = old.generate_sync(messages, lp_config).completions[0].logprobs
    assert new_lp and old_lp and len(new_lp) == len(old_lp)
    for a, b in zip(new_lp, old_lp, strict=True):
        assert a.token == b.token and a.logprob == pytest.approx(b.logprob, abs=1e-3)
        assert a.top.keys() == b.top.keys()
    prefixes = ["Better: Response 1\nReason: it is specific", "Better: Response 2"]
    reused = engine.engine.stats.reused_tokens
    messages = _messages(*ITEM_A, system=SHORT * 3)  # a shared prefix of a whole prefill chunk
    forced = engine.complete_under_grammar_sync(messages, prefixes, SCORES, config)
    assert engine.engine.stats.reused_tokens > reused  # the prompt came from the cache
    reference = old.complete_under_grammar_sync(messages, prefixes, SCORES, config)
    assert [c.text for c in forced.completions] == [c.text for c in reference.completions]
    assert all(c.text.startswith("Scores: ") and c.finish_reason == "forced"
               for c in forced.completions)


@pytest.mark.model
def test_calls_sharing_the_batch_get_what_they_get_alone(fp32: TransformersBackend) -> None:
    """Sampled rows under a grammar, greedy log-probabilities and a forced scores line, decoded
    one call at a time and then all three in one batch, give the same tokens."""
    sampled = GenerationConfig(temperature=0.8, seed=7, max_tokens=40, grammar=GRAMMAR)
    greedy = GenerationConfig(temperature=0.0, max_tokens=12, logprobs=True, top_logprobs=3)
    prefixes = ["Better: Response 1\nReason: it is specific", "Better: Response 2"]

    def with_logprobs() -> tuple[str, list[tuple[str, float]]]:
        out = fp32.generate_sync(_messages(*ITEM_B, system=SHORT), greedy).completions[0]
        return out.text, [(lp.token, round(lp.logprob, 3)) for lp in out.logprobs or []]

    def forced() -> list[str]:
        result = fp32.complete_under_grammar_sync(_messages(*ITEM_A, system=SHORT), prefixes,
                                                  SCORES, GenerationConfig(max_tokens=20))
        return [c.text for c in result.completions]

    calls = [lambda: _texts(fp32.generate_many_sync(_requests(ITEM_A, SHORT), sampled)),
             with_logprobs, forced]
    engine = fp32.engine
    gate(engine)
    alone = [call() for call in calls]
    engine.stats.peak_rows = 0
    together = run_together(engine, calls)
    assert engine.stats.peak_rows == 4 + 1 + 2  # all three calls' rows in one step
    assert together == alone
    assert all(t.startswith("Scores: ") for t in alone[2])


_BROKEN_INTERNAL = """
import json, logging, sys
import torch

def removed(*args, **kwargs):
    raise RuntimeError("removed by an upgrade")

# an upgrade that drops the private op the engine's attention calls (sdpa itself keeps working)
torch.ops.aten._scaled_dot_product_flash_attention_for_cpu = removed
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from judgekit.backends.local import TransformersBackend
from judgekit.config import GenerationConfig

backend = TransformersBackend.from_spec("embedded", dtype="float32")
messages = json.loads(sys.argv[1])
config = GenerationConfig(temperature=0.0, max_tokens=int(sys.argv[2]))
texts = [backend.generate_sync(messages, config).completions[0].text for _ in range(2)]
print(json.dumps({"engine": backend.engine is not None, "note": backend.engine_note,
                  "texts": texts}))
"""


@pytest.mark.model
def test_when_an_internal_breaks_the_backend_says_so_once_and_generates_the_same_tokens(
        fp32: TransformersBackend) -> None:
    """A process whose torch lacks the flash attention op the engine needs: the self-check
    fails at load, one warning says so, the backend uses transformers' `generate` (the
    `fast=False` path), and its greedy tokens are the fast engine's in this process."""
    import os
    import subprocess
    import sys

    messages = _messages(*ITEM_B, system=SHORT)
    tokens = 16
    fast_text = fp32.generate_sync(messages, GenerationConfig(temperature=0.0, max_tokens=tokens))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", _BROKEN_INTERNAL, json.dumps(messages),
                           str(tokens)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["engine"] is False and "flash attention" in out["note"]
    assert proc.stderr.count("fast local engine off") == 1
    assert out["texts"] == [fast_text.completions[0].text] * 2
    assert fp32.engine is not None  # the fast engine did run here


def test_the_self_check_finds_a_broken_internal(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    from judgekit.backends.local_engine import self_check

    def wrong(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any,
              **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros_like(q), torch.zeros(q.shape[:3])  # runs, but other numbers

    assert self_check() is None  # this torch and transformers
    self_check.cache_clear()
    monkeypatch.setattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", wrong)
    try:
        with caplog.at_level("WARNING", logger="judgekit.backends.local_engine"):
            reason = self_check()
            assert self_check() == reason  # checked once a process
    finally:
        self_check.cache_clear()
    assert reason is not None and "flash attention" in reason and "other numbers" in reason
    assert [r.getMessage().startswith("fast local engine off") for r in caplog.records] == [True]


@pytest.mark.model
def test_a_prompt_longer_than_the_context_is_refused_before_generating(
        fast: TransformersBackend) -> None:
    from judgekit import Judge, SampleStatus

    window = fast.context_length()
    assert window == fast.model.config.max_position_embeddings == 8192
    long_query = "Summarise this text. " + "lorem ipsum dolor sit amet " * 1700
    messages: list[Message] = [{"role": "user", "content": long_query}]
    assert len(fast.tokenizer(long_query)["input_ids"]) > window
    engine = fast.engine
    prefilled = engine.stats.prefilled_tokens
    config = GenerationConfig(temperature=0.0, max_tokens=4)
    with pytest.raises(ContextLengthError, match="8192"):
        fast.generate_sync(messages, config)
    short: list[Message] = [{"role": "user", "content": "Say hi."}]
    outcomes = fast.generate_many_sync([(messages, 1), (short, 1)], config)
    assert isinstance(outcomes[0], ContextLengthError) and not outcomes[0].retryable
    assert isinstance(outcomes[1], GenerationResult)
    assert engine.stats.prefilled_tokens - prefilled < 100  # only the short prompt ran
    # a prompt that fits, but not with max_tokens on top
    fits = "lorem ipsum dolor sit amet " * 760
    n = len(fast.tokenizer(fits)["input_ids"])
    assert n < window
    with pytest.raises(ContextLengthError, match="max_tokens"):
        fast.generate_sync([{"role": "user", "content": fits}],
                           GenerationConfig(max_tokens=window - n + 50))
    verdict = Judge(fast, max_tokens=64).score(long_query, ["a", "b"])
    assert verdict.best is None and verdict.error and "ContextLengthError" in verdict.error
    assert all(s.status is SampleStatus.API_ERROR and s.attempts == 1 for s in verdict.samples)


_STREAM_RSS = """
import resource, sys
from pathlib import Path
import gguf, numpy, safetensors, torch, transformers  # imports count in the baseline
from transformers import AutoConfig
from judgekit.embedded import _stream_gguf_weights, embedded_gguf_path
config = AutoConfig.from_pretrained(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
_stream_gguf_weights(embedded_gguf_path(), config, Path(sys.argv[2]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before * 1024, after * 1024)
"""


@pytest.mark.model
def test_materialising_streams_the_weights_one_chunk_at_a_time(tmp_path: Path) -> None:
    """The GGUF's weights go to safetensors without a second copy in memory, and the values are
    exactly those of transformers' own GGUF loader.

    Memory is checked twice: numpy's traced peak allocation while streaming, and, in a fresh
    process, how much the peak RSS (everything: torch, numpy, the mapped GGUF pages) grows
    while streaming. Both must stay well under one copy of the fp32 weights (538 MB here); the
    old path (load the model from the GGUF, copy it into a plain model, save it) held the weights
    at least twice."""
    import subprocess
    import sys

    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    from judgekit.embedded import _stream_gguf_weights, embedded_gguf_path, embedded_model_dir

    directory = embedded_model_dir()
    config = AutoConfig.from_pretrained(str(directory))
    out = tmp_path / "model.safetensors"
    tracemalloc.start()
    try:
        _stream_gguf_weights(embedded_gguf_path(), config, out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    weights = out.stat().st_size
    # ~60 MB stay traced throughout (the GGUF header and tables, not weights-sized), the
    # per-tensor buffers come on top: well under one copy of the fp32 weights (538 MB)
    assert peak < weights / 4, (peak, weights)
    proc = subprocess.run([sys.executable, "-c", _STREAM_RSS, str(directory),
                           str(tmp_path / "again.safetensors")], capture_output=True, text=True,
                          check=True, cwd=str(Path(__file__).parents[2]))
    before, after = map(int, proc.stdout.split()[-2:])
    # measured 268 MB, the memory-mapped 94 MB GGUF included; one copy of the weights is 538 MB,
    # the previous code (quantised model + plain model + state dict) held at least two
    assert after - before < 0.75 * weights, (before, after, weights)
    gguf = embedded_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32).state_dict()
    with safe_open(str(out), "pt") as new:
        assert set(new.keys()) == set(reference) - {"lm_head.weight"}  # tied to the embeddings
        for name in sorted(new.keys()):
            assert torch.equal(new.get_tensor(name), reference[name]), name
    assert config.architectures == ["LlamaForCausalLM"]
