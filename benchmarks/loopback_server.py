"""A minimal OpenAI-compatible chat-completions server for benchmarks: it answers every request
with the same parseable GRM judgement after a fixed latency, as a hosted model would; other
GETs (a client asking what the server is) get a 404 at once.
`GET /stats` tells the peak of requests in flight since the previous `GET /stats`, and the
arrival times of the requests since then (`time.time()`, for rate-limit measurements).

Stdlib asyncio, HTTP/1.1 keep-alive, one process of its own (so the client's CPU time is the
client's alone). Run `python loopback_server.py --latency 0.5`: it prints its port on the first
line of stdout and serves until killed. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import ClassVar

JUDGEMENT = ("Specific Criteria:\n1. Accuracy (Weight: 100%): ok\nAnalysis:\n"
             "Response 1: fine\nResponse 2: poor\nScores: \\boxed{8, 3}")


def _response(body: dict[str, object]) -> bytes:
    n = int(body.get("n") or 1)  # type: ignore[call-overload]
    choices = [{"index": i, "finish_reason": "stop", "logprobs": None,
                "message": {"role": "assistant", "content": JUDGEMENT}} for i in range(n)]
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "m"), "choices": choices,
        "usage": {"prompt_tokens": 100, "completion_tokens": 30 * n,
                  "total_tokens": 100 + 30 * n}}).encode()


class _Stats:
    """Requests in flight now and at most since the last `GET /stats` (which resets the peak)."""

    in_flight = 0
    peak = 0
    arrivals: ClassVar[list[float]] = []


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  latency: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length)) if length else {}
            status = b"200 OK"
            if head.startswith(b"GET /stats"):
                payload = json.dumps({"peak_in_flight": _Stats.peak,
                                      "arrivals": _Stats.arrivals}).encode()
                _Stats.peak = 0
                _Stats.arrivals = []
            elif head.startswith(b"GET "):  # e.g. GET /v1/models: answered at once, as servers do
                status, payload = b"404 Not Found", b'{"error": {"message": "not found"}}'
            else:
                _Stats.arrivals.append(time.time())
                _Stats.in_flight += 1
                _Stats.peak = max(_Stats.peak, _Stats.in_flight)
                await asyncio.sleep(latency)
                _Stats.in_flight -= 1
                payload = _response(body)
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(latency: float, port: int = 0) -> None:
    server = await asyncio.start_server(lambda r, w: _handle(r, w, latency), "127.0.0.1", port,
                                        backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency", type=float, default=0.5, help="seconds before each answer")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = p.parse_args()
    asyncio.run(serve(args.latency, args.port))


if __name__ == "__main__":
    main()
