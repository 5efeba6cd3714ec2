"""The fast decoding path of the local backend: a prefix KV cache, one decode loop of our own,
and weights in the cheapest exact form this CPU runs well.

Why a decode loop of our own instead of `model.generate`: a judge prompt is ~1,000 tokens of
which ~900 (instructions, criteria, few-shot examples) are the same for every item, and the k
samples of one prompt share all of it. `generate` re-reads the whole prompt for every row and
call. Here the model's forward pass (any transformers causal LM with standard attention layers)
is driven directly:

1. Prefix cache. `PrefixCache` keeps KV snapshots (batch 1, one per prompt seen and one per
   shared prefix of a call's prompts), keyed by their token ids; a prompt reuses the entry with
   the longest common token prefix. No hint from the caller is needed: the static part of the
   GRM prompt, the query part shared by an item's permutations, and the whole prompt (when the
   scores line is forced, or the same item is asked again) are all found by the same rule, and
   a prompt format change cannot make a hint stale. Entries are read through views and copied
   into each call's own buffers; they are never written to. Prefill runs in chunks at fixed
   positions so that the cached path is bitwise the uncached one (`DecodeEngine._prefill`).
2. One prefill per prompt; its k sample rows share it. While decoding, the prefix all rows of a
   call share stays one batch-1 tensor that every row reads once per step (`row_attention`);
   each row's own part (its prompt's suffix, then its tokens) lives in preallocated buffers
   written in place (DynamicLayer concatenates the whole cache at every step, which at k=8 and
   1,200 tokens copies ~200 MB per token).
3. The loop drops finished rows, masks the logits with xgrammar matchers (about 2% of decode
   time here, so not overlapped with the forward pass), samples by inverse CDF, and records
   log-probabilities of the raw logits (as `generate`'s `output_logits`) only when asked.
4. The torch thread count is measured, for decode steps and prefill chunks apart
   (`ThreadTuner`); matmuls run in fixed row blocks so that no result depends on it, nor on
   the other rows of a decode step (`linear_rows` names the rule: batch invariance).
5. Calls share the decode loop (`DecodeEngine`, `RunningBatch`): the judge keeps several items
   in flight, and between two steps a waiting call is prefilled and its rows join the running
   batch, each call's rows reading their own prefix (`PrefixRuns`). A step of a 135M model
   costs about the same for 1 row as for 4 (the weights are read once per step), so 4 items x
   4 samples decode at ~2x the tokens/s of one item's rows at a time. Each row samples from its
   own seeded generator (`row_seed`), so what else shares the batch never changes its draws.

Weights (see `optimize_model`): the embedded GGUF is Q4_1, so its dequantised linear weights lie
exactly on a 4-bit grid in groups of 32. They are re-packed losslessly for torch's int4
weight-only CPU kernel for decoding (8x fewer bytes than fp32 per token; decoding a 135M model
is bound by the bytes read per step), with a bf16 copy for prefill. Everything else runs in
bf16 where the CPU has native bf16 (AVX512-BF16 / AMX), else fp32. Weights not on a 4-bit grid
(an ordinary hf: checkpoint) are never quantised: they stay bf16 (or fp32).

One module per subsystem:
- `internals`: every private torch / transformers internal, behind public names, and the
  self-check run at load (on failure the backend uses plain `generate`);
- `weights`: the engine's dtype and the re-pack of grid weights (`optimize_model`);
- `matmul`: the engine's linear layers and the batch-invariance rule (`linear_rows`);
- `caches`: the prefix cache and the KV buffers decode writes into;
- `attention`: decode attention, per row and per shared prefix (`row_attention`);
- `step`: which models the engine drives, and the written-out Llama decode step;
- `batch`: the rows being decoded (`RunningBatch`); `grammar`: each row's next token;
- `tuning`: the thread count (`ThreadTuner`); `engine`: prefill and the shared loop.
"""


from judgekit.backends.local_engine.attention import (
    ATTENTION_MIN_QUERIES,
    CASCADE_MIN_PREFIX,
    PrefixRuns,
    cascade_attention,
    install_cascade_attention,
    row_attention,
)
from judgekit.backends.local_engine.batch import (
    KV_ROOM,
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
    kv_bytes,
    kv_slice,
    make_cache,
    make_layer,
    release_free_memory,
)
from judgekit.backends.local_engine.engine import PREFILL_CHUNK, DecodeEngine
from judgekit.backends.local_engine.grammar import attach_grammar, choose, pick
from judgekit.backends.local_engine.internals import (
    INT4_GROUP,
    int4_kernel_works,
    self_check,
)
from judgekit.backends.local_engine.matmul import (
    DECODE_COLUMN_BLOCK,
    DECODE_ROW_BLOCK,
    MATMUL_ROW_BLOCK,
    Int4Linear,
    Int8GridLinear,
    RowBlockedLinear,
    in_prefill,
    linear_rows,
    prefill_phase,
)
from judgekit.backends.local_engine.step import LlamaDecodeStep, engine_supported
from judgekit.backends.local_engine.tuning import (
    PREFILL_PROBE_PERIOD,
    PREFILL_TUNE_TOKENS,
    ThreadTuner,
)
from judgekit.backends.local_engine.weights import (
    INT4_PACK_ROWS,
    cpu_has_native_bf16,
    int4_grid,
    int4_pays,
    int8_grid,
    optimize_model,
    pick_engine_dtype,
)

__all__ = [
    "ATTENTION_MIN_QUERIES", "CASCADE_MIN_PREFIX", "DECODE_COLUMN_BLOCK", "DECODE_ROW_BLOCK",
    "INT4_GROUP", "INT4_PACK_ROWS", "KV", "KV_ROOM", "MATMUL_ROW_BLOCK", "PREFILL_CHUNK",
    "PREFILL_PROBE_PERIOD", "PREFILL_TUNE_TOKENS", "ROW_BUDGET", "CacheEntry", "Call",
    "DecodeEngine", "DecodeParams", "EngineStats", "Int4Linear", "Int8GridLinear",
    "LlamaDecodeStep", "PrefixCache", "PrefixRuns", "Row", "RowBlockedLinear", "RowOutput", "Run",
    "RunningBatch", "ThreadTuner", "attach_grammar", "cache_kv", "cascade_attention", "choose",
    "common_prefix", "cpu_has_native_bf16", "engine_supported", "in_prefill",
    "install_cascade_attention", "int4_grid", "int4_kernel_works", "int4_pays", "int8_grid",
    "kv_bytes", "kv_slice", "linear_rows", "make_cache", "make_layer", "optimize_model", "pick",
    "pick_engine_dtype", "prefill_phase", "release_free_memory", "row_attention", "row_seed",
    "self_check",
]
