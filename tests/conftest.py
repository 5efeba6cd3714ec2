"""Shared fixtures: the fault-injecting protocol server, a real `transformers serve` server and
llama.cpp's own server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.batch_fake import BatchFake
from support.canned_server import CannedServer
from support.fault_server import FaultServer
from support.llamacpp_server import LlamaServer, llamacpp_server_missing, start_llamacpp_server
from support.loopback import SilentServer
from support.scripted_judges import scripted_reply
from support.transformers_server import ServedModel, start_transformers_serve


@pytest.fixture(autouse=True, scope="session")
def _isolated_response_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never read or fill the user's response cache (a stale hit could pass a test that
    should fail); the materialised embedded model stays shared in the normal cache home."""
    import os

    old = os.environ.get("JUDGEKIT_CACHE_FILE")
    os.environ["JUDGEKIT_CACHE_FILE"] = str(tmp_path_factory.mktemp("cache") / "cache.sqlite")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("JUDGEKIT_CACHE_FILE", None)
        else:
            os.environ["JUDGEKIT_CACHE_FILE"] = old


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A fresh fault server per test (script it through .schedule / .default_schedule)."""
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def canned_server() -> Iterator[CannedServer]:
    """A server that answers every request with one canned body (set `.body`)."""
    with CannedServer() as server:
        yield server


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A port that accepts connections and never answers (a hung server)."""
    with SilentServer() as server:
        yield server


@pytest.fixture
def scripted_server() -> Iterator[FaultServer]:
    """A fault server whose answers come from the scripted judges and revisers
    (`support.scripted_judges.scripted_reply`)."""
    with FaultServer(reply=scripted_reply) as server:
        yield server


@pytest.fixture
def batch_fake() -> Iterator[BatchFake]:
    """A fresh protocol fake of the providers' batch endpoints per test."""
    with BatchFake() as server:
        yield server


@pytest.fixture(scope="session")
def transformers_serve() -> Iterator[ServedModel]:
    """`transformers serve` with the embedded model, started once per session and killed after."""
    from judgekit.embedded import embedded_model_dir

    try:
        model_dir = embedded_model_dir()
    except Exception as exc:  # the embedded model package is an optional extra
        pytest.skip(f"embedded model unavailable: {exc}")
    try:
        served = start_transformers_serve(model_dir)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="session")
def llamacpp_server() -> Iterator[LlamaServer]:
    """llama.cpp's server (llama-cpp-python[server]) with the embedded GGUF, started once per
    session and stopped after. Skipped, saying why, only where the package cannot be imported."""
    from judgekit.embedded import embedded_gguf_path

    missing = llamacpp_server_missing()
    if missing:
        pytest.skip(missing)
    try:
        gguf = embedded_gguf_path()
    except Exception as exc:  # the embedded model package is an optional extra
        pytest.skip(f"embedded model unavailable: {exc}")
    served = start_llamacpp_server(gguf)
    try:
        yield served
    finally:
        served.stop()
