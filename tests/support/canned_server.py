"""A loopback server that answers every POST with one canned body (`body`, sent as it is, HTTP
200, JSON content type) and counts the requests: for reading bodies no real server would send
on cue (extra fields, nulls, wrong types, non-JSON) through the real SDKs."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

from support.loopback import LoopbackServer


class CannedServer(LoopbackServer):
    thread_name = "canned-server"

    def __init__(self) -> None:
        self.body = "{}"
        self.requests = 0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests += 1
                data = server.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
