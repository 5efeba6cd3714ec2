"""Model spec strings -> backends. SDKs are imported lazily, inside the provider modules.

Specs:
  None / "embedded"      the embedded SmolLM2-135M-Instruct (local, transformers)
  "hf:<dir or repo>"     a local Hugging Face model directory (no hub downloads at run time)
  "gguf:<file>"          a local GGUF file, loaded by transformers
  "openai:<model>"       OpenAI, or any OpenAI-compatible server via base_url / OPENAI_BASE_URL
  "anthropic:<model>"    Anthropic, or a compatible server via base_url / ANTHROPIC_BASE_URL
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from judgekit.backends.base import Backend
from judgekit.errors import ModelSpecError

BackendFactory = Callable[..., Backend]
_FACTORIES: dict[str, BackendFactory] = {}

EMBEDDED_SPEC = "embedded"


def register_backend(prefix: str, factory: BackendFactory) -> None:
    """Make `prefix:<name>` specs resolve through `factory(name, **kwargs)`."""
    _FACTORIES[prefix] = factory


def _local(name: str, **kwargs: Any) -> Backend:
    from judgekit.backends.local import TransformersBackend

    return TransformersBackend.from_spec(name, **kwargs)


def _openai(name: str, **kwargs: Any) -> Backend:
    from judgekit.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(name, **kwargs)


def _anthropic(name: str, **kwargs: Any) -> Backend:
    from judgekit.backends.anthropic_backend import AnthropicBackend

    return AnthropicBackend(name, **kwargs)


def split_spec(spec: str | None) -> tuple[str, str]:
    """('hf', 'path') from 'hf:path'; the embedded model for None/'embedded'."""
    if spec is None or spec == EMBEDDED_SPEC:
        return "embedded", ""
    prefix, sep, name = spec.partition(":")
    if not sep or not name:
        raise ModelSpecError(
            f"unknown model spec {spec!r}: expected one of embedded, hf:<dir>, gguf:<file>, "
            "openai:<model>, anthropic:<model>"
        )
    if prefix not in _FACTORIES and prefix not in ("embedded",):
        known = ", ".join(sorted(_FACTORIES))
        raise ModelSpecError(f"unknown model spec prefix {prefix!r} in {spec!r} (known: {known})")
    if prefix in ("gguf",) and not Path(name).expanduser().is_file():
        raise ModelSpecError(f"GGUF file not found: {name}")
    return prefix, name


def resolve_backend(spec: str | Backend | None = None, **kwargs: Any) -> Backend:
    """Build the backend a spec names; a Backend instance passes through unchanged."""
    if spec is not None and not isinstance(spec, str):
        return spec
    prefix, name = split_spec(spec)
    if prefix == "embedded":
        return _local(EMBEDDED_SPEC, **kwargs)
    return _FACTORIES[prefix](name, **kwargs)


register_backend("hf", lambda name, **kw: _local(f"hf:{name}", **kw))
register_backend("gguf", lambda name, **kw: _local(f"gguf:{name}", **kw))
register_backend("openai", _openai)
register_backend("anthropic", _anthropic)
