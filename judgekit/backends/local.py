"""In-process Hugging Face transformers backend (local directories and GGUF files; no hub).

k samples of one prompt are generated in ONE batched `generate` call (shared prompt,
`num_return_sequences=k`). When free text does not parse, `complete_under_grammar` completes
the final scores line under an xgrammar grammar. torch and transformers errors are mapped to
`LocalModelError` here, at the boundary, so the sampler records them like any failed call.
Why xgrammar: it ships a transformers logits processor,
compiles a tiny EBNF in milliseconds, and runs on CPU; outlines pulls a much larger stack and
llguidance has no maintained transformers processor.
"""

from __future__ import annotations

import asyncio
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
from judgekit.errors import LocalModelError, MissingDependencyError, ModelSpecError
from judgekit.schema import Message, Usage

# What counts as a failure of the in-process model (rather than a bug in judgekit): torch raises
# RuntimeError (out of memory, shape and device errors), transformers ValueError and OSError.
_MODEL_FAILURES = (RuntimeError, ValueError, OSError, MemoryError)


def _pick_device_dtype(device: str | None, dtype: str | None) -> tuple[str, Any]:
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    return device, torch_dtype


class TransformersBackend(Backend):
    """A local causal LM. Loading is lazy (first call) and generation is serialised by a lock:
    one model, one generate at a time; concurrency comes from batching samples."""

    CAPABILITIES = BackendCapabilities(batched=True, grammar=True, complete_under_grammar=True,
                                       logprobs=True)

    def __init__(self, model_path: str | Path, *, gguf_file: str | None = None,
                 spec: str | None = None, device: str | None = None, dtype: str | None = None,
                 allow_download: bool = False) -> None:
        self.model_path = str(model_path)
        self.gguf_file = gguf_file
        self._spec = spec or f"hf:{model_path}"
        self._device_arg = device
        self._dtype_arg = dtype
        self.allow_download = allow_download
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._grammars: dict[str, Any] = {}

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
            try:
                import torch  # noqa: F401
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise MissingDependencyError("transformers", "local") from exc
            device, dtype = _pick_device_dtype(self._device_arg, self._dtype_arg)
            local_only = not self.allow_download or os.environ.get("HF_HUB_OFFLINE") == "1"
            kw: dict[str, Any] = {"local_files_only": local_only}
            if self.gguf_file:
                kw["gguf_file"] = self.gguf_file
            try:
                tok = AutoTokenizer.from_pretrained(self.model_path, **kw)
                model: Any = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype,
                                                                  **kw)
            except OSError as exc:
                raise ModelSpecError(f"cannot load local model {self._spec!r}: {exc}") from exc
            model.to(device)
            model.eval()
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            tok.padding_side = "left"
            self._device = device
            self._tokenizer = tok
            self._model = model

    @property
    def tokenizer(self) -> Any:
        self._ensure_loaded()
        return self._tokenizer

    @property
    def model(self) -> Any:
        self._ensure_loaded()
        return self._model

    def _prompt_text(self, messages: list[Message]) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text: str = tok.apply_chat_template(messages, tokenize=False,
                                                add_generation_prompt=True)
            return text
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant: "

    # -- generation ---------------------------------------------------------------------------
    async def generate(self, messages: list[Message], config: GenerationConfig,
                       n: int = 1) -> GenerationResult:
        return await asyncio.to_thread(self._mapped, self.generate_sync, messages, config, n)

    async def generate_many(self, requests: list[GenerationRequest],
                            config: GenerationConfig) -> list[GenerationOutcome]:
        """Several prompts (e.g. one item's permutations), n samples each, in ONE generate call.
        A failure of that call is every request's outcome."""
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
        return self.generate_many_sync([(messages, n)], config)[0]

    def generate_many_sync(self, requests: list[tuple[list[Message], int]],
                           config: GenerationConfig) -> list[GenerationResult]:
        import torch

        self._ensure_loaded()
        tok, model = self._tokenizer, self._model
        greedy = config.temperature == 0.0
        prompts = [self._prompt_text(m) for m, _ in requests]
        # Greedy samples of one prompt are identical: decode each prompt once and copy.
        rows = [1 if greedy else max(n, 1) for _, n in requests]
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
        for (_, n), r in zip(requests, rows, strict=True):
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
        scores line), greedily, all prefixes in one batched call."""
        import torch
        from xgrammar.contrib.hf import LogitsProcessor

        self._ensure_loaded()
        tok, model = self._tokenizer, self._model
        prompt = self._prompt_text(messages)
        texts = [prompt + p.rstrip() + "\n" for p in prefixes]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self._device)
        width = int(enc["input_ids"].shape[1])
        processor = LogitsProcessor(self._compiled(grammar))
        with self._gen_lock, torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=min(config.max_tokens, 64), do_sample=False,
                                 logits_processor=[processor], pad_token_id=tok.pad_token_id)
        completions = []
        completion_tokens = 0
        for row in out[:, width:]:
            ids = [t for t in row.tolist() if t not in (tok.pad_token_id, tok.eos_token_id)]
            completion_tokens += len(ids)
            completions.append(Completion(text=tok.decode(ids, skip_special_tokens=True),
                                          finish_reason="forced"))
        prompt_tokens = int(enc["attention_mask"].sum())
        return GenerationResult(completions=completions, usage=Usage(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, calls=1,
            cost_usd=0.0))

    async def aclose(self) -> None:
        """Nothing to release eagerly; the model is freed with the backend."""
        return None
