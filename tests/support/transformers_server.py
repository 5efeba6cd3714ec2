"""`transformers serve` on 127.0.0.1 with the embedded model, for tests against a real
OpenAI-compatible server.

Facts learnt from transformers 5.x serve: given a model directory as FORCE_MODEL it is "pinned"
and answers only requests whose `model` is that exact path (other names get a 4xx); it ignores
`n` (one choice per request) and returns no logprobs; it is ready when GET /health answers. With
HF_HUB_OFFLINE=1 it never touches the hub.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from support.server_process import ServerProcess, free_port, launch

ServedModel = ServerProcess
"""A running `transformers serve` (its `model` is the pinned model directory)."""


def start_transformers_serve(model_dir: Path, ready_timeout: float = 180.0) -> ServedModel:
    """Start the server and wait (bounded) until /health answers; raises with the log on failure."""
    exe = shutil.which("transformers")
    if exe is None:
        raise FileNotFoundError("the `transformers` CLI is not installed")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    return launch([exe, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                   "--device", "cpu", "--log-level", "warning"],
                  port=port, model=str(model_dir), ready_path="/health",
                  name="transformers serve", ready_timeout=ready_timeout, env=env)


__all__ = ["ServedModel", "free_port", "start_transformers_serve"]
