"""The improve loop's preference export goes into TRL's DPOTrainer and RewardTrainer as it is:
one real training step each on the embedded model (CPU, tiny lengths), from rows exported
from traces of scripted judges on a loopback server (tests/support/scripted_judges.py)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fault_server import FaultServer
from support.scripted_judges import scripted_reply

from judgekit import Judge
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.improve import ImproveLoop, improve_many
from judgekit.preferences import write_preferences

pytestmark = [pytest.mark.train, pytest.mark.model]

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def model_dir() -> Iterator[Path]:
    from judgekit.embedded import embedded_model_dir

    try:
        path = embedded_model_dir()
    except Exception as exc:  # the embedded model package is an optional extra
        pytest.skip(f"embedded model unavailable: {exc}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield path
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Plain and conversational pairs from a two-item run (one kept and one lost revision)."""
    out = tmp_path_factory.mktemp("pairs")
    items = [{"id": "sky", "query": "Why is the sky blue?",
              "response": "The sky is blue because of Rayleigh scattering."}]
    with FaultServer(reply=scripted_reply) as server:
        for reviser in ("reviser", "reviser-bad"):
            judges = [Judge(f"openai:{m}", fixes=True, examples=False,
                            base_url=server.openai_url, api_key="k")
                      for m in ("judge-a", "judge-b")]
            loop = ImproveLoop(judges=judges, rounds=1, reviser=OpenAIBackend(
                reviser, base_url=server.openai_url, api_key="k"))
            improve_many([{**items[0], "id": reviser}], loop=loop,
                         out=out / f"{reviser}.jsonl", progress=False)
    traces = [out / "reviser.jsonl", out / "reviser-bad.jsonl"]
    paths = {}
    for kind, conversational in (("plain", False), ("chat", True)):
        rows = out / f"{kind}.jsonl"
        with rows.open("w") as fh:
            for t in traces:
                tmp = out / f"{kind}-{t.stem}.jsonl"
                assert write_preferences(t, tmp, conversational=conversational) == 1
                fh.write(tmp.read_text())
        paths[kind] = rows
    return paths


def _args(config_cls: Any, out: Path) -> Any:
    from judgekit.train.common import _checkpointing_field

    return config_cls(output_dir=str(out), max_steps=1, per_device_train_batch_size=2,
                      learning_rate=1e-5, max_length=96, report_to=[], save_strategy="no",
                      logging_steps=1, use_cpu=True, dataloader_num_workers=0,
                      **{_checkpointing_field(): False})


@pytest.mark.parametrize("kind", ["plain", "chat"])
def test_dpo_trainer_takes_the_pairs(model_dir: Path, pairs: dict[str, Path], kind: str,
                                     tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    ds = datasets.load_dataset("json", data_files=str(pairs[kind]), split="train")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    trainer = DPOTrainer(model=model, args=_args(DPOConfig, tmp_path), train_dataset=ds,
                         processing_class=tok)
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)


def test_reward_trainer_takes_the_pairs(model_dir: Path, pairs: dict[str, Path],
                                        tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    ds = datasets.load_dataset("json", data_files=str(pairs["chat"]), split="train")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1,
                                                               dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None \
        else tok.eos_token_id
    trainer = RewardTrainer(model=model, args=_args(RewardConfig, tmp_path), train_dataset=ds,
                            processing_class=tok)
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)
