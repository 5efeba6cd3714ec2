"""A base URL must be an http(s) URL and a remote model needs its API key: both are refused at
once, before any request, with exit 2 and one line naming what to fix. The loopback server
proves that nothing was sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.fault_server import FaultServer

from judgekit.cli import main
from judgekit.errors import AuthenticationError, ConfigurationError, MissingAPIKeyError
from judgekit.judge import Judge

JUDGE = ["judge", "--query", "q", "--response", "a", "--response", "b"]


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def bench_items(tmp_path: Path) -> str:
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"id": "a", "query": "q", "responses": ["x", "y"], "label": 0})
                    + "\n")
    return str(path)


@pytest.mark.parametrize("url", ["notaurl", "127.0.0.1:{port}/v1", "ftp://127.0.0.1:{port}/v1",
                                 "http://", "http://127.0.0.1:port/v1"])
def test_a_base_url_that_is_not_http_exits_2_at_once(
        url: str, fault_server: FaultServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = url.replace("{port}", str(fault_server.port))
    for argv in ([*JUDGE, "--model", "openai:m", "--base-url", url],
                 ["improve", "--query", "q", "--response", "a", "--model", "openai:m",
                  "--base-url", url]):
        assert main(argv) == 2
        assert "is not an http(s) URL" in one_line(capsys.readouterr().err)
    assert main(["bench", "run", bench_items(tmp_path), "--model", "openai:m", "--base-url", url,
                       "--no-progress", "--out", str(tmp_path / "run")]) == 2
    assert "is not an http(s) URL" in one_line(capsys.readouterr().err)
    assert fault_server.records == []


def test_a_bad_base_url_from_the_environment_names_the_variable(
        monkeypatch: pytest.MonkeyPatch, fault_server: FaultServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"127.0.0.1:{fault_server.port}")
    assert main([*JUDGE, "--model", "openai:m"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "OPENAI_BASE_URL" in line and "is not an http(s) URL" in line
    with pytest.raises(ConfigurationError, match="base_url 'notaurl' is not an http"):
        Judge("openai:m", base_url="notaurl")
    assert fault_server.records == []


@pytest.mark.parametrize(("model", "variable"), [("openai:gpt-4o-mini", "OPENAI_API_KEY"),
                                                 ("anthropic:claude-x", "ANTHROPIC_API_KEY")])
def test_a_missing_api_key_exits_2_naming_the_variable(
        model: str, variable: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*JUDGE, "--model", model]) == 2
    line = one_line(capsys.readouterr().err)
    assert variable in line and "API key" in line
    assert main(["bench", "run", bench_items(tmp_path), "--model", model, "--no-progress",
                       "--out", str(tmp_path / "run")]) == 2
    assert variable in one_line(capsys.readouterr().err)
    with pytest.raises(MissingAPIKeyError) as info:
        Judge(model)
    assert isinstance(info.value, AuthenticationError | ValueError)


def test_a_good_base_url_needs_no_key(fault_server: FaultServer,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The adversary of the checks above: a local server's URL, without a key, judges."""
    assert main([*JUDGE, "--model", "openai:m", "--base-url", fault_server.openai_url,
                 "--response", "GOOD", "--no-examples"]) == 0
    assert "Scores" in capsys.readouterr().out and len(fault_server.records) >= 1
