"""Key hygiene: API keys live in one `Secret` holder and are scrubbed from every text we emit.

Provider SDKs echo keys back in error bodies ("Incorrect API key provided: sk-...") and a base URL
may carry credentials, so anything that leaves a backend (exception messages, logs, specs) passes
through `scrub` / `safe_url` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# Shapes of provider keys and bearer tokens that should never be printed even when we do not
# hold the exact key (e.g. a server echoing a different, partially masked key).
_KEY_SHAPES = re.compile(
    r"(?:sk-ant-[A-Za-z0-9_\-*]{4,}|sk-[A-Za-z0-9_\-*]{4,}|(?i:bearer)\s+[A-Za-z0-9_\-.=*]{8,})"
)


class Secret:
    """Holds a key so that repr(), str() and pickles of the owner never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def scrub(text: str, secrets: Iterable[str | Secret | None] = ()) -> str:
    """`text` with every given secret (and anything shaped like a provider key) replaced."""
    for s in secrets:
        value = s.get() if isinstance(s, Secret) else s
        # Very short values (placeholders such as "x") would mangle ordinary words.
        if value and len(value) >= 6:
            text = text.replace(value, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


def url_secrets(url: str | None) -> list[str]:
    """Credentials embedded in a URL (user:password@host), to scrub alongside the API key."""
    if not url:
        return []
    parts = urlsplit(str(url))
    return [p for p in (parts.password, parts.username) if p]


def is_http_url(url: str) -> bool:
    """True for an absolute http:// or https:// URL with a host (and a valid port, if any)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def safe_url(url: str | None) -> str | None:
    """A base URL without user:password, query or fragment (fit for specs, logs and cache keys)."""
    if not url:
        return None
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: kept as written, credentials dropped
        host = parts.netloc.rpartition("@")[2]
    else:
        if port is not None:
            host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
