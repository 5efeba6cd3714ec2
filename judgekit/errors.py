"""Typed errors. Every failure a user can meet has its own class, so callers can catch precisely."""

from __future__ import annotations


class JudgekitError(Exception):
    """Base class of every error judgekit raises on purpose."""


class ParseError(JudgekitError):
    """Model text from which no valid scores line could be read. Carries the raw text."""

    def __init__(self, message: str, raw: str, n_responses: int | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.n_responses = n_responses


class ModelSpecError(JudgekitError, ValueError):
    """A model spec string that names no known backend, or a file that is not there."""


class TemplateError(JudgekitError):
    """A prompt template that cannot be found or rendered."""


class BackendError(JudgekitError):
    """A call to a model backend failed. `retryable` tells the retry policy what to do."""

    retryable: bool = False
    retries: int = 0
    """How many retries the retry policy spent before giving up (set by `judgekit.retry`)."""

    def __init__(self, message: str, *, status_code: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class TransientBackendError(BackendError):
    """429, 5xx, timeout or a dropped connection: worth retrying with backoff."""

    retryable = True


class RateLimitError(TransientBackendError):
    """HTTP 429; `retry_after` holds the server's Retry-After in seconds when it sent one."""


class APITimeoutError(TransientBackendError):
    """The request took longer than the per-request timeout."""


class FatalBackendError(BackendError):
    """400/401/403/404 and similar: retrying cannot help."""


class AuthenticationError(FatalBackendError):
    """401/403: the key is missing or wrong (the key itself is never put in the message)."""


class MissingDependencyError(JudgekitError, ImportError):
    """An optional extra is needed for this backend or feature."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the package {package!r}: "
            f"pip install 'judgekit-grm[{extra}]'"
        )
        self.package = package
        self.extra = extra
