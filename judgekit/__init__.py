"""judgekit: generative reward models with self-written principles, critiques and 1-10 scores."""

from judgekit.backends import Backend, BackendCapabilities, resolve_backend
from judgekit.backends.anthropic_backend import AnthropicBackend
from judgekit.backends.openai_backend import OpenAIBackend
from judgekit.batch import JudgeItem, verdicts_frame
from judgekit.cache import CachedBackend, ResponseCache
from judgekit.config import GenerationConfig
from judgekit.debate import DebateResult
from judgekit.errors import (
    APITimeoutError,
    AuthenticationError,
    BackendError,
    CacheError,
    CapabilityError,
    CircuitOpenError,
    ContextLengthError,
    FatalBackendError,
    JudgekitError,
    LocalModelError,
    MissingDependencyError,
    ModelSpecError,
    ParseError,
    RateLimitError,
    RubricError,
    RunAbortedError,
    ServerUnreachableError,
    TemplateError,
    TransientBackendError,
)
from judgekit.formats import GRMFormat, JudgingFormat, PairwiseFormat
from judgekit.improve import ImproveLoop, ImproveTrace, aimprove, aimprove_many, improve, improve_many
from judgekit.judge import Judge
from judgekit.meta import NOT_GIVEN, MetaJudge, MetaScorer, SequenceClassifierMetaScorer
from judgekit.retry import RetryPolicy
from judgekit.rubric import Rubric, load_rubric
from judgekit.runstore import RunStore
from judgekit.schema import (
    AggregateRule,
    Critique,
    Judgement,
    Principle,
    SampleStatus,
    Usage,
    Verdict,
)
from judgekit.scorer import Scorer, ScorerSettings
from judgekit.voting import TieRule, VotingMethod

__version__ = "0.1.0"

__all__ = [
    "NOT_GIVEN",
    "APITimeoutError",
    "AggregateRule",
    "AnthropicBackend",
    "AuthenticationError",
    "Backend",
    "BackendCapabilities",
    "BackendError",
    "CacheError",
    "CachedBackend",
    "CapabilityError",
    "CircuitOpenError",
    "ContextLengthError",
    "Critique",
    "DebateResult",
    "FatalBackendError",
    "GRMFormat",
    "GenerationConfig",
    "ImproveLoop",
    "ImproveTrace",
    "Judge",
    "JudgeItem",
    "JudgekitError",
    "Judgement",
    "JudgingFormat",
    "LocalModelError",
    "MetaJudge",
    "MetaScorer",
    "MissingDependencyError",
    "ModelSpecError",
    "OpenAIBackend",
    "PairwiseFormat",
    "ParseError",
    "Principle",
    "RateLimitError",
    "ResponseCache",
    "RetryPolicy",
    "Rubric",
    "RubricError",
    "RunAbortedError",
    "RunStore",
    "SampleStatus",
    "Scorer",
    "ScorerSettings",
    "SequenceClassifierMetaScorer",
    "ServerUnreachableError",
    "TemplateError",
    "TieRule",
    "TransientBackendError",
    "Usage",
    "Verdict",
    "VotingMethod",
    "__version__",
    "aimprove",
    "aimprove_many",
    "improve",
    "improve_many",
    "load_rubric",
    "resolve_backend",
    "verdicts_frame",
]
