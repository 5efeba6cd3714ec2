"""A small fault-injecting server that speaks the OpenAI chat-completions and Anthropic messages wire
formats, for testing the real SDKs against scripted failures on 127.0.0.1.

Requests are grouped by an item key: the first `jk-item-<key>` token found in the messages (else
"default"). For each key, `schedule[key]` lists what the 1st, 2nd, ... request gets; past the end
of the list (or for unscheduled keys, `default_schedule`) requests succeed. Faults:

  ok         a normal answer (n choices for OpenAI, capped by `max_choices`)
  429        rate limited, with `Retry-After: <retry_after>`
  500 / 503 / 529   server errors
  hang       no answer for `hang_seconds` (past the client timeout)
  slow       answers after `slow_seconds` (to observe concurrency)
  drop       the connection is closed without any response
  malformed  HTTP 200 with a truncated JSON body
  401        authentication error whose message echoes the presented key (as real APIs do)
  400        a bad request
  ctx        the provider's own context-length 400 (OpenAI code `context_length_exceeded`,
             Anthropic "prompt is too long")
  ctx-vllm / ctx-llamacpp / ctx-sglang   the context-length 400 as those servers word it

The answer is judge-like text whose scores depend on content: a response containing GOOD scores 9,
any other 2, so the best response is the same whatever order the judge shows them in. A scripted
fake model can answer instead (`reply`: the request body -> the text, or (text, finish_reason);
the reason goes out as it is, but "stop" and "length" become Anthropic's "end_turn" and
"max_tokens").
Stdlib only (ThreadingHTTPServer), so a connection can really be dropped.

Structured output and prompt caching, as the providers do them:
  * a JSON schema (OpenAI `response_format` json_schema, llama.cpp's json_object + schema) is
    answered with JSON for that schema, and an Anthropic forced tool call with a `tool_use` block
    (`structured_answer`); `refuse_structured=True` answers them as llama-cpp-python's server
    answers `{"type": "json_schema"}`: HTTP 500 naming `response_format`;
  * OpenAI caches automatically: a prompt's longest prefix shared with an earlier prompt, in
    128-token steps from `min_cached_tokens`, is reported as `prompt_tokens_details.cached_tokens`;
  * Anthropic caches what a `cache_control` block marks (tools, system and the text up to it): a
    first sight is `cache_creation_input_tokens`, later ones `cache_read_input_tokens`, and
    `input_tokens` counts the rest, as the API does;
  * `models_owned_by` is what GET /v1/models says owns the model (vLLM says "vllm").
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from support.loopback import LoopbackServer

KEY_RE = re.compile(r"jk-item-([A-Za-z0-9_.:-]+)")
_RESPONSE_BLOCK = re.compile(
    r"\[Start of Response (\d+)\]\n?(.*?)\n?\[End of Response \1\]", re.DOTALL)
# judgekit's prompts fence each response with the prompt's tag (see judgekit.formats).
_FENCED_BLOCK = re.compile(
    r"^<response-(\d+) tag=([0-9a-f]{16})>\n(.*?)\n</response-\1 tag=\2>$", re.DOTALL | re.MULTILINE)


def judge_text(responses: list[str] | None) -> str:
    """A parseable GRM judgement: GOOD responses score 9, others 2 (two responses if unknown)."""
    if not responses:
        responses = ["GOOD", "bad"]
    scores = [9 if "GOOD" in r else 2 for r in responses]
    lines = ["Specific Criteria:", "1. Accuracy (Weight: 100%): the answer is correct.", "Analysis:"]
    for i, s in enumerate(scores, 1):
        lines.append(f"Response {i}: {'fine' if s > 5 else 'worse'}. Accuracy: {s}")
    lines.append("Scores: \\boxed{" + ", ".join(str(s) for s in scores) + "}")
    return "\n".join(lines)


def rubric_text(responses: list[str] | None) -> str:
    """A fixed-rubric judgement (criteria Accuracy and Clarity): GOOD responses Accuracy 10,
    Clarity 6 (overall 9), others Accuracy 2, Clarity 8 (overall 4)."""
    rows = [([10, 6], 9) if "GOOD" in r else ([2, 8], 4) for r in responses or ["GOOD", "x"]]
    lines = ["Analysis:"]
    for i, (subs, _) in enumerate(rows, 1):
        lines += [f"Response {i}:", "- Accuracy: checked.", "- Clarity: checked.",
                  "Criterion scores: " + ", ".join(map(str, subs))]
    lines.append("Scores: \\boxed{" + ", ".join(str(o) for _, o in rows) + "}")
    return "\n".join(lines)


def shown_responses(prompt: str) -> list[str] | None:
    """The responses of the prompt's last 'Responses to Score' section, in shown order."""
    tail = prompt.rsplit("Responses to Score", 1)[-1]
    fenced = [body for _, _, body in _FENCED_BLOCK.findall(tail)]
    if fenced:
        return fenced
    blocks = _RESPONSE_BLOCK.findall(tail)
    return [b for _, b in blocks] or None


_CONTEXT_FAULTS: dict[str, dict[str, Any]] = {
    "ctx": {},
    "ctx-vllm": {"object": "error", "type": "BadRequestError", "param": None, "code": 400,
                 "message": "This model's maximum context length is 2048 tokens. However, you "
                            "requested 2600 tokens (2088 in the messages, 512 in the "
                            "completion). Please reduce the length of the messages or "
                            "completion."},
    "ctx-llamacpp": {"error": {"code": 400, "type": "exceed_context_size_error",
                               "message": "the request exceeds the available context size, "
                                          "try increasing it", "n_prompt_tokens": 5000,
                               "n_ctx": 4096}},
    "ctx-sglang": {"object": "error", "type": "BadRequestError", "code": 400,
                   "message": "The input (5000 tokens) is longer than the model's context "
                              "length (4096 tokens)."},
}


@dataclass
class Record:
    api: str
    key: str
    attempt: int
    fault: str
    n: int
    at: float
    auth: str
    body: dict[str, Any]


@dataclass
class FaultServer(LoopbackServer):
    schedule: dict[str, list[str]] = field(default_factory=dict)
    default_schedule: list[str] = field(default_factory=list)
    retry_after: str = "1"
    hang_seconds: float = 5.0
    slow_seconds: float = 0.2
    max_choices: int | None = None
    text: Callable[[list[str] | None], str] = judge_text
    reply: Callable[[dict[str, Any]], str | tuple[str, str]] | None = None
    refuse_structured: bool = False
    min_cached_tokens: int = 1024
    models_owned_by: str | None = None

    def __post_init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.records: list[Record] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.prompt_cache = PromptCache(self.min_cached_tokens)

    # -- lifecycle ------------------------------------------------------------------------------

    thread_name = "fault-server"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    def stop(self) -> None:
        self._stop.set()  # a hanging answer returns at once
        super().stop()

    # -- bookkeeping ----------------------------------------------------------------------------

    def next_fault(self, api: str, key: str, n: int, auth: str, body: dict[str, Any]) -> str:
        with self._lock:
            attempt = self.counts[key]
            self.counts[key] += 1
            plan = self.schedule.get(key, self.default_schedule)
            fault = plan[attempt] if attempt < len(plan) else "ok"
            self.records.append(Record(api, key, attempt, fault, n, time.monotonic(), auth, body))
            return fault

    def track(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def faults_injected(self) -> int:
        with self._lock:
            return sum(1 for r in self.records if r.fault != "ok")

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.records.clear()
            self.peak_in_flight = 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def _answer(server: FaultServer, body: dict[str, Any], responses: list[str] | None
            ) -> tuple[str, str]:
    """The text of one choice and its finish reason ("stop", "length" for a cut-off, or any
    reason a scripted `reply` gives, sent as it is)."""
    if server.reply is None:
        return server.text(responses), "stop"
    out = server.reply(body)
    return out if isinstance(out, tuple) else (out, "stop")


def _make_handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:
                self.close_connection = True

        def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers)

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/health", "/v1/models"):
                model: dict[str, Any] = {"id": "judge-test"}
                if server.models_owned_by is not None:
                    model["owned_by"] = server.models_owned_by
                self._json(200, {"status": "ok", "data": [model]})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            server.track(+1)
            try:
                self._post()
            finally:
                server.track(-1)

        def _post(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if len(raw) < length:  # the client went away mid-request (e.g. it was killed)
                self.close_connection = True
                return
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._json(400, {"error": {"message": "bad json"}})
                return
            path = self.path.split("?")[0].rstrip("/")
            if path.endswith("/chat/completions"):
                api = "openai"
                auth = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            elif path.endswith("/messages"):
                api = "anthropic"
                # anthropic>=2 sends `Authorization: Bearer`, older SDKs `x-api-key`.
                auth = (self.headers.get("x-api-key")
                        or self.headers.get("Authorization", "").removeprefix("Bearer ").strip())
            else:
                self._json(404, {"error": {"message": f"no route {path}"}})
                return
            messages = body.get("messages") or []
            texts = [_content_text(m.get("content")) for m in messages]
            system = body.get("system")
            if system:
                texts.insert(0, _content_text(system))
            prompt = "\n".join(texts)
            match = KEY_RE.search(prompt)
            key = match.group(1) if match else "default"
            n = int(body.get("n") or 1) if api == "openai" else 1
            fault = server.next_fault(api, key, n, auth, body)
            if self._inject(api, fault, auth):
                return
            if server.refuse_structured and structured_schema(body) is not None:
                self._json(500, LLAMACPP_REFUSAL)
                return
            responses = shown_responses(prompt)
            prompt_tokens = max(1, len(prompt) // 4)
            if api == "openai":
                self._openai_ok(body, n, responses, prompt_tokens)
            else:
                self._anthropic_ok(body, responses, prompt_tokens)

        def _error(self, api: str, status: int, kind: str, message: str,
                   headers: dict[str, str] | None = None) -> None:
            if api == "openai":
                obj: dict[str, Any] = {"error": {"message": message, "type": kind, "code": None}}
            else:
                obj = {"type": "error", "error": {"type": kind, "message": message}}
            self._json(status, obj, headers)

        def _inject(self, api: str, fault: str, auth: str) -> bool:
            """Act out `fault`; True when the request has been answered (or abandoned)."""
            if fault == "ok":
                return False
            if fault == "slow":
                time.sleep(server.slow_seconds)
                return False
            if fault == "429":
                self._error(api, 429, "rate_limit_error", "Rate limit reached, slow down.",
                            {"Retry-After": server.retry_after})
            elif fault in ("500", "503", "529"):
                kind = "overloaded_error" if fault == "529" else "server_error"
                self._error(api, int(fault), kind, f"injected {fault}")
            elif fault == "401":
                # Real providers echo (part of) the key; the client must scrub it.
                self._error(api, 401, "authentication_error",
                            f"Incorrect API key provided: {auth}. Check your key.")
            elif fault == "400":
                self._error(api, 400, "invalid_request_error", "injected bad request")
            elif fault in _CONTEXT_FAULTS:
                self._context_length(api, fault)
            elif fault == "hang":
                server._stop.wait(server.hang_seconds)
                self.close_connection = True
            elif fault == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
            elif fault == "malformed":
                self._send(200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [')
            else:
                raise ValueError(f"unknown fault {fault!r}")
            return True

        def _context_length(self, api: str, fault: str) -> None:
            if fault == "ctx" and api == "anthropic":
                self._error(api, 400, "invalid_request_error",
                            "prompt is too long: 210512 tokens > 200000 maximum")
            elif fault == "ctx":
                self._json(400, {"error": {
                    "message": "This model's maximum context length is 8192 tokens. However, "
                               "your messages resulted in 9000 tokens. Please reduce the length "
                               "of the messages.",
                    "type": "invalid_request_error", "param": "messages",
                    "code": "context_length_exceeded"}})
            else:
                self._json(400, _CONTEXT_FAULTS[fault])

        def _openai_ok(self, body: dict[str, Any], n: int, responses: list[str] | None,
                       prompt_tokens: int) -> None:
            choices = []
            completion_tokens = 0
            count = n if server.max_choices is None else min(n, server.max_choices)
            schema = structured_schema(body)
            for i in range(count):
                if schema is None:
                    text, finish = _answer(server, body, responses)
                else:
                    text, finish = json.dumps(structured_answer(schema, responses)), "stop"
                completion_tokens += max(1, len(text) // 4)
                choice: dict[str, Any] = {
                    "index": i, "finish_reason": finish,
                    "message": {"role": "assistant", "content": text}, "logprobs": None}
                if body.get("logprobs"):
                    top_n = int(body.get("top_logprobs") or 0)
                    content = []
                    for tok in re.findall(r"\S+|\s+", text)[:64]:
                        top = [{"token": tok, "logprob": -0.1, "bytes": None}]
                        top += [{"token": f"alt{j}", "logprob": -2.0 - j, "bytes": None}
                                for j in range(max(0, top_n - 1))]
                        content.append({"token": tok, "logprob": -0.1, "bytes": None,
                                        "top_logprobs": top[:top_n]})
                    choice["logprobs"] = {"content": content, "refusal": None}
                choices.append(choice)
            self._json(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model", "judge-test"),
                "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens,
                          "prompt_tokens_details": {"cached_tokens": server.prompt_cache.openai(
                              _prompt_of(body))}},
            })

        def _anthropic_ok(self, body: dict[str, Any], responses: list[str] | None,
                          prompt_tokens: int) -> None:
            schema = structured_schema(body)
            text, finish = _answer(server, body, responses)
            content: list[dict[str, Any]] = [{"type": "text", "text": text}]
            # "stop" and "length" are the OpenAI words; any other reason goes out as it is
            # (Anthropic's "refusal", "model_context_window_exceeded", ...).
            stop = {"stop": "end_turn", "length": "max_tokens"}.get(finish, finish)
            if schema is not None:
                answer = structured_answer(schema, responses)
                text = json.dumps(answer)
                content = [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}",
                            "name": body["tool_choice"]["name"], "input": answer}]
                stop = "tool_use"
            read, written = server.prompt_cache.anthropic(body)
            if body.get("tools"):  # tool definitions are billed as input, ahead of the prompt
                prompt_tokens += len(json.dumps(body["tools"])) // 4
            self._json(200, {
                "id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant",
                "model": body.get("model", "claude-test"),
                "content": content,
                "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": max(1, prompt_tokens - read - written),
                          "cache_read_input_tokens": read,
                          "cache_creation_input_tokens": written,
                          "output_tokens": max(1, len(text) // 4)},
            })

    return Handler


# -- structured output and prompt caching ---------------------------------------------------------
LLAMACPP_REFUSAL = {"error": {"message": "1 validation error:\n  {'type': 'literal_error', 'loc': "
                              "('body', 'response_format', 'type'), 'msg': \"Input should be "
                              "'text' or 'json_object'\", 'input': 'json_schema'}",
                              "type": "internal_server_error"}}
"""What llama-cpp-python's server answers to `response_format={"type": "json_schema"}` (500)."""


def structured_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks its answer to follow, however the API carries it."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            return dict(fmt.get("json_schema", {}).get("schema") or {})
        if fmt.get("type") == "json_object" and isinstance(fmt.get("schema"), dict):
            return dict(fmt["schema"])
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        for tool in body.get("tools") or []:
            if tool.get("name") == choice.get("name"):
                return dict(tool.get("input_schema") or {})
    return None


def structured_answer(schema: dict[str, Any], responses: list[str] | None) -> dict[str, Any]:
    """An answer for judgekit's schemas, by their fields: GOOD responses score 9, others 2."""
    responses = responses or ["GOOD", "bad"]
    scores = [9 if "GOOD" in r else 2 for r in responses]
    props = schema.get("properties", {})
    if "scores" in props:
        per = props["analysis"]["items"]["properties"]
        # A fixed rubric's schema lists no criteria: it says how many scores each analysis has.
        n_criteria = (2 if "criteria" in props
                      else per.get("criterion_scores", {}).get("minItems", 0))
        analysis = []
        for s in scores:
            item: dict[str, Any] = {"analysis": "fine" if s > 5 else "worse"}
            if "criterion_scores" in per:
                item["criterion_scores"] = [s] * n_criteria
            if "fixes" in per:
                item["fixes"] = [] if s > 5 else ["say it better"]
            analysis.append(item)
        answer: dict[str, Any] = {"analysis": analysis, "scores": scores}
        if "criteria" in props:
            answer = {"criteria": [{"name": "Accuracy", "weight": 60, "description": "correct"},
                                   {"name": "Clarity", "weight": 40, "description": "clear"}],
                      **answer}
        return answer
    if "best" in props:
        return {"reasoning": "the GOOD one", "best": scores.index(max(scores)) + 1}
    if "rating" in props:
        return {"reason": "sound", "rating": 8}
    return {"answer": "Yes"}


def _shared_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search over slice comparisons)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _prompt_of(body: dict[str, Any]) -> str:
    return "\n".join(_content_text(m.get("content")) for m in body.get("messages") or [])


class PromptCache:
    """The providers' prompt caches, approximated at 4 characters per token."""

    def __init__(self, min_tokens: int) -> None:
        self.min_tokens = min_tokens
        self._prompts: list[str] = []
        self._prefixes: set[str] = set()
        self._lock = threading.Lock()

    def openai(self, prompt: str) -> int:
        """Cached tokens of `prompt`: its longest prefix shared with an earlier prompt, counted
        in 128-token steps once it reaches `min_tokens` (OpenAI's automatic caching)."""
        with self._lock:
            shared = max((_shared_prefix(prompt, p) for p in self._prompts), default=0)
            self._prompts.append(prompt)
        tokens = shared // 4
        return tokens // 128 * 128 if tokens >= self.min_tokens else 0

    def anthropic(self, body: dict[str, Any]) -> tuple[int, int]:
        """(cache-read, cache-write) tokens: the prefix up to the last `cache_control` block
        (tools, then system, then the messages' blocks), read when seen before, else written."""
        parts: list[str] = [json.dumps(body.get("tools") or []), _content_text(body.get("system"))]
        marked_at = None
        for m in body.get("messages") or []:
            content = m.get("content")
            blocks = content if isinstance(content, list) else [{"text": content or ""}]
            for block in blocks:
                parts.append(str(block.get("text", "")))
                if block.get("cache_control"):
                    marked_at = len(parts)
        if marked_at is None:
            return 0, 0
        prefix = "".join(parts[:marked_at])
        tokens = len(prefix) // 4
        if tokens < self.min_tokens:
            return 0, 0
        with self._lock:
            seen = prefix in self._prefixes
            self._prefixes.add(prefix)
        return (tokens, 0) if seen else (0, tokens)
