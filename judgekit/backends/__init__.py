"""Backends behind one async protocol; see `base.Backend` and `registry.resolve_backend`."""

from judgekit.backends.base import (
    Backend,
    BackendCapabilities,
    Completion,
    GenerationResult,
    TokenLogprob,
)
from judgekit.backends.registry import register_backend, resolve_backend

__all__ = [
    "Backend",
    "BackendCapabilities",
    "Completion",
    "GenerationResult",
    "TokenLogprob",
    "register_backend",
    "resolve_backend",
]
