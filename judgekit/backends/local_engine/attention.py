"""Attention of decode steps: each row over its own keys, and the prefix a call's rows share
read once per call (`row_attention`), registered with transformers so that its forward uses it
too (`cascade_attention`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from judgekit.backends.local_engine.caches import KV
from judgekit.backends.local_engine.internals import (
    flash_attention,
    register_attention,
    sdpa_forward,
)

CASCADE_MIN_PREFIX = 32
"""Shorter shared prefixes are copied into every row instead (one attention call is cheaper)."""

CASCADE_ATTENTION = "judgekit_cascade"


@dataclass(frozen=True)
class PrefixRuns:
    """The shared prefixes of a decode batch that holds rows of several calls: per call, in
    batch order, (its prefix KV, or None when its rows hold their whole prompt, and how many
    consecutive rows it has). A one-call batch passes its prefix KV itself."""

    runs: tuple[tuple[KV | None, int], ...]


def cascade_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0,
                      scaling: float | None = None, jk_prefix: KV | PrefixRuns | None = None,
                      jk_starts: Sequence[int] | None = None,
                      **kwargs: Any) -> tuple[torch.Tensor, None]:
    """The engine's attention inside transformers' forward (registered with its
    AttentionInterface): one query a row (a decode step, or a prompt's last token) goes to
    `row_attention`, row r's own keys from jk_starts[r] on (0 when not given); more queries
    (prefill) to plain sdpa."""
    if query.shape[2] != 1:
        return sdpa_forward(module, query, key, value, attention_mask, dropout=dropout,
                            scaling=scaling, **kwargs)
    starts = jk_starts if jk_starts is not None else [0] * query.shape[0]
    return row_attention(query, key, value, starts, jk_prefix, module.layer_idx, scaling), None


def row_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  starts: Sequence[int], prefix: KV | PrefixRuns | None, layer: int,
                  scaling: float | None) -> torch.Tensor:
    """Attention of a decode step (query [rows, heads, 1, dim]; key/value [rows, kv_heads,
    positions, dim], row r's own part from `starts[r]` on): [rows, 1, heads, dim].

    Each row reads its own keys/values unpadded, one kernel call per row: with one call over
    the left-padded batch, a row's result changed with the padding the other rows imposed
    (measured; see `linear_rows` on batch invariance). Rows that share a prompt prefix read it
    once per call, as one batch-1 attention per call (k rows of a ~1,000-token prompt would
    otherwise read the same ~20 MB k times per step); the two partial results are merged by
    their log-sum-exp, the split-softmax identity flash-decoding uses. With `PrefixRuns` every
    call's rows read their own call's prefix."""
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    q = query.reshape(rows, kv_heads, heads // kv_heads, dim)  # a kv head's queries, as a query run
    own = [_attend(q[r:r + 1], key[r:r + 1, :, start:], value[r:r + 1, :, start:], scaling)
           for r, start in enumerate(starts)]
    o2 = torch.cat([o for o, _ in own]) if rows > 1 else own[0][0]
    if prefix is None:
        return o2.reshape(rows, 1, heads, dim)
    lse2 = torch.cat([lse for _, lse in own]) if rows > 1 else own[0][1]
    runs = prefix.runs if isinstance(prefix, PrefixRuns) else ((prefix, rows),)
    o1, lse1 = _prefix_attention(q, runs, layer, scaling)
    w1, w2 = _merge_weights(lse1, lse2)
    out = (o1.float() * w1.unsqueeze(-1) + o2.float() * w2.unsqueeze(-1)).to(query.dtype)
    return out.reshape(rows, 1, heads, dim)


LANES = 64
"""`_merge_weights` computes on rows padded to a multiple of this many floats."""


def _merge_weights(lse1: torch.Tensor, lse2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights of two partial attentions with these log-sum-exps ([rows, heads, queries]):
    exp(lse1 - lse) and exp(lse2 - lse), lse = logaddexp(lse1, lse2).

    Computed on each row padded to `LANES` floats: torch's elementwise kernels run the flat
    tensor in SIMD steps and its remainder in scalar code, whose exp and log round differently
    (SLEEF against libm), so with 9 values a row (the embedded model's 3 kv heads x 3 queries)
    a row's last values would fall in the vector body or the scalar tail depending on how many
    rows share the step: batch invariance (`linear_rows`) again."""
    rows = lse1.shape[0]
    width = lse1[0].numel()
    padded = -(-width // LANES) * LANES

    def lanes(t: torch.Tensor) -> torch.Tensor:
        out = t.new_zeros((rows, padded))
        out[:, :width] = t.reshape(rows, width)
        return out

    a, b = lanes(lse1), lanes(lse2)
    lse = torch.logaddexp(a, b)
    w1, w2 = torch.exp(a - lse), torch.exp(b - lse)
    return (w1[:, :width].reshape(lse1.shape), w2[:, :width].reshape(lse2.shape))


def _prefix_attention(q: torch.Tensor, runs: Sequence[tuple[KV | None, int]], layer: int,
                      scaling: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each run's queries (q: [rows, kv_heads, group, dim]) against its prefix, as one batch-1
    attention per run: the output and log-sum-exp per row, zeros and -inf for a run without a
    prefix (which then weighs nothing in the merge)."""
    outs: list[torch.Tensor] = []
    lses: list[torch.Tensor] = []
    first = 0
    for prefix, n in runs:
        part = q[first:first + n]
        first += n
        if prefix is None:
            outs.append(part.new_zeros(part.shape))
            lses.append(torch.full(part.shape[:3], float("-inf")))
            continue
        _, kv_heads, group, dim = part.shape
        prefix_k, prefix_v = prefix[layer]
        shared_q = part.transpose(0, 1).reshape(1, kv_heads, n * group, dim)
        o, lse = _attend(shared_q, prefix_k, prefix_v, scaling)
        outs.append(o.reshape(kv_heads, n, group, dim).transpose(0, 1))
        lses.append(lse.reshape(kv_heads, n, group).transpose(0, 1))
    if len(outs) == 1:
        return outs[0], lses[0]
    return torch.cat(outs), torch.cat(lses)


ATTENTION_MIN_QUERIES = 4
"""`_attend` runs at least this many queries per head (zero queries pad the rest)."""


def _attend(q: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            scaling: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's CPU flash attention (q [batch, heads, queries, dim]): the output and the
    log-sum-exp. In fp32 its result for fewer than 4 queries a head changed with the thread
    count (MKL's small-matrix path; measured here on 40+ keys, never with 4 to 12 queries), and
    the thread count is tuned while decoding, so fewer queries are padded to 4."""
    n = q.shape[2]
    if n >= ATTENTION_MIN_QUERIES:
        return flash_attention(q, key, value, scaling)
    padded = torch.cat([q, q.new_zeros((*q.shape[:2], ATTENTION_MIN_QUERIES - n, q.shape[3]))], 2)
    out, lse = flash_attention(padded, key, value, scaling)
    return out[:, :, :n], lse[:, :, :n]


def install_cascade_attention(model: Any) -> bool:
    """Route the model's attention through `cascade_attention` (sdpa models on CPU only)."""
    if getattr(model.config, "_attn_implementation", None) == CASCADE_ATTENTION:
        return True
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    return register_attention(model, CASCADE_ATTENTION, cascade_attention)
