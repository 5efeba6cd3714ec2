"""Every private torch and transformers internal the engine uses, behind public names, and the
self-check that runs them at load.

Why one module: these are the parts a torch or transformers upgrade may change without notice
(private ops, cache-layer internals, an in-place class swap). Kept here, an upgrade is checked
in one place, and `self_check` finds out before a judgement does: when a check fails, the
backend says so once (a warning in the log) and uses the plain transformers `generate` path
(`TransformersBackend(fast=False)`'s), which needs none of them. The optional int4 kernel is
checked on its own (`int4_kernel_works`): without it the engine keeps dense weights.

The internals:
- torch: `_convert_weight_to_int4pack_for_cpu` and `_weight_int4pack_mm_for_cpu` (the int4
  weight-only CPU kernel, torch >= 2.5), `ops.aten._scaled_dot_product_flash_attention_for_cpu`
  (flash attention that also returns the log-sum-exp);
- transformers: `DynamicLayer` subclassed as a cache layer over preallocated buffers,
  `DynamicCache.layers` / `layer_class_to_replicate` set by hand, `sdpa_attention_forward`, the
  attention and mask interfaces;
- `module.__class__ = ...`: an `nn.Linear` turned into a subclass in place, parameters kept.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

log = logging.getLogger("judgekit.backends.local_engine")

INT4_GROUP = 32
"""Group size of the int4 re-pack: GGUF Q4_0/Q4_1 blocks are 32 weights along the input dim."""


# -- torch ------------------------------------------------------------------------------------
def int4_pack(q: torch.Tensor) -> torch.Tensor:
    """Pack integer weights q in 0..15, [out, in] int32, for `int4_matmul`."""
    packed: torch.Tensor = torch._convert_weight_to_int4pack_for_cpu(q.contiguous(), 1)
    return packed


def int4_matmul(x: torch.Tensor, packed: torch.Tensor, scales_zeros: torch.Tensor) -> torch.Tensor:
    """x [rows, in] times the packed weight: w = (q - 8) * scale + zero per group of
    `INT4_GROUP` inputs (`scales_zeros` [groups, out, 2])."""
    out: torch.Tensor = torch._weight_int4pack_mm_for_cpu(x, packed, INT4_GROUP, scales_zeros)
    return out


def flash_attention(q: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    scaling: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q [batch, heads, queries, dim] over key/value [batch, heads, keys, dim]:
    the output and the log-sum-exp per query (which sdpa does not return)."""
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    out, lse = flash(q, key, value, 0.0, False, scale=scaling)
    return out, lse


def swap_class(module: nn.Module, cls: type[nn.Module]) -> None:
    """Make `module` an instance of `cls`, a subclass of its class adding no state: same
    parameters, same buffers, other methods."""
    assert issubclass(cls, type(module))
    module.__class__ = cls


# -- transformers -----------------------------------------------------------------------------
def _cache_classes() -> tuple[Any, Any]:
    from transformers.cache_utils import DynamicCache, DynamicLayer

    return DynamicCache, DynamicLayer


def cache_keyword(model: Any) -> str:
    """The keyword under which the model's forward takes its KV cache: `cache` in recent
    transformers 5.x, `past_key_values` before (5.17 ignores `cache=` silently, so passing the
    wrong one runs the step without its cache)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def plain_cache_layers(model: Any) -> str | None:
    """None when every cache layer transformers would make for `model` is a plain full-attention
    `DynamicLayer` (what `row_buffer` replaces), else why not."""
    DynamicCache, DynamicLayer = _cache_classes()
    try:
        layers = DynamicCache(config=model.config).layers
    except Exception as exc:
        return f"no DynamicCache for this model ({exc})"
    if any(type(layer) is not DynamicLayer for layer in layers):
        return "the model has sliding-window or recurrent cache layers"
    return None


@functools.cache
def _row_buffer_class() -> type:
    """The cache layer class, made once. (Made per layer, as a closure over its tensors, every
    class object held its first buffers: classes live in reference cycles, so those buffers
    waited for the cyclic garbage collector, and a run that rebuilds its batch often held
    gigabytes of dead KV buffers; measured.)"""
    _, DynamicLayer = _cache_classes()

    class RowBuffer(DynamicLayer):  # type: ignore[misc,valid-type]
        def __init__(self, kbuf: torch.Tensor, vbuf: torch.Tensor, length: int) -> None:
            super().__init__()
            self.kbuf, self.vbuf, self.length = kbuf, vbuf, length
            self.dtype, self.device = kbuf.dtype, kbuf.device
            self.is_initialized = True
            self._views()

        def _views(self) -> None:
            self.keys = self.kbuf[:, :, :self.length]
            self.values = self.vbuf[:, :, :self.length]

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            n = key_states.shape[-2]
            if self.length + n > self.kbuf.shape[2]:
                self.reserve(max(self.length + n, 2 * self.kbuf.shape[2]))
            self.kbuf[:, :, self.length:self.length + n] = key_states
            self.vbuf[:, :, self.length:self.length + n] = value_states
            self.length += n
            self._views()
            return self.keys, self.values

        def reserve(self, capacity: int) -> None:
            """Room for `capacity` positions (the filled part kept)."""
            if capacity > self.kbuf.shape[2]:
                self.kbuf, self.vbuf = (self._grown(b, capacity) for b in (self.kbuf, self.vbuf))
                self._views()

        def _grown(self, buf: torch.Tensor, capacity: int) -> torch.Tensor:
            """`buf` copied into a buffer of `capacity` positions (its filled part kept)."""
            new = buf.new_empty((buf.shape[0], buf.shape[1], capacity, buf.shape[3]))
            new[:, :, :self.length] = buf[:, :, :self.length]
            return new

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self.kbuf = self.kbuf.index_select(0, indices)
            self.vbuf = self.vbuf.index_select(0, indices)
            self._views()

    return RowBuffer


def row_buffer(kbuf: torch.Tensor, vbuf: torch.Tensor, length: int) -> Any:
    """A transformers cache layer over preallocated buffers [batch, kv_heads, capacity, dim]
    whose first `length` positions are filled: `update` writes in place and returns views, and
    `reserve(capacity)` makes room."""
    return _row_buffer_class()(kbuf, vbuf, length)


def cache_over(layers: list[Any]) -> Any:
    """A transformers DynamicCache made of these layers (`row_buffer`s)."""
    DynamicCache, _ = _cache_classes()
    cache = DynamicCache()
    cache.layers = layers
    cache.layer_class_to_replicate = None
    return cache


def sdpa_forward(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """transformers' own sdpa attention function."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out: tuple[torch.Tensor, Any] = sdpa_attention_forward(module, query, key, value,
                                                           attention_mask, **kwargs)
    return out


def register_attention(model: Any, name: str, forward: Callable[..., Any]) -> bool:
    """Route `model`'s attention (an sdpa model's) through `forward`, registered as `name`
    with sdpa's mask. False when this transformers cannot."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(name, forward)
        AttentionMaskInterface.register(name, sdpa_mask)
        model.set_attn_implementation(name)
    except Exception:  # an older or newer transformers: plain attention
        return False
    return bool(model.config._attn_implementation == name)


# -- checks -----------------------------------------------------------------------------------
@functools.cache
def int4_kernel_works(dtype: torch.dtype) -> bool:
    """True when this torch build has the int4 weight-only CPU kernel, it computes a small
    product correctly in `dtype`, and it computes each row on its own (a row alone gives the
    bits it gives among others: batch invariance, see `linear_rows`). Checked by running it,
    once per dtype: without it (an older torch, a build without the kernel) the engine keeps
    dense weights, which is slower but exact. The kernel has AVX512, AVX2 and scalar paths, so
    no CPU flag is needed."""
    try:
        g = torch.Generator().manual_seed(0)
        q = torch.randint(0, 16, (16, 64), generator=g, dtype=torch.int32)
        step = torch.rand((16, 2), generator=g) * 0.1 + 0.01
        mn = torch.randn((16, 2), generator=g) * 0.1
        scales_zeros = torch.stack([step, mn + 8 * step], dim=-1).transpose(0, 1).contiguous()
        dense = (mn.repeat_interleave(INT4_GROUP, 1) + q.float() * step.repeat_interleave(
            INT4_GROUP, 1))
        packed = int4_pack(q)
        x = torch.randn((5, 64), generator=g)
        ref = x @ dense.t()
        out = int4_matmul(x.to(dtype), packed, scales_zeros.to(dtype)).float()
        ok = bool((out - ref).norm() <= 2e-2 * ref.norm())
        return ok and all(torch.equal(int4_matmul(x[r:r + 1].to(dtype), packed,
                                                  scales_zeros.to(dtype)).float(), out[r:r + 1])
                          for r in range(5))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _check_flash() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 8, generator=g) for n in (4, 6, 6))
    out, lse = flash_attention(q, k, v, 0.5)
    scores = (q @ k.transpose(-1, -2)) * 0.5
    ref = torch.softmax(scores, -1) @ v
    if not (torch.allclose(out, ref, atol=1e-5)
            and torch.allclose(lse.reshape(1, 2, 4), torch.logsumexp(scores, -1), atol=1e-5)):
        raise RuntimeError("flash attention gives other numbers than softmax(q k^T) v")


def _check_cache() -> None:
    kbuf = torch.zeros(1, 1, 4, 2)
    layer = row_buffer(kbuf, torch.zeros(1, 1, 4, 2), 1)
    cache = cache_over([layer])
    keys, _ = cache.layers[0].update(torch.ones(1, 1, 2, 2), -torch.ones(1, 1, 2, 2))
    if not (keys.shape[2] == 3 and cache.get_seq_length() == 3 and kbuf[0, 0, 2, 0] == 1.0):
        raise RuntimeError("the cache layer over buffers does not write in place")
    layer.reserve(8)
    if layer.kbuf.shape[2] != 8 or not torch.equal(layer.keys, keys):
        raise RuntimeError("the cache layer over buffers does not grow")


def _check_class_swap() -> None:
    class Probe(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + 1

    layer = nn.Linear(2, 2)
    weight, bias = layer.weight, layer.bias
    x = torch.ones(1, 2)
    swap_class(layer, Probe)
    if (layer.weight is not weight or layer.bias is not bias
            or not torch.equal(layer(x), nn.functional.linear(x, weight, bias) + 1)):
        raise RuntimeError("an in-place class swap does not keep the parameters")


CHECKS: dict[str, Callable[[], None]] = {
    "flash attention (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)": _check_flash,
    "cache layers over buffers (transformers DynamicLayer / DynamicCache)": _check_cache,
    "in-place class swap of nn.Linear": _check_class_swap,
}


@functools.cache
def self_check() -> str | None:
    """None when every internal the fast engine needs is there and gives the expected numbers
    on small tensors, else what failed. Runs once a process (the first fast backend's load);
    a failure is logged once, as a warning."""
    for name, check in CHECKS.items():
        try:
            with torch.no_grad():
                check()
        except Exception as exc:
            reason = f"{name} failed its self-check: {exc}"
            log.warning("fast local engine off, using transformers generate: %s", reason)
            return reason
    return None
