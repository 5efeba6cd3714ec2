"""judgekit: generative reward models with self-written principles, critiques and 1-10 scores."""

from judgekit.backends import Backend, resolve_backend
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
from judgekit.judge import Judge, JudgeItem, verdicts_frame
from judgekit.meta import MetaJudge, SequenceClassifierMetaScorer
from judgekit.schema import Critique, Judgement, Principle, SampleStatus, Usage, Verdict
from judgekit.voting import TieRule, VotingMethod

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Backend",
    "BackendError",
    "Critique",
    "FatalBackendError",
    "GenerationConfig",
    "Judge",
    "JudgeItem",
    "JudgekitError",
    "Judgement",
    "MetaJudge",
    "ModelSpecError",
    "ParseError",
    "Principle",
    "RateLimitError",
    "SampleStatus",
    "SequenceClassifierMetaScorer",
    "TemplateError",
    "TieRule",
    "TransientBackendError",
    "Usage",
    "Verdict",
    "VotingMethod",
    "__version__",
    "resolve_backend",
    "verdicts_frame",
]
