"""Structured output against llama.cpp's real server (llama-cpp-python[server]) serving the
embedded GGUF: the judge writes under the format's JSON schema, the meta judge answers a
constrained yes/no whose P("yes") comes from the server's log-probabilities, and the server's
refusal of OpenAI's `json_schema` response format is a recorded, once-only fallback."""

from __future__ import annotations

import time

import pytest
from support.llamacpp_server import LlamaServer

from judgekit import Judge
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.config import GenerationConfig
from judgekit.meta import MetaJudge
from judgekit.runtime import run_sync
from judgekit.schema import SampleStatus

pytestmark = [pytest.mark.server, pytest.mark.model]

QUERY = "What is the capital of France?"
RESPONSES = ["The capital of France is Paris.", "France has no capital city."]
CONFIG = GenerationConfig(max_tokens=1024, timeout=600.0)


def test_auto_detection_names_llamacpp(llamacpp_server: LlamaServer) -> None:
    backend = OpenAIBackend(llamacpp_server.model, base_url=llamacpp_server.base_url)
    assert backend.server_flavour == "auto" and backend.flavour == "generic"
    judge = Judge(backend, examples=False, config=CONFIG.with_(max_tokens=8), max_reasks=0)
    judge.score(QUERY, RESPONSES)  # the first structured request asks the server what it is
    assert backend.flavour == "llamacpp"
    assert backend.capabilities.json_schema and backend.capabilities.grammar


def test_k4_with_meta_gives_every_sample_ok_with_principles_critiques_and_scores(
        llamacpp_server: LlamaServer) -> None:
    judge = Judge(f"openai:{llamacpp_server.model}", base_url=llamacpp_server.base_url,
                  server_flavour="llamacpp", examples=False, config=CONFIG, meta=True)
    assert judge.structured
    start = time.monotonic()
    verdict = judge.score(QUERY, RESPONSES, samples=4)
    elapsed = time.monotonic() - start
    statuses = [s.status for s in verdict.samples]
    assert statuses == [SampleStatus.OK] * 4, [(s.status, s.error) for s in verdict.samples]
    for s in verdict.samples:
        assert s.structured and s.structured_fallback is None and s.attempts == 1
        assert s.raw_text.lstrip().startswith("{")
        assert 2 <= len(s.principles) <= 4
        assert sum(p.weight for p in s.principles) == pytest.approx(1.0)
        assert len(s.critiques) == 2 and all(c.overall is not None for c in s.critiques)
        assert s.scores is not None and all(1 <= x <= 10 for x in s.scores)
        # The meta judge's P("yes") from llama.cpp's log-probabilities, under a yes/no grammar.
        assert s.meta_score is not None and 0.0 <= s.meta_score <= 1.0
    assert verdict.k_meta == 2 and sum(s.kept for s in verdict.samples) == 2
    assert verdict.valid_samples == 4 and verdict.meta_model == f"meta-prompt:{judge.model}"
    print(f"\nk=4 + meta over llama.cpp's server: {elapsed:.1f}s, "
          f"{verdict.usage.completion_tokens} completion tokens, scores {verdict.scores}")


def test_meta_yes_no_reads_p_yes_from_the_servers_logprobs(llamacpp_server: LlamaServer) -> None:
    backend = OpenAIBackend(llamacpp_server.model, base_url=llamacpp_server.base_url,
                            server_flavour="llamacpp")
    meta = MetaJudge(backend, mode="logprob")
    config = meta._yes_no_config()
    assert config.grammar is not None and config.logprobs  # constrained, with log-probs
    out = run_sync(backend.generate([{"role": "user", "content": "Is 2 + 2 = 4? Yes or No."}],
                                    config, 1))
    completion = out.completions[0]
    assert completion.text in ("Yes", "No")  # the grammar held
    assert completion.logprobs and completion.logprobs[0].top


def test_the_servers_refusal_of_json_schema_is_a_recorded_once_only_fallback(
        llamacpp_server: LlamaServer) -> None:
    """Sent OpenAI's `{"type": "json_schema"}`, llama-cpp-python answers HTTP 500: the backend
    does not retry it as a server fault, sends the request once more without the schema, and
    every later sample records that it was written as free text."""
    backend = OpenAIBackend(llamacpp_server.model, base_url=llamacpp_server.base_url,
                            server_flavour="openai", max_retries=3)
    judge = Judge(backend, examples=False, config=CONFIG.with_(max_tokens=8), max_reasks=0)
    first = judge.score(QUERY, RESPONSES)
    again = judge.score(QUERY, RESPONSES[::-1])
    for verdict in (first, again):
        (s,) = verdict.samples
        assert s.status is not SampleStatus.API_ERROR, s.error
        assert not s.structured and s.structured_fallback is not None
        assert "refused" in s.structured_fallback and "500" in s.structured_fallback
    assert first.usage.retries == 0
    assert first.usage.calls == 2  # the refused request and its free-text twin
    assert again.usage.calls == 1  # later requests go without the schema straight away
