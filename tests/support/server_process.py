"""A real server started as a subprocess on 127.0.0.1 for the tests: its log goes to a temporary
file (shown when it fails to start), it is ready when a GET of its readiness URL answers 200, and
`stop()` ends it (terminate, then kill) and removes the log. `transformers serve` and llama.cpp's
server both start through `launch`."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
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


def launch(command: Sequence[str], *, port: int, model: str, ready_path: str, name: str,
           ready_timeout: float, env: Mapping[str, str] | None = None) -> ServerProcess:
    """Start `command` (which listens on `port`) and wait, bounded, until GET `ready_path`
    answers 200; raises with the server's log when it exits or is not ready in time."""
    fd, log_name = tempfile.mkstemp(prefix=f"{name.replace(' ', '-')}-", suffix=".log")
    log = os.fdopen(fd, "wb")
    process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=dict(env) if env else None)
    log.close()
    served = ServerProcess(process, port, model, Path(log_name))
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = served.log_tail()
            served.stop()
            raise RuntimeError(f"{name} exited early:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2) as r:
                if r.status == 200:
                    return served
        except OSError:
            pass
        time.sleep(0.5)
    tail = served.log_tail()
    served.stop()
    raise TimeoutError(f"{name} not ready after {ready_timeout:.0f}s:\n{tail}")
