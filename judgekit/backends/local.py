"""In-process Hugging Face transformers backend (local directories and GGUF files; no hub).

k samples of one prompt are generated in ONE batched call. When free text does not parse,
`complete_under_grammar` completes the final scores line under an xgrammar grammar. torch and
transformers errors are mapped to `LocalModelError` here, at the boundary, so the sampler records
them like any failed call; a prompt that does not fit the model's context is refused before any
generation with `ContextLengthError` (fatal: never retried).

Two engines, chosen by `fast` (default True):
- fast: `judgekit.backends.local_engine` drives the model's forward pass itself, with a prefix
  KV cache shared by every item and sample, the k rows of a prompt decoded from one prefill,
  lossless int4 re-packing of 4-bit (GGUF Q4) weights and 8-bit (Q8_0) ones and bf16
  elsewhere where the CPU has native bf16 (fp32 and dense weights otherwise), and torch thread
  counts measured for prefill and decoding (see `ThreadTuner`).
- `fast=False`: the previous path, `model.generate` in fp32 with the prompt re-read for every
  row; kept as the reference for benchmarks and for models the fast engine cannot drive
  (sliding-window or recurrent caches, or a CUDA device).

Why xgrammar: it ships a transformers logits processor (used by the `generate` path; the fast
engine uses its GrammarMatcher directly), compiles a tiny EBNF in milliseconds, and runs on CPU;
outlines pulls a much larger stack and llguidance has no maintained transformers processor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any

from judgekit.backends.base import (
    Backend,
    BackendCapabilities,
    Completion,
    GenerationOutcome,
    GenerationRequest,
    GenerationResult,
    TokenLogprob,
)
from judgekit.config import GenerationConfig
from judgekit.errors import (
    BackendError,
    ContextLengthError,
    LocalModelError,
    MissingDependencyError,
    ModelSpecError,
)
from judgekit.quiet import quiet_model_loading
from judgekit.schema import Message, Usage

log = logging.getLogger(__name__)

# What counts as a failure of the in-process model (rather than a bug in judgekit): torch raises
# RuntimeError (out of memory, shape and device errors), transformers ValueError and OSError.
_MODEL_FAILURES = (RuntimeError, ValueError, OSError, MemoryError)

FORCED_LINE_MAX_TOKENS = 64
"""Upper bound on the tokens of a scores line completed under a grammar."""

LOCAL_CUTOFF_REASONS = frozenset({"length"})
"""A local model's one cut-off: it stopped on `max_tokens` before its end-of-sequence token."""


def _pick_device_dtype(device: str | None, dtype: str | None) -> tuple[str, Any]:
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    return device, torch_dtype


def context_window(config: Any, tokenizer: Any = None) -> int | None:
    """The model's context length in tokens (config max_position_embeddings or its aliases)."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length",
                 "n_ctx"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**7:
        return limit
    return None


class TransformersBackend(Backend):
    """A local causal LM, loaded lazily (first call).

    On the fast engine, concurrent calls (the judge's items in flight) decode together in one
    batch (`co_batch`, default on; see `DecodeEngine`); the `fast=False` path (`model.generate`)
    runs one call at a time.

    `fast=False` gives the previous engine (fp32 `generate`, no prefix cache). With `fast=True`:
    `prefix_cache` (default on) keeps the KV of prompt prefixes in an LRU of
    `prefix_cache_mb`; `dtype` None picks bf16 where the CPU has native bf16, else fp32;
    `int4` None re-packs weights that are exactly 4-bit (GGUF Q4) or 8-bit (Q8_0) for the int4
    kernel, lossless, in bf16 only (in fp32 that kernel is slower than dense, see `int4_pays`);
    `threads` None measures 1 thread against torch's default while decoding and keeps the
    faster, an int fixes the count. `co_batch=False` runs calls one after another, slower with
    several in flight; either way a call's tokens do not depend on what else runs at the same
    time (the engine's decoding is batch-invariant, see `linear_rows`).
    """

    CAPABILITIES = BackendCapabilities(batched=True, grammar=True, complete_under_grammar=True,
                                       logprobs=True, cutoff_reasons=LOCAL_CUTOFF_REASONS)

    def __init__(self, model_path: str | Path, *, gguf_file: str | None = None,
                 spec: str | None = None, device: str | None = None, dtype: str | None = None,
                 allow_download: bool = False, fast: bool = True, prefix_cache: bool = True,
                 prefix_cache_mb: int = 128, int4: bool | None = None,
                 threads: int | None = None, co_batch: bool = True) -> None:
        self.model_path = str(model_path)
        self.gguf_file = gguf_file
        self._spec = spec or f"hf:{model_path}"
        self._device_arg = device
        self._dtype_arg = dtype
        self.allow_download = allow_download
        self.fast = fast
        self.prefix_cache = prefix_cache
        self.prefix_cache_mb = prefix_cache_mb
        self.int4 = int4
        self.threads = threads
        self.co_batch = co_batch
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._grammars: dict[str, Any] = {}
        self._engine: Any = None
        self.engine_note = ""
        """Why the fast engine is not used, when it is not (set at load)."""
        self.load_seconds: float | None = None
        self.weights_summary: dict[str, Any] = {}

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> TransformersBackend:
        """'embedded', 'hf:<dir or cached repo id>' or 'gguf:<file>'."""
        if spec == "embedded":
            from judgekit.embedded import embedded_model_dir

            return cls(embedded_model_dir(), spec="embedded", **kwargs)
        prefix, _, name = spec.partition(":")
        if prefix == "gguf":
            path = Path(name).expanduser()
            if not path.is_file():
                raise ModelSpecError(f"GGUF file not found: {name}")
            return cls(path.parent, gguf_file=path.name, spec=spec, **kwargs)
        if prefix == "hf":
            path = Path(name).expanduser()
            if path.exists() and not (path / "config.json").is_file():
                raise ModelSpecError(f"{name} is not a Hugging Face model directory "
                                     "(no config.json)")
            return cls(str(path) if path.exists() else name, spec=spec, **kwargs)
        raise ModelSpecError(f"not a local model spec: {spec!r}")

    @property
    def spec(self) -> str:
        return self._spec

    # -- loading -----------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            import time

            start = time.perf_counter()
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise MissingDependencyError("transformers", "local") from exc
            device, dtype = _pick_device_dtype(self._device_arg, self._dtype_arg)
            fast = self.fast and device == "cpu"
            if self.fast and not fast:
                self.engine_note = f"fast engine is CPU-only; {device} uses generate"
            if fast:
                from judgekit.backends.local_engine import self_check

                broken = self_check()  # torch / transformers internals (logged once)
                if broken is not None:
                    fast = False
                    self.engine_note = f"fast engine off ({broken}); using generate"
            if fast:
                from judgekit.backends.local_engine import int4_pays, pick_engine_dtype

                dtype = pick_engine_dtype(self._dtype_arg)
            # The int4 re-pack needs the exact dequantised values: load fp32, then cast.
            int4 = fast and (self.int4 if self.int4 is not None else int4_pays(dtype))
            load_dtype = torch.float32 if int4 else dtype
            local_only = not self.allow_download or os.environ.get("HF_HUB_OFFLINE") == "1"
            kw: dict[str, Any] = {"local_files_only": local_only}
            if self.gguf_file:
                kw["gguf_file"] = self.gguf_file
            try:
                with quiet_model_loading():
                    tok = AutoTokenizer.from_pretrained(self.model_path, **kw)
                    model: Any = AutoModelForCausalLM.from_pretrained(self.model_path,
                                                                      dtype=load_dtype, **kw)
            except OSError as exc:
                raise ModelSpecError(f"cannot load local model {self._spec!r}: {exc}") from exc
            model.to(device)
            model.eval()
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            tok.padding_side = "left"
            self._device = device
            self._tokenizer = tok
            self._engine = None
            if fast:
                self._engine = self._build_engine(model, tok, dtype, int4)
            self._model = model
            self.load_seconds = time.perf_counter() - start

    def _build_engine(self, model: Any, tok: Any, dtype: Any, int4: bool) -> Any:
        from judgekit.backends.local_engine import (
            DecodeEngine,
            ThreadTuner,
            engine_supported,
            optimize_model,
        )

        reason = engine_supported(model)
        if reason is not None:
            self.engine_note = f"fast engine unavailable ({reason}); using generate"
            log.info("%s: %s", self._spec, self.engine_note)
            return None
        counts = optimize_model(model, dtype, int4=int4)
        self.weights_summary = {"dtype": str(dtype).replace("torch.", ""), **counts}
        return DecodeEngine(model, tok, self._stop_ids(model, tok),
                            prefix_cache_bytes=self.prefix_cache_mb << 20,
                            prefix_cache=self.prefix_cache,
                            threads=ThreadTuner(self.threads), co_batch=self.co_batch)

    @staticmethod
    def _stop_ids(model: Any, tok: Any) -> set[int]:
        ids = {tok.eos_token_id, tok.pad_token_id}
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos])
        return {int(i) for i in ids if i is not None}

    @property
    def tokenizer(self) -> Any:
        self._ensure_loaded()
        return self._tokenizer

    @property
    def model(self) -> Any:
        self._ensure_loaded()
        return self._model

    @property
    def engine(self) -> Any:
        """The fast decode engine (None on the `generate` path); loads the model."""
        self._ensure_loaded()
        return self._engine

    def _prompt_text(self, messages: list[Message]) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text: str = tok.apply_chat_template(messages, tokenize=False,
                                                add_generation_prompt=True)
            return text
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant: "

    def _encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def context_length(self) -> int | None:
        """The model's context window in tokens (None when the config does not say)."""
        return context_window(self.model.config, self.tokenizer)

    def check_context(self, prompt_tokens: int, max_tokens: int) -> None:
        """Refuse, before any generation, a prompt that does not leave room for max_tokens."""
        window = self.context_length()
        if window is not None and prompt_tokens + max_tokens > window:
            raise ContextLengthError(
                f"{self._spec}: the prompt has {prompt_tokens} tokens and max_tokens is "
                f"{max_tokens}, {prompt_tokens + max_tokens} in all, but the model's context is "
                f"{window} tokens (max_position_embeddings); shorten the input or lower "
                f"max_tokens to at most {window - prompt_tokens}" if prompt_tokens < window else
                f"{self._spec}: the prompt has {prompt_tokens} tokens, more than the model's "
                f"context of {window} tokens (max_position_embeddings)")

    # -- generation ---------------------------------------------------------------------------
    async def generate(self, messages: list[Message], config: GenerationConfig,
                       n: int = 1) -> GenerationResult:
        return await asyncio.to_thread(self._mapped, self.generate_sync, messages, config, n)

    async def generate_many(self, requests: list[GenerationRequest],
                            config: GenerationConfig) -> list[GenerationOutcome]:
        """Several prompts (e.g. one item's permutations), n samples each, in ONE batched call.
        A prompt too long for the context gets its ContextLengthError in place; a failure of
        the call itself is every request's outcome."""
        try:
            results = await asyncio.to_thread(self._mapped, self.generate_many_sync, requests,
                                              config)
        except LocalModelError as exc:
            return [exc for _ in requests]
        return list(results)

    def _mapped(self, fn: Any, *args: Any) -> Any:
        """Run `fn`, turning torch/transformers failures into LocalModelError (the boundary)."""
        try:
            return fn(*args)
        except (MissingDependencyError, ModelSpecError):
            raise
        except _MODEL_FAILURES as exc:
            raise LocalModelError(f"{self._spec}: {type(exc).__name__}: {exc}") from exc

    def generate_sync(self, messages: list[Message], config: GenerationConfig,
                      n: int = 1) -> GenerationResult:
        outcome = self.generate_many_sync([(messages, n)], config)[0]
        if isinstance(outcome, BackendError):
            raise outcome
        return outcome

    def generate_many_sync(self, requests: list[tuple[list[Message], int]],
                           config: GenerationConfig) -> list[GenerationOutcome]:
        self._ensure_loaded()
        prompts = [self._prompt_text(m) for m, _ in requests]
        ids = [self._encode(p) for p in prompts]
        outcomes: list[GenerationOutcome | None] = [None] * len(requests)
        todo: list[int] = []
        for i, prompt_ids in enumerate(ids):
            try:
                self.check_context(len(prompt_ids), config.max_tokens)
                todo.append(i)
            except ContextLengthError as exc:
                outcomes[i] = exc
        if todo:
            sub = [(requests[i][1], ids[i], prompts[i]) for i in todo]
            if self._engine is not None:
                results = self._generate_fast(sub, config)
            else:
                results = self._generate_hf([p for _, _, p in sub], [n for n, _, _ in sub],
                                            config)
            for i, result in zip(todo, results, strict=True):
                outcomes[i] = result
        return [o for o in outcomes if o is not None]

    # -- the fast engine -----------------------------------------------------------------------
    def _decode_params(self, config: GenerationConfig, max_new: int, grammar: str | None,
                       greedy: bool) -> Any:
        from judgekit.backends.local_engine import DecodeParams

        return DecodeParams(
            max_new_tokens=max_new, temperature=0.0 if greedy else config.temperature,
            top_p=config.top_p, seed=config.seed,
            grammar=self._compiled(grammar) if grammar else None, stop=tuple(config.stop),
            logprobs=config.logprobs, top_logprobs=config.top_logprobs)

    def _generate_fast(self, requests: list[tuple[int, list[int], str]],
                       config: GenerationConfig) -> list[GenerationResult]:
        greedy = config.temperature == 0.0
        # Greedy samples of one prompt are identical: decode each prompt once and copy.
        rows = [1 if greedy else max(n, 1) for n, _, _ in requests]
        params = self._decode_params(config, config.max_tokens, config.grammar, greedy)
        outs = self._engine.generate([ids for _, ids, _ in requests], rows, params)
        tok = self._tokenizer
        stops = self._engine.eos_ids
        results: list[GenerationResult] = []
        for (n, ids, _), row_outs in zip(requests, outs, strict=True):
            completions: list[Completion] = []
            completion_tokens = 0
            for row in row_outs:
                length = next((pos for pos, t in enumerate(row.ids) if t in stops), len(row.ids))
                finish = "length" if length >= config.max_tokens else "stop"
                text = tok.decode(row.ids[:length], skip_special_tokens=True)
                for stop in config.stop:
                    cut = text.find(stop)
                    if cut >= 0:
                        text = text[:cut]
                completion_tokens += len(row.ids)
                logprobs = None
                if config.logprobs:
                    logprobs = [TokenLogprob(token=tok.decode([t]), logprob=lp,
                                             top={tok.decode([i]): v for i, v in top})
                                for t, lp, top in row.logprobs[:max(length, 1)]]
                completions.append(Completion(text=text, finish_reason=finish,
                                              logprobs=logprobs))
            if greedy and n > 1:
                completions = [completions[0].model_copy() for _ in range(n)]
            results.append(GenerationResult(completions=completions, usage=Usage(
                prompt_tokens=len(ids), completion_tokens=completion_tokens, calls=1,
                cost_usd=0.0)))
        return results

    # -- the generate path (fast=False) ------------------------------------------------------
    def _generate_hf(self, prompts: list[str], ns: list[int],
                     config: GenerationConfig) -> list[GenerationResult]:
        import torch

        tok, model = self._tokenizer, self._model
        greedy = config.temperature == 0.0
        # Greedy samples of one prompt are identical: decode each prompt once and copy.
        rows = [1 if greedy else max(n, 1) for n in ns]
        batch_texts = [p for p, r in zip(prompts, rows, strict=True) for _ in range(r)]
        enc = tok(batch_texts, return_tensors="pt", padding=True,
                  add_special_tokens=False).to(self._device)
        width = int(enc["input_ids"].shape[1])
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_tokens,
            "do_sample": not greedy,
            "pad_token_id": tok.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": config.logprobs,
        }
        if not greedy:
            gen_kwargs.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
        if config.stop:
            gen_kwargs.update(stop_strings=list(config.stop), tokenizer=tok)
        if config.grammar:
            from xgrammar.contrib.hf import LogitsProcessor

            gen_kwargs["logits_processor"] = [LogitsProcessor(self._compiled(config.grammar))]
        with self._gen_lock, torch.inference_mode():
            if config.seed is not None:
                torch.manual_seed(config.seed)
            out = model.generate(**enc, **gen_kwargs)
        sequences = out.sequences[:, width:]
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        eos_ids = {tok.eos_token_id, tok.pad_token_id}
        results: list[GenerationResult] = []
        row_i = 0
        for n, r in zip(ns, rows, strict=True):
            completions: list[Completion] = []
            completion_tokens = 0
            prompt_tokens = int(prompt_lens[row_i])
            for _ in range(r):
                ids = sequences[row_i].tolist()
                length = next((pos for pos, t in enumerate(ids) if t in eos_ids), len(ids))
                finish = "length" if length >= config.max_tokens else "stop"
                text = tok.decode(ids[:length], skip_special_tokens=True)
                for stop in config.stop:
                    cut = text.find(stop)
                    if cut >= 0:
                        text = text[:cut]
                completion_tokens += min(length + 1, len(ids))
                logprobs = None
                if config.logprobs and out.logits is not None:
                    logprobs = self._token_logprobs(out.logits, row_i, ids[:max(length, 1)],
                                                    config.top_logprobs)
                completions.append(Completion(text=text, finish_reason=finish,
                                              logprobs=logprobs))
                row_i += 1
            if greedy and n > 1:
                completions = [completions[0].model_copy() for _ in range(n)]
            results.append(GenerationResult(completions=completions, usage=Usage(
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, calls=1,
                cost_usd=0.0)))
        return results

    def _token_logprobs(self, logits: Any, row: int, ids: list[int],
                        top_k: int) -> list[TokenLogprob]:
        import torch

        tok = self._tokenizer
        result: list[TokenLogprob] = []
        for step, token_id in enumerate(ids):
            if step >= len(logits):
                break
            lp = torch.log_softmax(logits[step][row].float(), dim=-1)
            top: dict[str, float] = {}
            if top_k:
                vals, idx = torch.topk(lp, top_k)
                top = {tok.decode([int(i)]): float(v) for v, i in zip(vals, idx, strict=True)}
            result.append(TokenLogprob(token=tok.decode([token_id]), logprob=float(lp[token_id]),
                                       top=top))
        return result

    # -- constrained completion of the scores line --------------------------------------------
    def _compiled(self, grammar: str) -> Any:
        """Compile an EBNF grammar for this tokenizer once (milliseconds, then cached)."""
        if grammar not in self._grammars:
            try:
                import xgrammar as xgr
            except ImportError as exc:  # pragma: no cover
                raise MissingDependencyError("xgrammar", "local") from exc
            info = xgr.TokenizerInfo.from_huggingface(
                self._tokenizer, vocab_size=self._model.config.vocab_size)
            self._grammars[grammar] = xgr.GrammarCompiler(info).compile_grammar(grammar)
        return self._grammars[grammar]

    async def complete_under_grammar(self, messages: list[Message], prefixes: list[str],
                                     grammar: str, config: GenerationConfig) -> GenerationResult:
        return await asyncio.to_thread(self._mapped, self.complete_under_grammar_sync, messages,
                                       prefixes, grammar, config)

    def complete_under_grammar_sync(self, messages: list[Message], prefixes: list[str],
                                    grammar: str, config: GenerationConfig) -> GenerationResult:
        """Continue each prefix on a new line under `grammar` (a short final line such as the
        scores line), greedily, all prefixes in one batched call. On the fast engine the
        prompt's KV comes from the prefix cache (it was just generated from)."""
        self._ensure_loaded()
        prompt = self._prompt_text(messages)
        texts = [prompt + p.rstrip() + "\n" for p in prefixes]
        max_new = min(config.max_tokens, FORCED_LINE_MAX_TOKENS)
        ids = [self._encode(t) for t in texts]
        for prompt_ids in ids:
            self.check_context(len(prompt_ids), max_new)
        tok = self._tokenizer
        drop = {tok.pad_token_id, tok.eos_token_id}
        if self._engine is not None:
            params = self._decode_params(config, max_new, grammar, greedy=True)
            outs = self._engine.generate(ids, [1] * len(ids), params)
            rows = [o[0].ids for o in outs]
        else:
            rows = self._complete_hf(texts, grammar, max_new)
        completions = []
        completion_tokens = 0
        for row in rows:
            kept = [t for t in row if t not in drop]
            completion_tokens += len(kept)
            completions.append(Completion(text=tok.decode(kept, skip_special_tokens=True),
                                          finish_reason="forced"))
        return GenerationResult(completions=completions, usage=Usage(
            prompt_tokens=sum(len(i) for i in ids), completion_tokens=completion_tokens,
            calls=1, cost_usd=0.0))

    def _complete_hf(self, texts: list[str], grammar: str, max_new: int) -> list[list[int]]:
        import torch
        from xgrammar.contrib.hf import LogitsProcessor

        tok, model = self._tokenizer, self._model
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self._device)
        width = int(enc["input_ids"].shape[1])
        processor = LogitsProcessor(self._compiled(grammar))
        with self._gen_lock, torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                 logits_processor=[processor], pad_token_id=tok.pad_token_id)
        return [row.tolist() for row in out[:, width:]]

    async def aclose(self) -> None:
        """Nothing to release eagerly; the model is freed with the backend."""
        return None
