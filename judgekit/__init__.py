"""judgekit: generative reward models with self-written principles, critiques and 1-10 scores."""

from judgekit.config import GenerationConfig
from judgekit.errors import (
    AuthenticationError,
    BackendError,
    FatalBackendError,
    JudgekitError,
    ModelSpecError,
    ParseError,
    RateLimitError,
    TemplateError,
    TransientBackendError,
)
from judgekit.schema import Critique, Judgement, Principle, SampleStatus, Usage, Verdict

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BackendError",
    "Critique",
    "FatalBackendError",
    "GenerationConfig",
    "JudgekitError",
    "Judgement",
    "ModelSpecError",
    "ParseError",
    "Principle",
    "RateLimitError",
    "SampleStatus",
    "TemplateError",
    "TransientBackendError",
    "Usage",
    "Verdict",
    "__version__",
]
