"""A fake key must leave no trace: not in results, the cache file, logs, reprs or exceptions
(including tracebacks with their chained causes), even when the server echoes it back."""

from __future__ import annotations

import logging
import pickle
import traceback
from pathlib import Path

import pytest
from support.fault_server import FaultServer

from judgekit.backends.anthropic_backend import AnthropicBackend
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.cache import CachedBackend
from judgekit.config import GenerationConfig
from judgekit.errors import AuthenticationError, BackendError, TransientBackendError
from judgekit.redact import Secret, safe_url, scrub
from judgekit.retry import RetryPolicy

SECRET = "sk-test-SECRET123"
MARK = "SECRET123"
CFG = GenerationConfig(timeout=5.0, max_tokens=32, logprobs=True, top_logprobs=2)


async def no_sleep(_: float) -> None:
    return None


def make(api: str, server: FaultServer, max_retries: int = 6) -> OpenAIBackend | AnthropicBackend:
    policy = RetryPolicy(max_retries=max_retries, sleep=no_sleep)
    if api == "openai":
        return OpenAIBackend("gpt-4o", base_url=server.openai_url, api_key=SECRET, retry=policy)
    return AnthropicBackend("claude-sonnet-4-6", base_url=server.anthropic_url, api_key=SECRET,
                            retry=policy)


def assert_clean(text: str) -> None:
    assert MARK not in text, text[max(0, text.find(MARK) - 200):text.find(MARK) + 50]


def exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)


def test_scrub_and_safe_url() -> None:
    assert scrub(f"bad key {SECRET}!", [SECRET]) == "bad key ***!"
    assert MARK not in scrub(f"Bearer {SECRET}")
    assert scrub("sk-ant-api03-abcdefgh and sk-proj-XYZ12345") == "*** and ***"
    assert scrub("ask-me about tasks", ["x"]) == "ask-me about tasks"
    assert safe_url("https://u:p@example.com:8443/v1/?api-key=k#f") == "https://example.com:8443/v1"
    s = Secret(SECRET)
    assert MARK not in repr(s) + str(s) + f"{s}" and s.get() == SECRET


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_no_trace_anywhere(fault_server: FaultServer, tmp_path: Path, api: str,
                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # SDK and HTTP client debug logs included
    fault_server.retry_after = "0"
    fault_server.schedule = {"ok": ["429", "500", "drop", "malformed"], "auth": ["401"],
                             "down": ["503"] * 5}
    backend = make(api, fault_server, max_retries=4)
    cache_path = tmp_path / "cache.sqlite"
    cached = CachedBackend(backend, cache_path)
    outputs: list[str] = [repr(backend), backend.spec, repr(cached), repr(vars(backend))]

    result = await cached.generate([{"role": "user", "content": "jk-item-ok hi"}], CFG, n=2)
    assert result.usage.retries >= 4
    outputs.append(result.model_dump_json())

    with pytest.raises(AuthenticationError) as auth:
        await cached.generate([{"role": "user", "content": "jk-item-auth hi"}], CFG)
    assert "Incorrect API key provided: ***" in str(auth.value)  # the echo, scrubbed
    with pytest.raises(TransientBackendError) as down:
        await cached.generate([{"role": "user", "content": "jk-item-down hi"}], CFG)
    assert down.value.retries == 4
    await cached.aclose()

    # The server did receive the key (it was used), and nothing of ours shows it.
    assert {r.auth for r in fault_server.records} == {SECRET}
    for exc in (auth.value, down.value):
        assert isinstance(exc, BackendError)
        outputs.append(exception_text(exc))
    outputs.append(caplog.text)
    outputs.extend(r.getMessage() for r in caplog.records)
    assert any("retry" in r.getMessage() for r in caplog.records)  # logging did happen
    for text in outputs:
        assert_clean(text)
    for f in tmp_path.iterdir():  # the sqlite file and its -wal / -shm companions
        assert MARK.encode() not in f.read_bytes(), f


def test_missing_key_error_and_pickled_spec_are_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(AuthenticationError) as info:
        OpenAIBackend("gpt-4o")
    assert_clean(exception_text(info.value))
    b = OpenAIBackend("gpt-4o", api_key=SECRET, base_url=f"http://user:{SECRET}@127.0.0.1:1/v1")
    assert_clean(b.spec + repr(b) + repr(vars(b)) + str(b.base_url))
    # The key stays usable (e.g. for a worker process), just never printed.
    assert pickle.loads(pickle.dumps(b._key)).get() == SECRET
