"""`transformers serve` on 127.0.0.1 with the embedded model, for tests against a real
OpenAI-compatible server.

Facts learnt from transformers 5.x serve: given a model directory as FORCE_MODEL it is "pinned"
and answers only requests whose `model` is that exact path (other names get a 4xx); it ignores
`n` (one choice per request) and returns no logprobs; it is ready when GET /health answers. With
HF_HUB_OFFLINE=1 it never touches the hub.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServedModel:
    process: subprocess.Popen[bytes]
    port: int
    model: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def start_transformers_serve(model_dir: Path, ready_timeout: float = 180.0) -> ServedModel:
    """Start the server and wait (bounded) until /health answers; raises with the log on failure."""
    exe = shutil.which("transformers")
    if exe is None:
        raise FileNotFoundError("the `transformers` CLI is not installed")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    fd, log_name = tempfile.mkstemp(prefix="transformers-serve-", suffix=".log")
    log = os.fdopen(fd, "wb")
    process = subprocess.Popen(
        [exe, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
         "--device", "cpu", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    log.close()
    served = ServedModel(process, port, str(model_dir), Path(log_name))
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = served.log_tail()
            served.stop()
            raise RuntimeError(f"transformers serve exited early:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return served
        except OSError:
            pass
        time.sleep(0.5)
    tail = served.log_tail()
    served.stop()
    raise TimeoutError(f"transformers serve not ready after {ready_timeout:.0f}s:\n{tail}")
