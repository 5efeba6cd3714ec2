"""A first run of judgekit on a GPU (issue 25): the local backend and `judgekit train` on CUDA.

No weights are downloaded: each model is a randomly initialised Llama built from a config, with
the embedded model's tokenizer (49,152 tokens). Random weights judge nothing; they exercise the
same code, shapes and kernels as a trained judge of that size. Sections, each one row of
RESULT json on stdout (and all of them in `--out`/gpu_first_run.json):

  * check:   for a tiny Llama and one of about 0.5B parameters, the local backend's greedy tokens
             and its grammar-forced scores line equal transformers' own `generate` (with
             xgrammar's logits processor for the forced line) on the same device and dtype;
  * speed:   `Judge.score_many` at k=8 through the local backend against plain `generate` of the
             same prompts with 8 sampled rows and the same token budget: judgements/s and
             generated tokens/s (the judge also forces the scores line of unreadable samples);
  * train:   one SFT step and one GRPO step of `judgekit train` with LoRA in bf16 on the device,
             on RFT rows and items written by this script (the subprocesses' exit codes and
             summaries are reported).

    python benchmarks/gpu_first_run.py --out runs/gpu                      # a machine with CUDA
    python benchmarks/gpu_first_run.py --device cpu --quick --out runs/gpu-dry   # CPU dry run

`--tokenizer DIR` names a folder with the tokenizer files (default: the embedded model's, which
judgekit writes out of its GGUF on first use). On CUDA the local backend runs transformers'
`generate` (the fast engine is CPU-only), so `check` compares judgekit's prompt building,
batching, decoding and grammar plumbing with a direct call of the same library.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIZES: dict[str, dict[str, int]] = {
    # ~0.4M parameters besides the embedding: a few milliseconds a step.
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2},
    # 28 x 15.7M + 50M tied embedding = about 0.49B parameters.
    "0.5b": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 28,
             "num_attention_heads": 16, "num_key_value_heads": 8},
}
ITEMS = [
    ("Give me one tip for learning a new language.",
     ["Practise a little every day: fifteen minutes of daily review beats one long weekly "
      "session.", "Languages are hard."]),
    ("How do I boil an egg?", ["Put it in boiling water for 8 minutes, then into cold water.",
                              "Eggs are tasty."]),
    ("What is the capital of Australia?", ["Canberra.", "Sydney, the largest city."]),
    ("Name a prime number above 10.", ["11", "12"]),
]
RESULTS: list[dict[str, Any]] = []


def emit(**row: Any) -> None:
    RESULTS.append(row)
    print("RESULT " + json.dumps(row), flush=True)


def tokenizer_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    from judgekit.embedded import embedded_model_dir

    return Path(embedded_model_dir())


def build_model(size: str, tok_dir: Path, root: Path, dtype: Any) -> Path:
    """A random Llama of `size`, saved as a plain model folder with the tokenizer beside it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         **SIZES[size])
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(dtype)
    out = root / f"llama-{size}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    emit(section="model", size=size, parameters=params, dtype=str(dtype).replace("torch.", ""))
    return out


def reference_ids(model: Any, tok: Any, text: str, device: str, max_new: int,
                  processor: Any = None) -> list[int]:
    """transformers' own greedy `generate` on one prompt (no padding), the new tokens only."""
    import torch

    enc = tok(text, return_tensors="pt", add_special_tokens=False).to(device)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": False,
                              "pad_token_id": tok.pad_token_id}
    if processor is not None:
        kwargs["logits_processor"] = [processor]
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs)
    return [int(t) for t in out[0, enc["input_ids"].shape[1]:]]


def until_stop(ids: list[int], stops: set[int]) -> list[int]:
    return ids[:next((i for i, t in enumerate(ids) if t in stops), len(ids))]


def check(size: str, model_dir: Path, device: str, max_new: int) -> None:
    """Greedy tokens and the forced scores line: judgekit's local backend against `generate`."""
    import xgrammar as xgr
    from xgrammar.contrib.hf import LogitsProcessor

    from judgekit import GenerationConfig
    from judgekit.backends.local import TransformersBackend
    from judgekit.parsing import parse_scores, scores_line_grammar

    backend = TransformersBackend(model_dir, device=device)
    model, tok = backend.model, backend.tokenizer
    stops = {tok.eos_token_id, tok.pad_token_id}
    greedy_same = forced_same = 0
    parsed = 0
    for query, responses in ITEMS:
        messages = [{"role": "user", "content": f"Question: {query}\nResponse 1: {responses[0]}"
                     f"\nResponse 2: {responses[1]}\nScore each response from 1 to 10."}]
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        got = backend.generate_sync(messages, GenerationConfig(temperature=0.0,
                                                               max_tokens=max_new))
        want = until_stop(reference_ids(model, tok, prompt, device, max_new), stops)
        text = got.completions[0].text
        greedy_same += text == tok.decode(want, skip_special_tokens=True)
        prefix = text[:200]
        grammar = scores_line_grammar(2)
        forced = backend.complete_under_grammar_sync(messages, [prefix], grammar,
                                                     GenerationConfig(max_tokens=40))
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size)
        processor = LogitsProcessor(xgr.GrammarCompiler(info).compile_grammar(grammar))
        forced_want = tok.decode(until_stop(reference_ids(
            model, tok, prompt + prefix.rstrip() + "\n", device, 40, processor), stops),
            skip_special_tokens=True)
        forced_text = forced.completions[0].text
        forced_same += forced_text == forced_want
        try:
            parse_scores(forced_text, 2)
            parsed += 1
        except ValueError:
            pass
    emit(section="check", size=size, device=device, items=len(ITEMS), greedy_equal=greedy_same,
         forced_equal=forced_same, forced_parsed=parsed,
         engine_note=backend.engine_note or "fast engine")


def speed(size: str, model_dir: Path, device: str, items: int, k: int, max_new: int) -> None:
    """judgements/s and tokens/s at k samples: Judge.score_many against plain `generate`."""
    import torch

    from judgekit import Judge
    from judgekit.backends.local import TransformersBackend
    from judgekit.formats import fence_tag

    backend = TransformersBackend(model_dir, device=device)
    judge = Judge(backend, max_tokens=max_new, concurrency=1)
    batch = [{"query": q, "responses": r} for q, r in (ITEMS * items)[:items]]
    judge.score_many(batch[:1], samples=k)  # warm-up: load, CUDA context, grammar compile
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    verdicts = judge.score_many(batch, samples=k)
    sync()
    judge_s = time.perf_counter() - start
    judge_tokens = sum(v.usage.completion_tokens for v in verdicts)
    valid = sum(1 for v in verdicts for s in v.samples if s.valid)

    model, tok = backend.model, backend.tokenizer
    prompts = []
    for entry in batch:
        query, responses = str(entry["query"]), list(entry["responses"])
        messages = judge.format.messages(query, responses, tag=fence_tag(query, responses))
        prompts.append(tok.apply_chat_template(messages, tokenize=False,
                                               add_generation_prompt=True))
    plain_tokens = 0
    sync()
    start = time.perf_counter()
    for text in prompts:
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(device)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=0.5, top_k=0,
                                 num_return_sequences=k, max_new_tokens=max_new,
                                 pad_token_id=tok.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        plain_tokens += int((new != tok.pad_token_id).sum())
    sync()
    plain_s = time.perf_counter() - start
    emit(section="speed", size=size, device=device, items=items, k=k, max_tokens=max_new,
         judge_s=round(judge_s, 2), judge_items_per_s=round(items / judge_s, 3),
         judge_tokens=judge_tokens, judge_tokens_per_s=round(judge_tokens / judge_s, 1),
         valid_samples=valid, samples=items * k,
         generate_s=round(plain_s, 2), generate_items_per_s=round(items / plain_s, 3),
         generate_tokens=plain_tokens, generate_tokens_per_s=round(plain_tokens / plain_s, 1),
         judge_over_generate_items=round(plain_s / judge_s, 3))


GRM_JUDGEMENT = """Principles:
1. Accuracy (weight 2): the answer is correct.
2. Helpfulness (weight 1): the answer is useful.

Analysis:
Response 1: correct and useful.
Response 2: unhelpful.

Scores: \\boxed{{{a}, {b}}}"""


def train(model_dir: Path, device: str, root: Path) -> None:
    """One SFT step and one GRPO step of `judgekit train`, LoRA, bf16 on `device`."""
    from judgekit import Judge
    from judgekit.backends.local import TransformersBackend
    from judgekit.formats import fence_tag

    judge = Judge(TransformersBackend(model_dir, device="cpu"))
    rft = root / "rft"
    rft.mkdir(parents=True, exist_ok=True)
    items = root / "items.jsonl"
    with (rft / "rft.jsonl").open("w") as f_rft, items.open("w") as f_items:
        for i, (query, responses) in enumerate(ITEMS):
            messages = judge.format.messages(query, responses, tag=fence_tag(query, responses))
            answer = GRM_JUDGEMENT.format(a=8, b=3)
            f_rft.write(json.dumps({"messages": [*messages, {"role": "assistant",
                                                            "content": answer}]}) + "\n")
            f_items.write(json.dumps({"id": f"i{i}", "query": query, "responses": responses,
                                      "best": 0}) + "\n")
    dtype = "bfloat16" if device.startswith("cuda") else "float32"
    common = ["--device", device, "--dtype", dtype, "--lora", "--max-steps", "1",
              "--no-save-checkpoints", "--no-gradient-checkpointing"]
    stages = {
        "sft": ["sft", "--model", f"hf:{model_dir}", "--dataset-path", str(rft),
                "--out-dir", str(root / "sft"), "--per-device-train-batch-size", "2",
                "--max-length", "2048", *common],
        "grpo": ["grpo", "--model", f"hf:{model_dir}", "--items-file", str(items),
                 "--out-dir", str(root / "grpo"), "--num-generations", "2",
                 "--per-device-train-batch-size", "2", "--max-completion-length", "64",
                 *common],
    }
    for stage, argv in stages.items():
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "judgekit.train", *argv],
                              capture_output=True, text=True, timeout=600)
        summary_path = root / stage / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
        emit(section="train", stage=stage, device=device, dtype=dtype, rc=proc.returncode,
             seconds=round(time.perf_counter() - start, 1),
             summary=summary,
             stderr_tail=proc.stderr[-1500:] if proc.returncode else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_first_run.json")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    parser.add_argument("--tokenizer", default=None, help="folder with the tokenizer files")
    parser.add_argument("--quick", action="store_true",
                        help="tiny model only, few items and tokens (a dry run)")
    parser.add_argument("--sections", default="check,speed,train",
                        help="comma list of check, speed, train")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_first_run: CUDA is not available (use --device cpu for a dry run)",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    sections = set(args.sections.split(","))
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    emit(section="env", device=args.device, torch=torch.__version__,
         gpu=torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
         python=sys.version.split()[0])
    tok_dir = tokenizer_dir(args.tokenizer)
    sizes = ["tiny"] if args.quick else ["tiny", "0.5b"]
    dirs = {size: build_model(size, tok_dir, work, dtype) for size in sizes}
    try:
        for size, model_dir in dirs.items():
            if "check" in sections:
                check(size, model_dir, args.device, 16 if args.quick else 48)
            if "speed" in sections:
                speed(size, model_dir, args.device, 2 if args.quick else 8, 8,
                      32 if args.quick else 256)
        if "train" in sections:
            train(dirs["tiny"], args.device, work / "train")
    finally:
        (out / "gpu_first_run.json").write_text(json.dumps(RESULTS, indent=1))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
