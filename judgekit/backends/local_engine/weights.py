"""Weights in the cheapest exact form this CPU runs well: the engine's dtype, and the re-pack
of weights that lie exactly on a 4-bit (GGUF Q4_0/Q4_1) or 8-bit (Q8_0) grid for torch's int4
kernel (`optimize_model`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from judgekit.backends.local_engine.internals import INT4_GROUP, int4_kernel_works, swap_class
from judgekit.backends.local_engine.matmul import Int4Linear, Int8GridLinear, RowBlockedLinear

INT4_PACK_ROWS = 16
"""torch's int4 CPU packing takes only output dims that are a multiple of this (it raises
otherwise); such a layer stays dense."""


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes in bf16 natively (AVX512-BF16 or AMX-BF16) and ATen runs its
    AVX-512 kernels. Without it torch emulates bf16 and fp32 is faster, so the engine falls back
    to fp32. ATen's kernels count as well as the CPU's flags: with `ATEN_CPU_CAPABILITY=avx2` on a
    Xeon with AMX, torch 2.11's bf16 flash attention raised "pack_vnni2 is only supported when
    avx512 is supported" (docs/benchmark-figures.md, the first GPU run)."""
    if not torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def pick_engine_dtype(requested: str | None) -> torch.dtype:
    """bf16 where the CPU has native bf16 (measured here: a batch of 4 decodes 1.3x, of 8 1.9x
    faster than fp32; halves the bytes of the weights that are not int4); otherwise fp32."""
    if requested not in (None, "auto"):
        dtype = getattr(torch, str(requested), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown dtype {requested!r}")
        return dtype
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def int4_pays(dtype: torch.dtype) -> bool:
    """Whether re-packing 4-bit weights for torch's int4 kernel speeds decoding up in `dtype`
    (what `int4=None` means). Only in bf16: the kernel has no fast fp32 path. Measured here
    (1 row, 1 thread, one 3072 x 576 projection): 102 us in bf16, 2,986 us in fp32, against
    323 us for the dense fp32 matmul; a README decode step took 129 ms in fp32 with int4
    against 50 ms dense. So an fp32 engine (a CPU without native bf16) keeps dense weights
    unless int4 is asked for explicitly."""
    return dtype == torch.bfloat16


GroupSolver = Callable[[torch.Tensor], "tuple[torch.Tensor, ...] | None"]
"""Solves one row chunk of a weight, [rows, groups, 32] in fp32, for its grid: per-group
tensors, the first [rows, groups, 32], the others [rows, groups]; None when off the grid."""


def _grid_in_row_chunks(weight: torch.Tensor, solve: GroupSolver) -> tuple[torch.Tensor, ...] | None:
    """Run `solve` over `weight` [out, in] as groups of `INT4_GROUP` inputs, in row chunks that
    stay in cache (a whole-matrix pass is several times slower); the chunks' results joined,
    the first reshaped to [out, in]. None when any chunk is off the grid, or when torch's int4
    packing would not take the shape (`INT4_PACK_ROWS`)."""
    out_f, in_f = weight.shape
    if in_f % INT4_GROUP or out_f % INT4_PACK_ROWS:
        return None
    groups = in_f // INT4_GROUP
    w_all = weight.detach().reshape(out_f, groups, INT4_GROUP)
    parts: list[tuple[torch.Tensor, ...]] = []
    for lo in range(0, out_f, chunk := max(1, 8192 // groups)):
        solved = solve(w_all[lo:lo + chunk].float())
        if solved is None:
            return None
        parts.append(solved)
    first, *rest = (torch.cat(column) for column in zip(*parts, strict=True))
    return (first.reshape(out_f, in_f), *rest)


def int4_grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """If every group of 32 input weights of `weight` [out, in] takes values mn + q*step with
    integer q in 0..15 (GGUF Q4_0/Q4_1 dequantised), return (q, step, mn) per group; else None."""
    found = _grid_in_row_chunks(weight, _solve_int4)
    if found is None:
        return None
    q, step, mn = found
    return q, step, mn


def _solve_int4(w: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    mn = w.amin(-1, keepdim=True)
    span = w.amax(-1, keepdim=True) - mn
    tol = 1e-5 * span
    solved = span == 0  # a constant group: q = 0, step = 0
    q = torch.zeros_like(w)
    step = torch.zeros_like(mn)
    for levels in range(15, 0, -1):  # Q4_1 spans all 16 levels; Q4_0 groups may use fewer
        s = span / levels
        qk = ((w - mn) / torch.where(solved, 1.0, s)).round_()
        exact = ((torch.addcmul(mn, qk, s) - w).abs() <= tol).all(-1, keepdim=True)
        exact &= ~solved
        if bool(exact.any()):
            q = torch.where(exact, qk, q)
            step = torch.where(exact, s, step)
            solved |= exact
        if bool(solved.all()):
            return q.to(torch.uint8), step.squeeze(-1), mn.squeeze(-1)
    return None


def int8_grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """If every group of 32 input weights of `weight` [out, in] is d * q with integer q in
    -127..127 and d = the group's max |w| / 127 (GGUF Q8_0 dequantised), return (q as int8,
    d per group [out, groups]); else None."""
    found = _grid_in_row_chunks(weight, _solve_int8)
    if found is None:
        return None
    q, d = found
    return q, d


def _solve_int8(w: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    amax = w.abs().amax(-1, keepdim=True)
    d = amax / 127
    q = (w / torch.where(d == 0, 1.0, d)).round_()
    if not bool(((q * d - w).abs() <= 1e-6 * amax).all()):
        return None
    return q.to(torch.int8), d.squeeze(-1)


def optimize_model(model: Any, dtype: torch.dtype, *, int4: bool) -> dict[str, int]:
    """Cast the model to `dtype` and, with `int4`, re-pack every linear layer whose weights lie
    exactly on a 4-bit grid (lossless up to the bf16 rounding of the group scale and zero, the
    same order as bf16 weights), and in bf16 run those on an 8-bit grid (a Q8_0 lm_head) as
    `Int8GridLinear`. Returns counts for the record."""
    saved = torch.get_num_threads()
    # One thread: these are many small elementwise ops, and with more threads than free cores
    # each op waits on an OpenMP barrier (measured on the shared 2-core machine: 24 ms on 1
    # thread against 1,000 ms on 2 for one 1536 x 576 matrix).
    torch.set_num_threads(1)
    try:
        return _optimize(model, dtype, int4)
    finally:
        torch.set_num_threads(saved)


def _optimize(model: Any, dtype: torch.dtype, int4: bool) -> dict[str, int]:
    counts = {"int4": 0, "int8": 0, "dense": 0}
    repack = int4 and dtype in (torch.bfloat16, torch.float32) and int4_kernel_works(dtype)
    tied = {id(p) for p in model.get_input_embeddings().parameters()}
    counts["fused"] = 0
    for parent in list(model.modules()):
        grids: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            grid = None
            if repack and type(child) is nn.Linear and id(child.weight) not in tied:
                grid = int4_grid(child.weight)
            if grid is None and repack and int4_pays(dtype) and type(child) is nn.Linear:
                grid8 = int8_grid(child.weight)
                if grid8 is not None:
                    setattr(parent, name, Int8GridLinear(child.weight, child.bias, *grid8, dtype))
                    counts["int8"] += 1
                    continue
            if grid is None:
                counts["dense"] += 1
                if type(child) is nn.Linear:
                    swap_class(child, RowBlockedLinear)  # same parameters, blocked matmul
                continue
            setattr(parent, name, Int4Linear(*grid, child.bias, dtype))
            counts["int4"] += 1
            if child.bias is None:
                grids[name] = grid
        counts["fused"] += _fuse_projections(parent, grids, dtype)
    model.to(dtype)
    for parent in list(model.modules()):  # after the cast, which would copy views apart
        counts["fused"] += _fuse_dense_projections(parent)
    return counts


FUSED = {"jk_qkv": ("q_proj", "k_proj", "v_proj"), "jk_gate_up": ("gate_proj", "up_proj")}
"""Decode-only projections that read one input: one int4 matmul instead of two or three."""


def _fuse_projections(parent: nn.Module, grids: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                      dtype: torch.dtype) -> int:
    """Give a Llama-style attention (q/k/v) or MLP (gate/up) module one int4 layer holding its
    projections' rows side by side (`LlamaDecodeStep` uses it; each output row is the same
    dot product as in the separate layer). The separate layers' bf16 copies (prefill's) become
    views of the fused layer's, so the fusion adds no bf16 weights."""
    fused = 0
    for attr, names in FUSED.items():
        if all(n in grids for n in names):
            parts = [grids[n] for n in names]
            q, step, mn = (torch.cat([p[i] for p in parts], dim=0) for i in range(3))
            layer = Int4Linear(q, step, mn, None, dtype)
            parent.add_module(attr, layer)
            separate = [getattr(parent, name) for name in names]
            views = layer.dense.split([part.out_features for part in separate])
            for part, view in zip(separate, views, strict=True):
                part.dense = view
            fused += 1
    return fused


def _fuse_dense_projections(parent: nn.Module) -> int:
    """As `_fuse_projections`, for dense weights (fp32 engines, or a checkpoint not on a 4-bit
    grid): one `RowBlockedLinear` holding the projections' rows side by side, the separate
    layers' weights becoming views of its rows, so no weight is held twice. Without it such a
    model gets no `LlamaDecodeStep` and decodes through transformers' forward. A README decode
    step of the embedded model, old and new code alternating: fp32 37 -> 34 ms (reading the
    fp32 weights bounds it), bf16 dense 38 -> 32 ms."""
    fused = 0
    for attr, names in FUSED.items():
        layers: list[RowBlockedLinear] = []
        for name in names:
            layer = getattr(parent, name, None)
            if isinstance(layer, RowBlockedLinear) and layer.bias is None:
                layers.append(layer)
        if hasattr(parent, attr) or len(layers) < len(names):
            continue
        joined = RowBlockedLinear(layers[0].in_features, sum(x.out_features for x in layers),
                                  bias=False, device="meta")  # its weight is set below
        joined.weight = nn.Parameter(torch.cat([x.weight.detach() for x in layers]),
                                     requires_grad=False)
        parent.add_module(attr, joined)
        views = joined.weight.detach().split([x.out_features for x in layers])
        for part, view in zip(layers, views, strict=True):
            part.weight = nn.Parameter(view, requires_grad=False)
        fused += 1
    return fused
