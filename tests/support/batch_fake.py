"""A PROTOCOL FAKE of the providers' batch endpoints, on 127.0.0.1: OpenAI's Batch API (files
upload and download, batches create / retrieve / cancel / list) and Anthropic's Message Batches
(create / retrieve / cancel / results), in their wire formats, so judgekit.batch_api is tested
through the real openai and anthropic SDKs. No provider runs here: a fake stands where nothing
real can run (the providers' batch services), and is named as one.

It also answers online chat completions and messages with the same text, so re-asks and an
online run over the same model outputs go to the same server (and the same model spec).

Scripting:

* `steps`: the states a job passes through, one per retrieve (OpenAI: validating, in_progress,
  finalizing; Anthropic: in_progress), before it ends as `end` ("completed", or "expired"; an
  Anthropic job ends as `ended` either way, its unfinished requests `expired`).
* `unfinished`: item keys (the `jk-item-<key>` token of a prompt) whose requests the job never
  runs when it expires or is cancelled; the others complete.
* `request_faults[key]`: what the 1st, 2nd, ... batch request of that key gets: "ok", "400",
  "500", "429" (an error inside a completed job); past the end of the list, "ok".
* a job whose input file repeats a custom id fails validation (state `failed`), as OpenAI's does.

The answer text is `fault_server.judge_text` (GOOD responses score 9, others 2) unless `text` is
replaced; `delay` makes each online answer take that long. `http` counts every HTTP request by
route (the benchmark reads it).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler
from typing import Any

from support.fault_server import (
    KEY_RE,
    _content_text,
    judge_text,
    shown_responses,
    structured_answer,
    structured_schema,
)
from support.loopback import LoopbackServer

OPENAI_STEPS = ("validating", "in_progress", "finalizing")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Job:
    api: str
    id: str
    requests: list[dict[str, Any]]  # {"custom_id", "body"}
    created: float
    metadata: dict[str, Any] = field(default_factory=dict)
    input_file_id: str = ""
    step: int = 0
    state: str = ""
    results: list[dict[str, Any]] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None


@dataclass
class BatchFake(LoopbackServer):
    steps: tuple[str, ...] | None = None
    end: str = "completed"
    unfinished: set[str] = field(default_factory=set)
    request_faults: dict[str, list[str]] = field(default_factory=dict)
    text: Callable[[list[str] | None], str] = judge_text
    delay: float = 0.0  # seconds an online answer takes (a model's latency, for benchmarks)

    def __post_init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, bytes] = {}
        self.http: Counter[str] = Counter()
        self.online_bodies: list[dict[str, Any]] = []
        self.fault_counts: Counter[str] = Counter()
        self._lock = threading.RLock()

    # -- lifecycle ------------------------------------------------------------------------------
    thread_name = "batch-fake"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    def submitted_custom_ids(self) -> list[str]:
        with self._lock:
            return [r["custom_id"] for job in self.jobs.values() for r in job.requests]

    # -- model answers --------------------------------------------------------------------------
    @staticmethod
    def prompt_of(body: dict[str, Any]) -> str:
        texts = [_content_text(m.get("content")) for m in body.get("messages") or []]
        if body.get("system"):
            texts.insert(0, _content_text(body["system"]))
        return "\n".join(texts)

    def answer(self, api: str, body: dict[str, Any]) -> dict[str, Any]:
        """The online response body for a chat-completions or messages request body."""
        prompt = self.prompt_of(body)
        responses = shown_responses(prompt)
        prompt_tokens = max(1, len(prompt) // 4)
        # Under a JSON schema the default answer is JSON for it (a scripted `text` still answers
        # as scripted, so tests of unreadable answers keep their text).
        schema = structured_schema(body) if self.text is judge_text else None
        if api == "openai":
            choices, completion_tokens = [], 0
            for i in range(int(body.get("n") or 1)):
                text = (self.text(responses) if schema is None
                        else json.dumps(structured_answer(schema, responses)))
                completion_tokens += max(1, len(text) // 4)
                choices.append({"index": i, "finish_reason": "stop", "logprobs": None,
                                "message": {"role": "assistant", "content": text}})
            return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                    "created": int(time.time()), "model": body.get("model", "judge-test"),
                    "choices": choices,
                    "usage": {"prompt_tokens": prompt_tokens,
                              "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}}
        text = self.text(responses)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if schema is not None:
            answer = structured_answer(schema, responses)
            text = json.dumps(answer)
            content = [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}",
                        "name": body["tool_choice"]["name"], "input": answer}]
        return {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant",
                "model": body.get("model", "claude-test"),
                "content": content, "stop_reason": "tool_use" if schema else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": max(1, len(text) // 4)}}

    def _fault(self, body: dict[str, Any]) -> str:
        match = KEY_RE.search(self.prompt_of(body))
        key = match.group(1) if match else "default"
        plan = self.request_faults.get(key, [])
        attempt = self.fault_counts[key]
        self.fault_counts[key] += 1
        return plan[attempt] if attempt < len(plan) else "ok"

    def _key(self, body: dict[str, Any]) -> str:
        match = KEY_RE.search(self.prompt_of(body))
        return match.group(1) if match else "default"

    # -- jobs -----------------------------------------------------------------------------------
    def _steps(self, api: str) -> tuple[str, ...]:
        if self.steps is not None:
            return self.steps
        return OPENAI_STEPS if api == "openai" else ("in_progress",)

    def advance(self, job: Job) -> None:
        """One retrieve: the next state, and the results once the job ends."""
        if job.results is not None:
            return
        steps = self._steps(job.api)
        if job.state in ("cancelling", "canceling"):
            self._finish(job, cancelled=True)
            return
        if job.step < len(steps):
            job.state = steps[job.step]
            job.step += 1
            return
        self._finish(job, cancelled=False)

    def _finish(self, job: Job, cancelled: bool) -> None:
        ended_early = cancelled or self.end == "expired"
        results: list[dict[str, Any]] = []
        for req in job.requests:
            body = req["body"]
            if ended_early and (not self.unfinished or self._key(body) in self.unfinished):
                results.append({"custom_id": req["custom_id"],
                                "not_run": "cancelled" if cancelled else "expired"})
                continue
            fault = self._fault(body)
            if fault == "ok":
                results.append({"custom_id": req["custom_id"], "status": 200,
                                "body": self.answer(job.api, body)})
            else:
                results.append({"custom_id": req["custom_id"], "status": int(fault)})
        job.results = results
        if job.api == "openai":
            job.state = "cancelled" if cancelled else ("expired" if self.end == "expired"
                                                       else "completed")
            self._openai_files(job)
        else:
            job.state = "ended"

    def _openai_files(self, job: Job) -> None:
        out, err = [], []
        for r in job.results or []:
            line: dict[str, Any] = {"id": f"batch_req_{uuid.uuid4().hex[:12]}",
                                    "custom_id": r["custom_id"]}
            if "not_run" in r:
                code = "batch_cancelled" if r["not_run"] == "cancelled" else "batch_expired"
                err.append({**line, "response": None, "error": {
                    "code": code, "message": f"The request was not run ({r['not_run']})."}})
            elif r["status"] == 200:
                out.append({**line, "error": None, "response": {
                    "status_code": 200, "request_id": uuid.uuid4().hex, "body": r["body"]}})
            else:
                kind = {400: "invalid_request_error", 429: "rate_limit_error"}.get(
                    r["status"], "server_error")
                err.append({**line, "error": None, "response": {
                    "status_code": r["status"], "request_id": uuid.uuid4().hex,
                    "body": {"error": {"message": f"injected {r['status']}", "type": kind}}}})
        for lines, attr in ((out, "output_file_id"), (err, "error_file_id")):
            if lines:
                fid = f"file-{uuid.uuid4().hex[:16]}"
                self.files[fid] = "".join(json.dumps(x) + "\n" for x in lines).encode()
                setattr(job, attr, fid)

    def openai_job(self, job: Job) -> dict[str, Any]:
        counts = {"total": len(job.requests), "completed": 0, "failed": 0}
        for r in job.results or []:
            counts["completed" if r.get("status") == 200 else "failed"] += 1
        obj: dict[str, Any] = {
            "id": job.id, "object": "batch", "endpoint": "/v1/chat/completions",
            "errors": {"object": "list", "data": job.errors} if job.errors else None,
            "input_file_id": job.input_file_id, "completion_window": "24h",
            "status": job.state, "output_file_id": job.output_file_id,
            "error_file_id": job.error_file_id, "created_at": int(job.created),
            "expires_at": int(job.created) + 86400, "request_counts": counts,
            "metadata": job.metadata or None}
        return obj

    def anthropic_job(self, job: Job) -> dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if job.results is None:
            counts["processing"] = len(job.requests)
        for r in job.results or []:
            if "not_run" in r:
                counts["canceled" if r["not_run"] == "cancelled" else "expired"] += 1
            else:
                counts["succeeded" if r["status"] == 200 else "errored"] += 1
        ended = job.state == "ended"
        return {
            "id": job.id, "type": "message_batch", "processing_status": job.state,
            "request_counts": counts, "created_at": _iso(job.created),
            "expires_at": _iso(job.created + 86400), "archived_at": None,
            "cancel_initiated_at": None, "ended_at": _iso(time.time()) if ended else None,
            "results_url": (f"{self.anthropic_url}/v1/messages/batches/{job.id}/results"
                            if ended else None)}

    def anthropic_results(self, job: Job) -> bytes:
        lines = []
        for r in job.results or []:
            if "not_run" in r:
                result: dict[str, Any] = {"type": "canceled" if r["not_run"] == "cancelled"
                                          else "expired"}
            elif r["status"] == 200:
                result = {"type": "succeeded", "message": r["body"]}
            else:
                kind = {400: "invalid_request_error", 429: "rate_limit_error"}.get(
                    r["status"], "api_error")
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": kind, "message": f"injected {r['status']}"}}}
            lines.append(json.dumps({"custom_id": r["custom_id"], "result": result}) + "\n")
        return "".join(lines).encode()


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    msg = BytesParser(policy=email_policy).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        parts[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return parts


def _make_handler(fake: BatchFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode())

        def _not_found(self) -> None:
            self._json(404, {"error": {"message": f"no route {self.command} {self.path}",
                                       "type": "not_found_error"}})

        def _route(self) -> str:
            return self.path.split("?")[0].rstrip("/")

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            path = self._route()
            parts = path.strip("/").split("/")
            with fake._lock:
                if path == "/v1/batches":
                    fake.http["openai batches list"] += 1
                    data = [fake.openai_job(j) for j in reversed(fake.jobs.values())
                            if j.api == "openai"]
                    self._json(200, {"object": "list", "data": data, "has_more": False,
                                     "first_id": data[0]["id"] if data else None,
                                     "last_id": data[-1]["id"] if data else None})
                elif parts[:2] == ["v1", "batches"] and len(parts) == 3:
                    fake.http["openai batch retrieve"] += 1
                    job = fake.jobs.get(parts[2])
                    if job is None:
                        return self._not_found()
                    fake.advance(job)
                    self._json(200, fake.openai_job(job))
                elif parts[:2] == ["v1", "files"] and parts[-1] == "content":
                    fake.http["openai file download"] += 1
                    content = fake.files.get(parts[2])
                    if content is None:
                        return self._not_found()
                    self._send(200, content, "application/octet-stream")
                elif parts[:3] == ["v1", "messages", "batches"] and len(parts) == 4:
                    fake.http["anthropic batch retrieve"] += 1
                    job = fake.jobs.get(parts[3])
                    if job is None:
                        return self._not_found()
                    fake.advance(job)
                    self._json(200, fake.anthropic_job(job))
                elif parts[:3] == ["v1", "messages", "batches"] and parts[-1] == "results":
                    fake.http["anthropic results download"] += 1
                    job = fake.jobs.get(parts[3])
                    if job is None or job.results is None:
                        return self._not_found()
                    self._send(200, fake.anthropic_results(job), "application/binary")
                else:
                    self._not_found()
            return None

        def do_POST(self) -> None:
            path = self._route()
            parts = path.strip("/").split("/")
            raw = self._body()
            if path.endswith("/chat/completions") or path == "/v1/messages":
                api = "openai" if path.endswith("/chat/completions") else "anthropic"
                body = json.loads(raw or b"{}")
                if fake.delay:
                    time.sleep(fake.delay)
                with fake._lock:
                    fake.http[f"{api} online"] += 1
                    fake.online_bodies.append(body)
                    answer = fake.answer(api, body)
                return self._json(200, answer)
            with fake._lock:
                if path == "/v1/files":
                    fake.http["openai file upload"] += 1
                    form = _multipart(self.headers.get("Content-Type", ""), raw)
                    filename, data = form["file"]
                    fid = f"file-{uuid.uuid4().hex[:16]}"
                    fake.files[fid] = data
                    self._json(200, {"id": fid, "object": "file", "bytes": len(data),
                                     "created_at": int(time.time()),
                                     "filename": filename or "input.jsonl",
                                     "purpose": form.get("purpose", (None, b"batch"))[1].decode(),
                                     "status": "processed"})
                elif path == "/v1/batches":
                    fake.http["openai batch create"] += 1
                    self._openai_create(json.loads(raw))
                elif parts[:2] == ["v1", "batches"] and parts[-1] == "cancel":
                    fake.http["openai batch cancel"] += 1
                    job = fake.jobs.get(parts[2])
                    if job is None:
                        return self._not_found()
                    if job.results is None:
                        job.state = "cancelling"
                    self._json(200, fake.openai_job(job))
                elif path == "/v1/messages/batches":
                    fake.http["anthropic batch create"] += 1
                    body = json.loads(raw)
                    job = Job("anthropic", f"msgbatch_{uuid.uuid4().hex[:16]}",
                              [{"custom_id": r["custom_id"], "body": r["params"]}
                               for r in body["requests"]], time.time(), state="in_progress")
                    fake.jobs[job.id] = job
                    self._json(200, fake.anthropic_job(job))
                elif parts[:3] == ["v1", "messages", "batches"] and parts[-1] == "cancel":
                    fake.http["anthropic batch cancel"] += 1
                    job = fake.jobs.get(parts[3])
                    if job is None:
                        return self._not_found()
                    if job.results is None:
                        job.state = "canceling"
                    self._json(200, fake.anthropic_job(job))
                else:
                    self._not_found()
            return None

        def _openai_create(self, body: dict[str, Any]) -> None:
            data = fake.files.get(body.get("input_file_id", ""))
            if data is None:
                return self._json(400, {"error": {"message": "no such file",
                                                  "type": "invalid_request_error"}})
            lines = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
            job = Job("openai", f"batch_{uuid.uuid4().hex[:16]}",
                      [{"custom_id": x["custom_id"], "body": x["body"]} for x in lines],
                      time.time(), metadata=body.get("metadata") or {},
                      input_file_id=body["input_file_id"], state="validating")
            ids = [x["custom_id"] for x in lines]
            if len(set(ids)) != len(ids) or any(x.get("url") != body.get("endpoint")
                                                for x in lines):
                job.state, job.results = "failed", []
                job.errors = [{"code": "invalid_input", "message": "duplicate custom_id or "
                               "url not matching the endpoint", "line": None, "param": None}]
            fake.jobs[job.id] = job
            return self._json(200, fake.openai_job(job))

    return Handler
