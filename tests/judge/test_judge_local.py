"""End to end on the real embedded model (SmolLM2-135M-Instruct on CPU).

A 135M model judges near chance; these tests prove the machinery: the format, the bookkeeping,
the batching and the forced scores line, not the quality of the scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from judgekit import Judge, SampleStatus, Verdict
from judgekit.backends.local import TransformersBackend

pytestmark = [pytest.mark.model]

QUERY = "Give me one tip for learning a new language."
RESPONSES = [
    "Practise a little every day: fifteen minutes of daily review beats one long weekly session.",
    "Languages are hard.",
    "Read children's books in the language; the simple sentences teach grammar in context.",
]


class CallCounter:
    """Wraps the real local backend's batched entry point to count generate calls."""

    def __init__(self, backend: TransformersBackend) -> None:
        self.backend = backend
        self.calls: list[list[int]] = []
        self._inner = backend.generate_many_sync

        def counted(requests: Any, config: Any) -> Any:
            self.calls.append([n for _, n in requests])
            return self._inner(requests, config)

        backend.generate_many_sync = counted  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def judge() -> Iterator[Judge]:
    j = Judge(max_tokens=256)
    yield j


def _check_verdict(v: Verdict, n: int) -> None:
    assert v.n_responses == n
    assert len(v.scores) == n
    assert v.error is None
    voters = v.k_meta or v.k  # meta-guided voting sums over the k_meta kept samples only
    for s in v.scores:
        assert s is not None and voters <= s <= voters * 10
    for jd in v.samples:
        assert jd.status in (SampleStatus.OK, SampleStatus.FORCED)
        assert jd.scores is not None and len(jd.scores) == n
        assert all(1 <= s <= 10 for s in jd.scores)
        assert len(jd.critiques) == n
    # JSON round trip keeps everything
    assert Verdict.model_validate_json(v.model_dump_json()) == v


@pytest.mark.parametrize("n", [1, 2, 3])
def test_score_one_two_three_responses(judge: Judge, n: int) -> None:
    v = judge.score(QUERY, RESPONSES[:n])
    _check_verdict(v, n)
    jd = v.samples[0]
    assert jd.raw_text.startswith("Specific Criteria:")  # written under the output grammar
    assert len(jd.principles) >= 1
    assert abs(sum(p.weight for p in jd.principles) - 1.0) < 1e-6
    assert all(p.name and p.weight > 0 for p in jd.principles)
    if jd.status is SampleStatus.OK:
        assert all(c.analysis.strip() for c in jd.critiques)
    else:  # cut off anywhere, even inside its principles: the scores line was forced after it
        assert jd.truncated and jd.raw_text.rstrip().splitlines()[-1].startswith("Scores:")
    assert v.best is None if v.tie else v.best in range(n)


def test_k_samples_come_from_one_batched_generate_with_meta(judge: Judge) -> None:
    counter = CallCounter(judge.backend)  # type: ignore[arg-type]
    v = judge.score(QUERY, RESPONSES[:2], samples=4, meta=True)
    # all 4 samples (2 presentation orders x 2 samples) in ONE generate call
    assert counter.calls[0] == [2, 2]
    assert len(v.samples) == 4 and v.k == 4 and v.k_meta == 2
    _check_verdict(v, 2)
    kept = [s for s in v.samples if s.kept]
    assert len(kept) == 2
    assert all(s.meta_score is not None and 0.0 <= s.meta_score <= 1.0 for s in v.samples)
    assert min(s.meta_score for s in kept) >= max(  # type: ignore[type-var]
        s.meta_score for s in v.samples if not s.kept)
    for i in range(2):
        assert v.scores[i] == pytest.approx(sum(s.scores[i] for s in kept))  # type: ignore[index]
    # each response sat in each position equally often
    assert sorted(tuple(s.permutation) for s in v.samples) == [(0, 1), (0, 1), (1, 0), (1, 0)]


def test_free_text_that_does_not_parse_is_forced() -> None:
    """Without the output grammar and with a tiny budget the model cannot finish its judgement;
    the scores line is then completed under a grammar and the sample says so."""
    j = Judge(structured=False, max_tokens=8, examples=False)
    v = j.score(QUERY, RESPONSES[:2])
    jd = v.samples[0]
    assert jd.status is SampleStatus.FORCED
    assert jd.attempts == 2
    assert jd.scores is not None and len(jd.scores) == 2
    assert "\\boxed{" in jd.raw_text.splitlines()[-1]
    assert v.valid_samples == 1


def test_gguf_file_loads_directly_through_transformers() -> None:
    """`gguf:<file>`: transformers dequantises the GGUF itself (no materialised directory)."""
    from judgekit.config import GenerationConfig
    from judgekit.embedded import embedded_gguf_path

    backend = TransformersBackend.from_spec(f"gguf:{embedded_gguf_path()}")
    result = backend.generate_sync([{"role": "user", "content": "Say hi."}],
                                   GenerationConfig(max_tokens=4), n=1)
    assert backend.spec.startswith("gguf:") and result.completions[0].text.strip()
    assert result.usage.completion_tokens >= 1
