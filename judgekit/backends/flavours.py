"""OpenAI-compatible servers: what each flavour can enforce, and how it is asked on the wire.

Every server takes a JSON schema its own way (all in the request body):

==========  ==============================================================  =============
flavour     JSON schema                                                     grammar
==========  ==============================================================  =============
openai      ``response_format={"type": "json_schema", "json_schema":        -
            {"name", "strict": true, "schema"}}`` (strict: ``maxLength``
            stripped, which strict mode rejects)
llamacpp    ``response_format={"type": "json_object", "schema": ...}``      ``grammar``
            (llama-cpp-python's server answers ``"json_schema"`` with 500)   (GBNF)
vllm        ``response_format`` json_schema (OpenAI style)                  -
sglang      ``response_format`` json_schema (OpenAI style)                  -
ollama      ``response_format`` json_schema (Ollama >= 0.5 turns it into     -
            its ``format``)
generic     none: free text                                                 -
==========  ==============================================================  =============

`auto` (the default for a base URL that is not OpenAI's) asks the server what it is, once, before
its first structured request (`detect_flavour`): the `owned_by` of GET /v1/models (vLLM, SGLang,
llama.cpp's own server), the title of GET /openapi.json (llama-cpp-python's server) and GET
/api/version (Ollama). A server that says nothing is `generic`: its requests go without a schema,
and each completion records why (`Completion.structured_fallback`).

A server that refuses the parameter (an error that names it, `refusal`) is not retried as a
server fault: the backend sends the request once more without it, remembers the refusal for
later requests and records it on every completion written without the schema.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.error
import urllib.request
from typing import Any, Literal

from judgekit.backends.base import BackendCapabilities
from judgekit.config import GenerationConfig
from judgekit.errors import StructuredOutputRejected

ServerFlavour = Literal["openai", "llamacpp", "vllm", "sglang", "ollama", "generic", "auto"]
FLAVOURS: tuple[str, ...] = ("openai", "llamacpp", "vllm", "sglang", "ollama", "generic", "auto")

OPENAI_CUTOFF_REASONS = frozenset({"length", "content_filter"})
"""The chat-completions `finish_reason`s for an answer that did not end by itself: the token
limit, and OpenAI's content filter (its text stops wherever the filter cut in)."""

_CAPABILITIES: dict[str, BackendCapabilities] = {
    name: BackendCapabilities(cutoff_reasons=OPENAI_CUTOFF_REASONS, **flags)
    for name, flags in {
        "openai": {"logprobs": True, "json_schema": True},
        "llamacpp": {"logprobs": True, "json_schema": True, "grammar": True},
        "vllm": {"logprobs": True, "json_schema": True},
        "sglang": {"logprobs": True, "json_schema": True},
        "ollama": {"logprobs": True, "json_schema": True},
        "generic": {"logprobs": True},
    }.items()
}
_AUTO_CAPABILITIES: dict[str, BackendCapabilities] = {
    name: found.model_copy(update={"json_schema": True}) for name, found in _CAPABILITIES.items()}
"""An `auto` server's capabilities once it is detected as each flavour (before: `generic`'s):
a JSON schema is always declared, sent where the server takes one. Made once, as every request
reads them."""

# An error that names the structured-output parameter (llama.cpp: "('body', 'response_format',
# 'type') Input should be 'text' or 'json_object'"; others: "unknown field `guided_json`",
# "tools are not supported", ...).
_NAMES_PARAMETER = re.compile(
    r"response_format|json_schema|json_object|grammar|guided|structured.output|tool_choice"
    r"|\btools?\b|\bschema\b", re.IGNORECASE)


def check_flavour(flavour: str | None, *, official: bool) -> str:
    """The flavour to use: as given, else `openai` for OpenAI's own API and `auto` elsewhere."""
    if flavour is None:
        return "openai" if official else "auto"
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown server_flavour {flavour!r}: expected one of "
                         f"{', '.join(FLAVOURS)}")
    return flavour


@functools.cache  # asked per request (`check_config`); two strings in, a frozen model out
def capabilities(flavour: str, detected: str | None = None) -> BackendCapabilities:
    """What a server of `flavour` can enforce. `auto` declares a JSON schema (sent where the
    detected server takes one, else recorded as a fallback), plus what the detected server adds."""
    if flavour != "auto":
        return _CAPABILITIES[flavour]
    return _AUTO_CAPABILITIES[detected or "generic"]


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without the keywords OpenAI's strict mode rejects (string lengths)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("maxLength", "minLength"):
            continue
        if isinstance(value, dict):
            out[key] = strict_schema(value)
        elif isinstance(value, list):
            out[key] = [strict_schema(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


def schema_name(schema: dict[str, Any]) -> str:
    """The schema's name on the wire (its title), limited to what the APIs accept."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "judgement"))
    return name[:64] or "judgement"


def structured_fields(flavour: str, config: GenerationConfig) -> dict[str, Any]:
    """The request-body fields that carry `config.json_schema` / `config.grammar` for a server of
    `flavour` (already resolved: not `auto`); {} when there is nothing to send."""
    fields: dict[str, Any] = {}
    schema = config.json_schema
    if schema is not None:
        if flavour == "openai":
            fields["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema_name(schema), "strict": True, "schema": strict_schema(schema)}}
        elif flavour == "llamacpp":
            fields["response_format"] = {"type": "json_object", "schema": schema}
        elif flavour in ("vllm", "sglang", "ollama"):
            fields["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema_name(schema), "strict": True, "schema": schema}}
    if config.grammar is not None and flavour == "llamacpp":
        fields["grammar"] = config.grammar
    return fields


def refusal(exc: BaseException, sdk: Any) -> StructuredOutputRejected | None:
    """A `StructuredOutputRejected` when `exc` (an SDK exception of a request that carried a
    schema or grammar) is the server refusing that parameter: a 400/422 or 5xx whose message
    names it. None otherwise (the error is then mapped and retried as usual)."""
    if not isinstance(exc, sdk.APIStatusError):
        return None
    status = int(exc.status_code)
    if not (status in (400, 422) or status >= 500):
        return None
    text = f"{exc} {getattr(exc, 'body', '')}"
    if not _NAMES_PARAMETER.search(text):
        return None
    return StructuredOutputRejected(
        f"the server refused the structured-output parameter (HTTP {status}): {text[:300]}",
        status_code=status)


def fallback_note(reason: str) -> str:
    """What a completion written without its schema records."""
    return f"written as free text: {reason}"


class NoAnswer(Exception):
    """The server did not answer a probe at all (refused, or silent past the timeout)."""


def _get_json(url: str, api_key: str | None, timeout: float) -> Any:
    """The JSON a GET answers, None for any answer that is not JSON (an HTTP error included);
    NoAnswer when no answer came."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout) as response:
            return json.loads(response.read(1_000_000))
    except urllib.error.HTTPError:  # an answer, just not the one we hoped for
        return None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, OSError):  # refused, unreachable, timed out
            raise NoAnswer(str(exc.reason)) from None
        return None
    except TimeoutError as exc:  # the headers came, the body never did
        raise NoAnswer(str(exc)) from None
    except (OSError, ValueError):  # a dropped connection, a body that is not JSON
        return None


def detect_flavour(base_url: str, api_key: str | None, timeout: float = 2.0
                   ) -> tuple[str, str] | None:
    """(flavour, evidence) of the server at `base_url` (ending in /v1 or not), from what it says
    about itself; (`generic`, why) when it says nothing recognisable; None when it does not
    answer at all (then nothing is learnt, and the request that follows meets the same server
    under its own deadline). A few small blocking GETs (stdlib HTTP: the SDKs' HTTP client
    differs by version); the backend runs them once, in a thread. `timeout` is short: a server
    answers what it is at once, and a silent one must not cost a whole request timeout more."""
    try:
        return _detect(base_url, api_key, timeout)
    except NoAnswer:
        return None


def _detect(base_url: str, api_key: str | None, timeout: float) -> tuple[str, str]:
    v1 = base_url.rstrip("/")
    v1 = v1 if v1.endswith("/v1") else v1 + "/v1"
    root = v1.removesuffix("/v1")
    models = _get_json(v1 + "/models", api_key, timeout)
    data = models.get("data") if isinstance(models, dict) else None
    owners = {str(m.get("owned_by", "")).lower() for m in data or [] if isinstance(m, dict)}
    for owner, flavour in (("vllm", "vllm"), ("sglang", "sglang"), ("llamacpp", "llamacpp"),
                           ("llama.cpp", "llamacpp"), ("ollama", "ollama")):
        if owner in owners:
            return flavour, f"GET /v1/models says owned_by={owner!r}"
    spec = _get_json(root + "/openapi.json", api_key, timeout)
    info = spec.get("info") if isinstance(spec, dict) else None
    title = str(info.get("title", "")) if isinstance(info, dict) else ""
    if "llama.cpp" in title.lower() or "llama_cpp" in title.lower():
        return "llamacpp", f"GET /openapi.json says title={title!r}"
    version = _get_json(root + "/api/version", api_key, timeout)
    if isinstance(version, dict) and "version" in version:
        return "ollama", "GET /api/version answers like Ollama"
    seen = ", ".join(sorted(o for o in owners if o)) or "nothing"
    return "generic", (f"the server did not say it takes a JSON schema (owned_by: {seen}); "
                       "pass server_flavour= (llamacpp, vllm, sglang, ollama) to use one")


__all__ = [
    "FLAVOURS",
    "ServerFlavour",
    "capabilities",
    "check_flavour",
    "detect_flavour",
    "fallback_note",
    "refusal",
    "strict_schema",
    "structured_fields",
]
