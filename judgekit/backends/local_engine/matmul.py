"""The engine's linear layers, and the rule that makes decoding batch-invariant (`linear_rows`).

Dense layers run `linear_rows`; layers whose weights lie on a 4-bit or 8-bit grid run torch's
int4 kernel in decode steps and a dense copy in prefill (`prefill_phase` says which phase a
thread is in)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from judgekit.backends.local_engine.internals import INT4_GROUP, int4_matmul, int4_pack

_PHASE = threading.local()


@contextmanager
def prefill_phase() -> Iterator[None]:
    """Inside, Int4Linear layers use their dense copy and dense matmuls run in prefill's row
    blocks (this thread only). The phase, never the row count, picks the kernel (see
    `linear_rows`)."""
    _PHASE.prefill = True
    try:
        yield
    finally:
        _PHASE.prefill = False


def in_prefill() -> bool:
    return bool(getattr(_PHASE, "prefill", False))


MATMUL_ROW_BLOCK = 128
"""Prefill's dense matmuls run at most this many rows at a time (see `linear_rows`)."""

DECODE_ROW_BLOCK = 4
"""A decode step's dense matmuls run in blocks of exactly this many rows, the last one padded
with zero rows (see `linear_rows`). 4: the judge's usual call (2 orders x 2 samples) fills one
block; a lone row pays for 4 (measured in benchmarks/bench_local_speed.py's decode task)."""

DECODE_COLUMN_BLOCK = 4096
"""A decode step's dense matmuls run over at most this many output features at a time (the
weight's own split, the same for every step), each column block for every row block in turn:
so several row blocks read a large weight (a 49k-token lm_head) from memory once, not once a
block."""


def linear_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`nn.functional.linear` as the engine runs every dense matmul: the rule that makes decoding
    batch-invariant.

    Batch invariance: a row's logits, and so its tokens, never depend on which other rows share
    its decode step (other calls' rows joining or leaving the batch). BLAS kernels do not give
    that by themselves: a matmul over M rows picks its kernel and blocking by M (MKL's fp32
    sgemm rounds a row differently for M = 1, 2-3 and 4+ on this AVX2 CPU, and on an AVX-512
    CPU for other splits), so the same row comes out with other last bits in a step of 4 rows
    than of 7, and sampled tokens drift apart within a few dozen steps. So:
    - decode (outside `prefill_phase`): every dense matmul runs on blocks of exactly
      `DECODE_ROW_BLOCK` rows, the last padded with zeros, and over the weight's fixed column
      blocks (`DECODE_COLUMN_BLOCK`): one kernel shape per weight, whatever the row count, and
      within one shape a row's result does not depend on its neighbours or its place
      (checked: tests/backends/test_local.py::test_a_rows_matmul_is_the_same_in_any_batch);
    - the int4 kernel (`Int4Linear`, `Int8GridLinear`) runs every decode step whatever its rows:
      it computes each row on its own (torch's kernel works in blocks of 4 rows, each row the
      same fused multiply-add chain), which the engine checks at load rather than assumes;
    - attention reads each row's own keys unpadded, one kernel call per row (`row_attention`),
      and a call's shared prefix once per call: neither depends on other calls (nor, with
      at least `ATTENTION_MIN_QUERIES` queries a call, on the thread count: `_attend`);
    - norms, RoPE, activations and sampling are row-wise (one seeded generator per row,
      `row_seed`).
    A result must not depend on the thread count either, which is tuned while a run goes on
    (`ThreadTuner`): oneDNN split a 256-row bf16 matmul differently on 2 threads than on 1, and
    MKL's fp32 sgemm a matmul of 5-7 or 9-11 rows (measured on this AVX2 CPU; multiples of 4 up
    to 128 rows, and 1-4 rows, gave the same bits). So prefill (inside `prefill_phase`) runs at
    most `MATMUL_ROW_BLOCK` rows at a time, the last block padded to a multiple of
    `DECODE_ROW_BLOCK`. Prefill needs no fixed block shape: chunks start at fixed positions
    (`PREFILL_CHUNK`) and only whole chunks are reused from the prefix cache, so a prompt's
    tokens are always computed in the same pieces, cached or not (`DecodeEngine._prefill`)."""
    rows = x.numel() // x.shape[-1]
    flat = x.reshape(rows, x.shape[-1])
    pad = -rows % DECODE_ROW_BLOCK
    if pad:
        flat = torch.cat([flat, flat.new_zeros((pad, flat.shape[1]))])
    if in_prefill():
        out = torch.cat([nn.functional.linear(flat[i:i + MATMUL_ROW_BLOCK], weight, bias)
                         for i in range(0, rows + pad, MATMUL_ROW_BLOCK)])
        return out[:rows].reshape(*x.shape[:-1], weight.shape[0])
    columns = weight.split(DECODE_COLUMN_BLOCK)
    biases = (None,) * len(columns) if bias is None else bias.split(DECODE_COLUMN_BLOCK)
    blocks = range(0, rows + pad, DECODE_ROW_BLOCK)
    parts = [torch.cat([nn.functional.linear(flat[i:i + DECODE_ROW_BLOCK], w, b) for i in blocks])
             if len(blocks) > 1 else nn.functional.linear(flat, w, b)
             for w, b in zip(columns, biases, strict=True)]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return out[:rows].reshape(*x.shape[:-1], weight.shape[0])


class RowBlockedLinear(nn.Linear):
    """The engine's dense linear layers: every matmul runs as `linear_rows` says."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_rows(x, self.weight, self.bias)


class Int4Linear(nn.Module):
    """A linear layer whose weight was on a 4-bit grid. A decode step of a few rows runs torch's
    int4 weight-only CPU kernel (`int4_matmul`: w = (q - 8) * scale + zero per
    group of 32), which reads 1/4 of the bytes of bf16. That kernel's time grows with the rows
    (one thread, per Llama layer of the embedded model, weights in cache: 0.21 ms for 1 row,
    1.39 ms for 16, 2.75 ms for 32), while a bf16 matmul costs about the same for 1 to 32 rows
    (0.68-0.81 ms) but reads 4x the bytes, which bounds it once the weights come from memory.
    Measured in whole decode steps (1,400-token prompts, an AVX512-BF16 CPU): 12 rows 76 ms
    int4 against 91 ms bf16, 16 rows even, 24 rows 127 against 121. Prefill (`prefill_phase`,
    hundreds of rows) uses a bf16 copy of the same weight; every decode step uses the int4
    kernel, whatever its rows, since switching by row count would make a row's bits depend on
    the batch (`linear_rows`): steps of more than ~16 rows pay a few percent for that."""

    packed: torch.Tensor
    scales_zeros: torch.Tensor
    dense: torch.Tensor

    def __init__(self, q: torch.Tensor, step: torch.Tensor, mn: torch.Tensor,
                 bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.in_features = q.shape[1]
        self.out_features = q.shape[0]
        packed = int4_pack(q.to(torch.int32))
        zero = mn + 8 * step
        scales_zeros = torch.stack([step, zero], dim=-1).transpose(0, 1).contiguous().to(dtype)
        self.register_buffer("packed", packed, persistent=False)
        self.register_buffer("scales_zeros", scales_zeros, persistent=False)
        groups = self.in_features // INT4_GROUP
        weight = (mn.unsqueeze(-1) + q.reshape(self.out_features, groups, INT4_GROUP).float()
                  * step.unsqueeze(-1)).reshape(self.out_features, self.in_features)
        self.register_buffer("dense", weight.to(dtype), persistent=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(dtype),
                                                           requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if in_prefill():
            return linear_rows(x, self.dense, self.bias)
        shape = x.shape
        out = int4_matmul(x.reshape(-1, shape[-1]), self.packed, self.scales_zeros)
        out = out.reshape(*shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias


class Int8GridLinear(nn.Module):
    """A linear layer whose weight lies on an 8-bit grid (GGUF Q8_0), such as the embedded
    model's lm_head: its tied token embedding, 49152 x 576, the largest single read of a decode
    step (56 MB in bf16, against ~66 MB for all 210 int4 layers together).

    torch has no CPU kernel for int8 weights with group scales (`_weight_int8pack_mm` takes one
    scale per output row), so each weight is split into two 4-bit halves, q + 128 = 16 hi + lo,
    and the int4 kernel runs once over the input written twice, [x, x]: hi groups with scale
    16 d and zero 8 d, lo groups with scale d and zero 0, which sums to d * q exactly (the
    kernel computes (nibble - 8) * scale + zero). That reads half the bytes of bf16, with the
    same order of rounding (d in bf16, per group, instead of every weight in bf16). A README
    decode step took 5-13% less time with it (old and new code alternating). Prefill uses
    `weight`, the dense one (for a tied head it is the embedding's own Parameter, not a copy,
    and stays tied); every decode step the int4 kernel (`linear_rows` says why). Measured for
    the embedded model's lm_head (bf16, weights in cache, one thread): 1 row 3.2 ms against
    6.7 ms dense, 4 rows even, 16 rows 23 ms against 7, so a step of many rows pays for the
    kernel's time growing with the rows."""

    packed: torch.Tensor
    scales_zeros: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, q: torch.Tensor,
                 d: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.weight = weight
        self.bias = bias
        shifted = q.to(torch.int32) + 128  # 1..255
        packed = [int4_pack(torch.cat((part >> 4, part & 15), dim=1))
                  for part in shifted.split(4096)]  # int32 copies of 4,096 rows at a time
        self.register_buffer("packed", torch.cat(packed), persistent=False)
        scales = torch.cat((16 * d, d), dim=1)
        zeros = torch.cat((8 * d, torch.zeros_like(d)), dim=1)
        self.register_buffer("scales_zeros", torch.stack((scales, zeros), dim=-1)
                             .transpose(0, 1).contiguous().to(dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if in_prefill():
            return linear_rows(x, self.weight, self.bias)
        flat = x.reshape(-1, self.in_features)
        out = int4_matmul(torch.cat((flat, flat), dim=-1), self.packed, self.scales_zeros)
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias
