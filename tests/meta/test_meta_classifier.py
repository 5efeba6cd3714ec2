"""The paper's kind of meta RM: a local sequence-classification model whose logit is the score.

The classifier here is real but untrained: the embedded model's body with a freshly initialised
one-logit head, saved as a plain directory. It proves the loading, input assembly and top-k_meta
bookkeeping, not the quality of the ranking.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fault_server import FaultServer

from judgekit import Judge, SequenceClassifierMetaScorer
from judgekit.config import GenerationConfig

pytestmark = [pytest.mark.model]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from judgekit.embedded import embedded_model_dir

    src = embedded_model_dir()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1)
    tok = AutoTokenizer.from_pretrained(src)
    model.config.pad_token_id = tok.pad_token_id
    out = tmp_path_factory.mktemp("meta-rm")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_classifier_meta_scores_drive_meta_guided_voting(classifier_dir: Path,
                                                         fault_server: FaultServer) -> None:
    judge = Judge("openai:judge-test", base_url=fault_server.openai_url, api_key="sk-x",
                  examples=False, config=GenerationConfig(max_tokens=64),
                  meta=f"classifier:{classifier_dir}")
    v = judge.score("jk-item-m q", ["GOOD", "meh"], samples=4)
    assert v.meta_model == f"meta-classifier:{classifier_dir}"
    assert v.k_meta == 2
    logits = [s.meta_score for s in v.samples]
    assert all(isinstance(x, float) for x in logits)
    kept = [s for s in v.samples if s.kept]
    assert len(kept) == 2
    assert min(s.meta_score for s in kept) >= max(  # type: ignore[type-var]
        s.meta_score for s in v.samples if not s.kept)
    assert v.scores == [sum(s.scores[0] for s in kept), sum(s.scores[1] for s in kept)]  # type: ignore[index]


def test_classifier_input_differs_per_judgement(classifier_dir: Path) -> None:
    """Different judgement texts give different logits (the judgement is really read)."""
    from judgekit import Judgement, SampleStatus

    scorer = SequenceClassifierMetaScorer(classifier_dir)
    mk = [Judgement(sample_index=i, status=SampleStatus.OK, permutation=[0, 1], scores=[9, 2],
                    raw_text=text) for i, text in enumerate(
                        ["Scores: \\boxed{9, 2}", "Everything is wrong. Scores: \\boxed{9, 2}"])]
    a, b = scorer.score_sync("q", ["GOOD", "meh"], mk)
    assert a is not None and b is not None and a != b


CONCURRENT = """
import json, sys
from judgekit import Judge
from judgekit.config import GenerationConfig
judge = Judge("openai:judge-test", base_url=sys.argv[1], api_key="sk-x", examples=False,
              config=GenerationConfig(max_tokens=64), meta="classifier:" + sys.argv[2],
              concurrency=8)
items = [{"id": f"c{i}", "query": f"jk-item-c{i} Which is right? ({i})",
          "responses": ["GOOD", "meh"]} for i in range(8)]
verdicts = judge.score_many(items, samples=2, progress=False)
print(json.dumps([v.model_dump(mode="json") for v in verdicts]))
"""


def test_classifier_meta_at_concurrency_8(classifier_dir: Path, fault_server: FaultServer) -> None:
    """Eight items rate at once in a fresh process (nothing of transformers imported yet, as in
    `bench run` or `score_many`): every item is rated, and each logit equals the one the
    classifier gives that judgement alone."""
    import json
    import os
    import subprocess
    import sys

    from judgekit import Verdict

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", CONCURRENT, fault_server.openai_url,
                          str(classifier_dir)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-2000:]
    verdicts = [Verdict.model_validate(v) for v in json.loads(out.stdout.splitlines()[-1])]
    assert len(verdicts) == 8
    assert all(v.error is None and v.k_meta == 1 and v.meta_model.startswith("meta-classifier:")
               for v in verdicts)  # type: ignore[union-attr]
    alone = SequenceClassifierMetaScorer(classifier_dir)
    for v in verdicts:
        assert all(s.valid for s in v.samples)
        expected = alone.score_sync(f"jk-item-{v.item_id} Which is right? "
                                    f"({v.item_id[1:]})", ["GOOD", "meh"], v.samples)
        assert [s.meta_score for s in v.samples] == pytest.approx(expected, abs=1e-4)
