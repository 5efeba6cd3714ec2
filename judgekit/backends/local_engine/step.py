"""The decode step: which models the engine drives (`engine_supported`), and a Llama decode
step written out (`LlamaDecodeStep`)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from judgekit.backends.local_engine.attention import PrefixRuns, row_attention
from judgekit.backends.local_engine.caches import KV
from judgekit.backends.local_engine.internals import plain_cache_layers


def engine_supported(model: Any) -> str | None:
    """None when the fast engine can drive `model`, else the reason it cannot (the backend then
    uses `generate`): it needs plain full-attention cache layers and a `cache` forward kwarg."""
    reason = plain_cache_layers(model)
    if reason is not None:
        return reason
    params = inspect.signature(model.forward).parameters
    if "cache" not in params and "past_key_values" not in params:
        return "the model's forward takes no cache"
    if "logits_to_keep" not in params:
        return "the model's forward has no logits_to_keep"
    return None


class LlamaDecodeStep:
    """One decode step (one new token per row) of a Llama-architecture model, written out.

    Decoding a 135M model on a CPU is bound by per-op overhead, not arithmetic: transformers'
    forward runs ~65 torch ops per layer plus module hooks, decorators and mask building in
    Python, ~30 ms a token for 30 layers here, where the int4 weights read take ~2 ms. This step
    computes the same function with about half the ops: q/k/v and gate/up each as one int4 matmul
    (`_fuse_projections`), RoPE on q and k together, and no mask (each row's keys start
    where the engine says, `row_attention`). Used only for decode steps and only when the
    model is exactly the Llama layout it knows (`for_model`); prefill always runs
    transformers' own forward."""

    def __init__(self, model: Any) -> None:
        inner = model.model
        cfg = model.config
        self.model = model
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.layers = list(inner.layers[:cfg.num_hidden_layers])
        self.norm = inner.norm
        self.lm_head = model.lm_head
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = self.layers[0].self_attn.head_dim
        self.hidden = cfg.hidden_size

    @classmethod
    def for_model(cls, model: Any) -> LlamaDecodeStep | None:
        """The step when `model` is a plain LlamaForCausalLM whose projections were fused."""
        try:
            from transformers import LlamaForCausalLM
            from transformers.models.llama.modeling_llama import (
                LlamaDecoderLayer,
                LlamaRMSNorm,
            )
        except ImportError:
            return None
        cfg = model.config
        if type(model) is not LlamaForCausalLM or cfg.hidden_act != "silu":
            return None
        rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
        if rope.get("rope_type", "default") != "default":
            return None  # dynamic RoPE variants update themselves inside transformers' forward
        for layer in model.model.layers:
            if (type(layer) is not LlamaDecoderLayer
                    or type(layer.input_layernorm) is not LlamaRMSNorm
                    or not hasattr(layer.self_attn, "jk_qkv")
                    or not hasattr(layer.mlp, "jk_gate_up")
                    or getattr(layer.self_attn.o_proj, "bias", None) is not None
                    or getattr(layer.mlp.down_proj, "bias", None) is not None):
                return None
        return cls(model)

    @staticmethod
    def _rms(norm: Any, x: torch.Tensor) -> torch.Tensor:
        # as LlamaRMSNorm: normalise in fp32, cast back, then scale (its rounding, fewer ops)
        y = nn.functional.rms_norm(x.float(), (x.shape[-1],), eps=norm.variance_epsilon)
        out: torch.Tensor = norm.weight * y.to(x.dtype)
        return out

    def __call__(self, ids: torch.Tensor, cache: Any, positions: torch.Tensor,
                 starts: Sequence[int], jk_prefix: KV | PrefixRuns | None = None) -> torch.Tensor:
        """ids and positions [rows, 1]; row r's own keys start at column starts[r] of the
        cache, and `jk_prefix` holds the prefixes rows share (see `row_attention`). The logits
        [rows, vocab]."""
        rows = ids.shape[0]
        hq, hkv, d = self.heads, self.kv_heads, self.head_dim
        x = self.embed(ids)
        cos, sin = self.rotary(x, positions)
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # [rows, 1, 1, d]: over heads
        half = d // 2
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            qkv = attn.jk_qkv(self._rms(layer.input_layernorm, x)).view(rows, 1, hq + 2 * hkv, d)
            qk, v = qkv[:, :, :hq + hkv], qkv[:, :, hq + hkv:]
            rotated = torch.cat((-qk[..., half:], qk[..., :half]), dim=-1)
            qk = qk * cos + rotated * sin
            q = qk[:, :, :hq].transpose(1, 2)
            keys, values = cache.layers[i].update(qk[:, :, hq:].transpose(1, 2),
                                                  v.transpose(1, 2))
            out = row_attention(q, keys, values, starts, jk_prefix, i, attn.scaling)
            x = x + attn.o_proj(out.reshape(rows, 1, hq * d))
            mlp = layer.mlp
            gate, up = mlp.jk_gate_up(self._rms(layer.post_attention_layernorm, x)).chunk(2, -1)
            x = x + mlp.down_proj(nn.functional.silu(gate) * up)
        logits: torch.Tensor = self.lm_head(self._rms(self.norm, x))
        return logits[:, -1, :].float()
