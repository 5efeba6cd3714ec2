"""The lifecycle the protocol fakes share (`FaultServer`, `BatchFake`): a threading HTTP server
on 127.0.0.1 at a free port, served from a daemon thread, with the OpenAI and Anthropic base URLs
the SDKs are pointed at."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackHTTPServer(ThreadingHTTPServer):
    """socketserver's listen backlog is 5: a burst of new connections overflows it, the kernel
    drops their SYNs, and the clients retransmit after 1 s, 3 s... which a short client timeout
    turns into connect errors that no request record explains. A deep backlog makes every
    connection reach the handler."""

    request_queue_size = 1024
    daemon_threads = True


class LoopbackServer:
    """Subclasses give `handler()`; `start()` serves it, `stop()` (or leaving `with`) ends it."""

    _httpd: LoopbackHTTPServer | None = None
    thread_name = "loopback-server"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        self._httpd = LoopbackHTTPServer(("127.0.0.1", 0), self.handler())
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True,
                         name=self.thread_name).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
