"""llama.cpp's own OpenAI-compatible server (`llama-cpp-python[server]`) on 127.0.0.1, serving the
embedded GGUF file, for tests of structured output against a real server.

Facts learnt from llama-cpp-python 0.3.x's server: it takes a JSON schema as
`response_format={"type": "json_object", "schema": ...}` or a GBNF `grammar`, answers
`{"type": "json_schema"}` with HTTP 500, ignores `n` (one choice per request), returns
log-probabilities, serves one request at a time, says `owned_by: "me"` in /v1/models and titles
its /openapi.json "llama.cpp Python API". It is ready when GET /v1/models answers.

One workaround, applied only where it is needed: on CPUs with AMX (`amx_int8` in /proc/cpuinfo)
a source build of llama.cpp places the weights in its AMX buffer type, whose matrix kernel
segfaults on any batch of more than one token inside this project's Firecracker VMs. The server
is then started through `python -c` with that "extra buffer type" switched off
(`llama_model_params.use_extra_bufts = False`, a field of llama.cpp's own model parameters),
then `llama_cpp.server`'s own `main()`; everything else is `python -m llama_cpp.server --model
<gguf> --host 127.0.0.1 --port N`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from support.server_process import ServerProcess, free_port, launch

MODEL_ALIAS = "smollm2"

_LAUNCH_WITHOUT_EXTRA_BUFFERS = """
import sys
import llama_cpp
import llama_cpp.llama as _llama

_default = llama_cpp.llama_model_default_params

def _params():
    params = _default()
    params.use_extra_bufts = False
    return params

_llama.llama_cpp.llama_model_default_params = _params
from llama_cpp.server.__main__ import main
sys.argv[0] = "llama_cpp.server"
main()
"""


def cpu_has_amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def llamacpp_server_missing() -> str | None:
    """Why the server cannot run here (None when it can)."""
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return (f"llama-cpp-python[server] is not installed ({module} missing): "
                    "pip install 'llama-cpp-python[server]' (compiles llama.cpp, ~6 min)")
    return None


LlamaServer = ServerProcess
"""A running llama.cpp server (its `model` is the alias it serves the GGUF under)."""


def start_llamacpp_server(gguf: Path, *, n_ctx: int = 4096,
                          ready_timeout: float = 120.0) -> LlamaServer:
    """Start the server and wait (bounded) until it answers; raises with its log on failure."""
    port = free_port()
    args = ["--model", str(gguf), "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(n_ctx), "--verbose", "False"]
    command = ([sys.executable, "-c", _LAUNCH_WITHOUT_EXTRA_BUFFERS, *args] if cpu_has_amx()
               else [sys.executable, "-m", "llama_cpp.server", *args])
    return launch(command, port=port, model=MODEL_ALIAS, ready_path="/v1/models",
                  name="llama.cpp's server", ready_timeout=ready_timeout)
