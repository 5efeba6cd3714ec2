"""SPCT stages on the real embedded model (SmolLM2-135M) on CPU: RFT data from real LLMBar
items, two SFT steps, two GRPO steps, the trained directory as a Judge, and the Judge as a
reward inside a real GRPOTrainer step. Tiny settings: this checks machinery, not quality."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.train, pytest.mark.model]

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from judgekit.formats import grm_messages  # noqa: E402
from judgekit.train.config import GRPOStageConfig, RFTConfig, SFTStageConfig  # noqa: E402
from judgekit.train.data import load_train_items  # noqa: E402
from judgekit.train.rewards import judgement_correct  # noqa: E402

PROBE = "model.layers.0.self_attn.q_proj.weight"


@pytest.fixture(scope="module", autouse=True)
def _offline_one_thread() -> Iterator[None]:
    """No hub access; one torch thread (on a shared 2-core CPU, spinning OpenMP threads make
    generation many times slower)."""
    old_env = os.environ.get("HF_HUB_OFFLINE")
    old_threads = torch.get_num_threads()
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old_threads)
    if old_env is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = old_env


@pytest.fixture(scope="module")
def base_dir() -> Path:
    from judgekit.embedded import embedded_model_dir

    try:
        return embedded_model_dir()
    except Exception as exc:  # the embedded model package is an optional extra
        pytest.skip(f"embedded model unavailable: {exc}")


def _tensor(model_dir: Path, name: str = PROBE) -> Any:
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as fh:
        return fh.get_tensor(name).clone()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_rft_on_real_items(tmp_path: Path, base_dir: Path) -> None:
    from judgekit.train.rft import run_rft

    cfg = RFTConfig(dataset="llmbar", subset="llmbar-natural", limit=3, samples=2,
                    max_tokens=128, temperature=1.0, examples=False, max_criteria=2,
                    out_dir=tmp_path, threads=1, seed=1)
    stats = run_rft(cfg)
    items = {it.id: it for it in load_train_items(dataset="llmbar", subset="llmbar-natural",
                                                  limit=3)[0]}
    records = _lines(tmp_path / "samples.jsonl")
    rows = _lines(tmp_path / "rft.jsonl")
    plain = [r for r in records if not r["hinted"]]
    hinted = [r for r in records if r["hinted"]]
    assert stats.items == 3 and stats.samples == len(plain) == 6
    assert stats.hinted_samples == len(hinted)

    # every decision re-derived from the stored scores and the gold label
    for r in records:
        it = items[r["item_id"]]
        ok = r["status"] in ("ok", "forced") and judgement_correct(r["scores"], best=it.best)
        assert r["correct"] == ok, r
    by_item: dict[str, list[dict[str, Any]]] = {}
    for r in plain:
        by_item.setdefault(r["item_id"], []).append(r)
    hinted_items = {r["item_id"] for r in hinted}
    for item_id, recs in by_item.items():
        n_ok = sum(r["correct"] for r in recs)
        if n_ok == len(recs):
            assert all(r["decision"] == "dropped_too_easy" for r in recs)
        else:
            for r in recs:
                want = ("kept" if r["correct"] else
                        "rejected_invalid" if r["status"] not in ("ok", "forced") else
                        "rejected_wrong")
                assert r["decision"] == want
        assert (item_id in hinted_items) == (n_ok == 0)

    # the stats are the counts of the decisions
    plain_dec = Counter(r["decision"] for r in plain)
    hint_dec = Counter(r["decision"] for r in hinted)
    assert stats.kept_plain == plain_dec["kept"]
    assert stats.rejected_wrong == plain_dec["rejected_wrong"]
    assert stats.rejected_invalid == plain_dec["rejected_invalid"]
    assert stats.dropped_too_easy_samples == plain_dec["dropped_too_easy"]
    assert stats.hinted_kept == hint_dec["kept"]
    assert stats.hinted_rejected_wrong == hint_dec["rejected_wrong"]
    assert stats.kept == len(rows) == plain_dec["kept"] + hint_dec["kept"]
    assert stats.forced_samples == sum(r["status"] == "forced" for r in records)
    assert stats.valid_samples == sum(r["status"] in ("ok", "forced") for r in records)

    # kept rows are the kept samples, with the prompt the Judge built for their order
    kept = {(r["item_id"], r["sample_index"], r["hinted"]) for r in records
            if r["decision"] == "kept"}
    assert {(r["item_id"], r["sample_index"], r["hinted"]) for r in rows} == kept
    for row in rows:
        it = items[row["item_id"]]
        shown = [it.responses[i] for i in row["permutation"]]
        assert row["messages"][:-1] == grm_messages(it.query, shown)
        assert row["messages"][-1]["role"] == "assistant"
        assert "Scores:" in row["messages"][-1]["content"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stage"] == "rft" and summary["stats"]["kept"] == stats.kept
    print("RFT stats:", stats.model_dump_json())


def _teacher_rows(path: Path, n: int = 2) -> Path:
    """RFT-format rows with a correct judgement per item (a stand-in for kept samples)."""
    items, _ = load_train_items(dataset="llmbar", subset="llmbar-natural", limit=n)
    with path.open("w") as fh:
        for it in items:
            assert it.best is not None
            scores = ["8" if i == it.best else "3" for i in range(it.n_responses)]
            text = ("Specific Criteria:\n1. Instruction following (Weight: 60%): does what is asked.\n"
                    "2. Helpfulness (Weight: 40%): correct and useful.\nAnalysis:\n"
                    + "".join(f"Response {i + 1}: {'follows' if i == it.best else 'misses'} the "
                              "instruction.\n" for i in range(it.n_responses))
                    + f"Scores: \\boxed{{{', '.join(scores)}}}")
            msgs = [*grm_messages(it.query, it.responses), {"role": "assistant", "content": text}]
            fh.write(json.dumps({"messages": msgs, "item_id": it.id, "hinted": False}) + "\n")
    return path


def test_sft_two_steps_then_judge(tmp_path: Path, base_dir: Path) -> None:
    from judgekit.judge import Judge
    from judgekit.train.sft import run_sft

    data = _teacher_rows(tmp_path / "rft.jsonl")
    out = tmp_path / "sft"
    cfg = SFTStageConfig(model="embedded", dataset_path=data, out_dir=out, max_steps=2,
                         per_device_train_batch_size=1, learning_rate=1e-4, max_length=1024,
                         save_checkpoints=False, threads=1)
    summary = run_sft(cfg)
    assert summary["global_steps"] == 2 and summary["device"] == "cpu"
    assert summary["dtype"] == "float32"
    assert not torch.equal(_tensor(base_dir), _tensor(out))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "summary.json"):
        assert (out / name).is_file(), name
    assert (out / "chat_template.jinja").is_file() or "chat_template" in json.loads(
        (out / "tokenizer_config.json").read_text())
    print("SFT:", summary["seconds_per_step"], "s/step")

    item = load_train_items(dataset="llmbar", subset="llmbar-natural", offset=5, limit=1)[0][0]
    judge = Judge(model=f"hf:{out}", max_tokens=32, examples=False, max_criteria=2)
    verdict = judge.score(item.query, item.responses)
    assert verdict.model == f"hf:{out}" and verdict.n_responses == 2
    assert verdict.valid_samples == 1 and all(s is not None for s in verdict.scores)


def test_sft_refuses_when_no_row_fits_max_length(tmp_path: Path, base_dir: Path) -> None:
    """TRL drops a row whose judgement max_length cuts off entirely; with none left, say so
    instead of failing deep in the data loader."""
    from judgekit.train.data import TrainDataError
    from judgekit.train.sft import run_sft

    data = _teacher_rows(tmp_path / "rft.jsonl", n=1)
    cfg = SFTStageConfig(model="embedded", dataset_path=data, out_dir=tmp_path / "sft",
                         max_steps=1, max_length=64, save_checkpoints=False, threads=1)
    with pytest.raises(TrainDataError, match="max_length=64"):
        run_sft(cfg)


def test_grpo_two_steps_lora_structured(tmp_path: Path, base_dir: Path) -> None:
    from judgekit.train.grpo import run_grpo

    out = tmp_path / "grpo"
    # One generation round (a group of 4 on one item) feeds two optimizer steps of 2 completions:
    # half the rollout cost of two rounds. Structured rollouts so that a 135M model's scores vary.
    cfg = GRPOStageConfig(model="embedded", dataset="llmbar", subset="llmbar-natural", limit=2,
                          out_dir=out, max_steps=2, num_generations=4,
                          per_device_train_batch_size=1, gradient_accumulation_steps=2,
                          steps_per_generation=4, max_completion_length=112, temperature=1.2,
                          examples=False, structured_rollouts=True, max_criteria=2,
                          rollout_line_chars=8, lora=True, lora_r=4, lora_alpha=8,
                          learning_rate=1e-3, beta=0.08, threads=1, seed=0, save_steps=2)
    summary = run_grpo(cfg)
    assert summary["global_steps"] == 2 and summary["structured_rollout_calls"] == 1
    rewards = summary["mean_reward_per_step"]
    assert rewards and all(-1.0 <= r <= 1.0 for r in rewards)
    assert summary["config"]["beta"] == 0.08
    stds = [h["reward_std"] for h in summary["log_history"] if "reward_std" in h]
    assert any(s > 0 for s in stds), "every group had equal rewards: no learning signal"
    # the LoRA update is merged into the saved weights
    assert not torch.equal(_tensor(base_dir), _tensor(out))
    assert not (out / "adapter_config.json").exists()
    assert (out / "checkpoints" / "checkpoint-2" / "adapter_config.json").is_file()
    print("GRPO:", summary["seconds_per_step"], "s/step; rewards", rewards)


def test_judge_reward_inside_grpo_trainer(tmp_path: Path, base_dir: Path) -> None:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from judgekit.judge import Judge
    from judgekit.train.reward_adapter import JudgeReward

    adapter = JudgeReward(Judge("embedded", max_tokens=16, examples=False, max_criteria=2),
                          mode="group")
    seen: list[tuple[int, list[Any]]] = []

    def judge_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Any]:
        out = adapter(prompts, completions, **kwargs)
        seen.append((len(completions), out))
        return out

    prompts = [[{"role": "user", "content": "Name one fruit."}],
               [{"role": "user", "content": "Say hello politely."}]]
    args = GRPOConfig(output_dir=str(tmp_path / "ckpt"), max_steps=1, num_generations=2,
                      per_device_train_batch_size=2, max_completion_length=12, beta=0.0,
                      learning_rate=1e-5, use_cpu=True, report_to="none", logging_steps=1,
                      save_strategy="no", seed=0)
    trainer = GRPOTrainer(model=str(base_dir), reward_funcs=[judge_reward], args=args,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]))
    trainer.train()
    assert seen, "the reward function was never called"
    n, rewards = seen[0]
    assert len(rewards) == n == 2
    assert all(isinstance(r, float) and 1.0 <= r <= 10.0 for r in rewards)
    assert adapter.stats == {"calls": 1, "completions": 2, "failed": 0}
    logged = [h for h in trainer.state.log_history if "judge_reward/failed_frac" in h]
    assert logged and logged[0]["judge_reward/failed_frac"] == 0.0
