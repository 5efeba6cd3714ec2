"""The lifecycle the protocol fakes share (`FaultServer`, `BatchFake`): a threading HTTP server
on 127.0.0.1 at a free port, served from a daemon thread, with the OpenAI and Anthropic base URLs
the SDKs are pointed at."""

from __future__ import annotations

import contextlib
import socket
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
    bind_port = 0
    """0: a free port; set it to take over a port another server just left (a resume test)."""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        self._httpd = LoopbackHTTPServer(("127.0.0.1", self.bind_port), self.handler())
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


class SilentServer:
    """A port on 127.0.0.1 that accepts connections and never answers: it reads nothing and
    sends nothing, and holds each connection open until `stop()` (a hung server, or a proxy in
    front of a dead one). Not HTTP at all, so no request record exists: what a client sees is
    its own deadline."""

    thread_name = "silent-server"

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Its closed connections linger (FIN_WAIT) on the port; with this option on them too,
        # another server can take the port over at once (a resume test does).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sock.settimeout(0.05)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, daemon=True, name=self.thread_name)
        self._thread.start()
        return self

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            self.accepted += 1

    def stop(self) -> None:
        """Close every connection and the port (free again when this returns)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # the accept loop holds the socket until its poll returns
        for conn in [*self._conns, *([self._sock] if self._sock is not None else [])]:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
