"""Typed errors. Every failure a user can meet has its own class, so callers can catch precisely.

The tree (httpx style)::

    JudgekitError
    ├── ParseError               model text with no readable final scores line (carries .raw)
    ├── ModelSpecError           a spec naming no backend, or a missing model file  (+ValueError)
    ├── TemplateError            a template that cannot be found or rendered
    ├── RubricError              a user rubric (file) that cannot be read or is invalid (+ValueError)
    ├── CapabilityError          asked a backend for something it does not declare   (+ValueError)
    ├── MissingDependencyError   an optional extra is not installed                  (+ImportError)
    ├── CacheError               the response cache file is corrupt or unreadable
    ├── ConfigurationError       a setting that cannot work, found before any call   (+ValueError)
    ├── RunAbortedError          a batch stopped early: the backend failed for everyone
    └── BackendError             a model call failed; mapped once, at the backend's boundary
        ├── TransientBackendError    worth a retry: 5xx, dropped connections, malformed bodies
        │   ├── RateLimitError       429 (retry_after from the server)
        │   ├── APITimeoutError      the attempt took longer than its timeout
        │   └── ServerUnreachableError  connection refused / unknown host (short retry budget)
        │       └── CircuitOpenError    not sent: the server refused the last attempts
        └── FatalBackendError        retrying cannot help: 400/404 and the like
            ├── AuthenticationError  401/403
            │   └── MissingAPIKeyError  no key at all (also a ConfigurationError)
            ├── ContextLengthError   the prompt does not fit the model's context
            ├── StructuredOutputRejected  the server refused the JSON schema / grammar parameter
            └── LocalModelError      the in-process model failed (torch/transformers errors)

Which errors become a *recorded* failure (a sample with status `api_error`, a batch item with
`error` set) instead of an exception is decided here, once: `RECORDED_FAILURES` for model calls,
`ITEM_FAILURES` for one item of a batch. Anything else is a bug and propagates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from judgekit.schema import Usage


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


class RubricError(JudgekitError, ValueError):
    """A user rubric that cannot be read, or whose criteria are invalid (names, weights)."""


class BackendError(JudgekitError):
    """A call to a model backend failed. `retryable` tells the retry policy what to do."""

    retryable: bool = False
    retries: int = 0
    """How many retries the retry policy spent before giving up (set by `judgekit.retry`)."""
    usage: Usage | None = None
    """What the failed call spent in all, where more than one request made it up (OpenAI
    top-ups, Anthropic's parallel samples): the successful siblings' tokens and calls plus the
    failed ones. None: the call cost one call and `retries`."""

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


class ConfigurationError(JudgekitError, ValueError):
    """A setting that cannot work, found before any call is made: a base URL that is not an
    http(s) URL, a remote model with no API key. The command line exits 2 with its message."""


class MissingAPIKeyError(AuthenticationError, ConfigurationError):
    """No API key for a remote model: the message names the environment variable to set."""


class ContextLengthError(FatalBackendError):
    """The prompt (plus max tokens) does not fit the model's context window. Never retried."""


class StructuredOutputRejected(FatalBackendError):
    """The server answered a request that carried a JSON schema or grammar with an error that
    names that parameter (llama.cpp's server answers `{"type": "json_schema"}` with HTTP 500).
    Never retried as a server fault: the backend sends the request once more without it and
    records the fallback on each completion."""


class LocalModelError(FatalBackendError):
    """The in-process model failed (a torch or transformers error, e.g. out of memory)."""


class CapabilityError(JudgekitError, ValueError):
    """A backend was asked for something it does not declare (a grammar, forced completion)."""


class MissingDependencyError(JudgekitError, ImportError):
    """An optional extra is needed for this backend or feature."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the package {package!r}: "
            f"pip install 'judgekit-grm[{extra}]'"
        )
        self.package = package
        self.extra = extra


RECORDED_FAILURES: tuple[type[BaseException], ...] = (BackendError,)
"""Errors of a model call that become a recorded sample failure (status `api_error`)."""

ITEM_FAILURES: tuple[type[BaseException], ...] = (JudgekitError, ValueError)
"""Errors while judging one item of a batch that are recorded on that item's Verdict (`error`)
instead of aborting the batch: failed calls, unreadable input, a refused configuration. Except
`RUN_FAILURES`, which are checked first."""


def is_recorded_failure(exc: BaseException) -> bool:
    """True when `exc` is a failed model call to record as a sample failure, not a bug."""
    return isinstance(exc, RECORDED_FAILURES)


def describe_error(exc: BaseException) -> str:
    """The one-line description stored in results: the class name and the message."""
    return f"{type(exc).__name__}: {exc}"


class ServerUnreachableError(TransientBackendError):
    """The server could not be reached at all: connection refused, unknown host, connect timeout.

    Retried on a short budget (`RetryPolicy.connect_retries`), and counted by the backend's
    circuit breaker: a dead server costs seconds, not a minute per request.
    """


class CircuitOpenError(ServerUnreachableError):
    """Not sent: the backend's last connection attempts all failed, so it fails fast until a
    cool-down has passed and a probe request gets through."""

    retryable = False


class RunAbortedError(JudgekitError):
    """A batch stopped early because the backend failed for everyone (a rejected key, or a run
    of items that could not reach the server). Items finished before the stop were recorded
    (`on_result`), so a re-run resumes; `verdicts` holds them by input index."""

    def __init__(self, message: str, *, cause: str, finished: int, total: int) -> None:
        super().__init__(message)
        self.cause = cause
        self.finished = finished
        self.total = total
        self.verdicts: dict[int, object] = {}


def recorded_error_class(description: str | None) -> type[JudgekitError] | None:
    """The judgekit error class a `describe_error` text starts with ("AuthenticationError: ..."),
    or None; lets a batch read back what kind of failure a recorded sample holds."""
    if not description:
        return None
    name = description.split(":", 1)[0].strip()
    todo: list[type[JudgekitError]] = [JudgekitError]
    while todo:
        cls = todo.pop()
        if cls.__name__ == name:
            return cls
        todo.extend(cls.__subclasses__())
    return None


class CacheError(JudgekitError):
    """The on-disk response cache cannot be used (a corrupt or unreadable file). The message
    names the file and the way out: delete it, or run without the cache."""


RUN_FAILURES: tuple[type[BaseException], ...] = (CacheError,)
"""Errors that stop a whole batch the first time they occur, never recorded on an item: the item
was not judged (nothing to record), and every other item would meet them too. A batch raises
`RunAbortedError` naming the error, its finished items recorded."""
