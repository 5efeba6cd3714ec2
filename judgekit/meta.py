"""Meta judges: rate each sampled judgement so meta-guided voting can keep the sound ones.

DEVIATION from the paper, stated plainly: DeepSeek's meta RM is a trained pointwise scalar model
(Gemma-2-27B with a value head). `MetaJudge` is prompt-based: any chat model is asked whether a
judgement is sound, and its P("yes") (from token log-probabilities where the backend gives them,
else a sampled 1-10 rating rescaled to [0, 1]) is the meta score. Both questions use the same
structured-output machinery as the judge: the yes/no is constrained (a grammar where the backend
takes one, such as llama.cpp's, else a JSON schema) so that the answer token IS yes or no, and
the rating is written under a JSON schema where the backend declares one, so it always reads.
`SequenceClassifierMetaScorer` accepts a local sequence-classification model directory instead
(such as the released DeepSeek-GRM-27B-MetaRM); its logit is the meta score, as in the paper.
"""

from __future__ import annotations

import asyncio
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from judgekit.backends.base import Backend, Completion
from judgekit.backends.registry import resolve_backend
from judgekit.config import GenerationConfig
from judgekit.errors import BackendError, CapabilityError, ParseError, is_recorded_failure
from judgekit.formats import fence_tag
from judgekit.parsing import parse_rating, scores_line_grammar
from judgekit.prompts import META_TEMPLATE, as_messages, meta_messages
from judgekit.quiet import quiet_model_loading
from judgekit.schema import Judgement, Message, Usage
from judgekit.structured import YES_NO_GRAMMAR, rating_schema, read_rating_json, yes_no_schema

MetaMode = Literal["auto", "logprob", "rating"]
_YES = {"yes", "y", "true"}
_NO = {"no", "n", "false"}


class MetaResult(BaseModel):
    """One meta score per judgement (None where the judgement was invalid or rating failed)."""

    scores: list[float | None]
    usage: Usage = Field(default_factory=Usage)


def _word(token: str) -> str:
    """A token as a bare lower-case word (a JSON answer's token may carry its quote)."""
    return token.strip().strip("\"'{}:,").strip().lower()


def p_yes_from_logprobs(completion: Completion) -> float | None:
    """P(yes) / (P(yes) + P(no)) over the top alternatives at the answer token, or None. The
    answer token is the first one that reads yes or no: the first token of a plain or grammar
    answer, the value's token of a JSON answer `{"answer": "Yes"}`."""
    if not completion.logprobs:
        return None
    at = next((t for t in completion.logprobs if _word(t.token) in _YES | _NO),
              completion.logprobs[0])
    alts = dict(at.top) or {at.token: at.logprob}
    alts.setdefault(at.token, at.logprob)
    yes = sum(math.exp(lp) for tok, lp in alts.items() if _word(tok) in _YES)
    no = sum(math.exp(lp) for tok, lp in alts.items() if _word(tok) in _NO)
    if yes + no <= 0:
        return None
    return yes / (yes + no)


class MetaScorer(ABC):
    """Rates each sampled judgement of an item, for meta-guided voting.

    `ascore_samples` returns one score per judgement (higher is better; None where the
    judgement is invalid or could not be rated) and the usage it spent, failed calls included.
    `reference` is the item's reference answer; the Judge passes it only when the item has one,
    so a scorer written before the keyword existed keeps working without references.
    """

    @property
    @abstractmethod
    def spec(self) -> str:
        """What the meta scorer is, for results (`Verdict.meta_model`)."""

    @abstractmethod
    async def ascore_samples(self, query: str | Sequence[Message], responses: Sequence[str],
                             judgements: Sequence[Judgement], *,
                             reference: str | None = None) -> MetaResult: ...


class MetaJudge(MetaScorer):
    """Prompt-based meta judge over any backend (it may differ from the judge's model)."""

    def __init__(self, model: str | Backend | None = None, *, mode: MetaMode = "auto",
                 template: str = META_TEMPLATE, template_dir: str | Path | None = None,
                 config: GenerationConfig | None = None, **backend_kwargs: Any) -> None:
        self.backend = resolve_backend(model, **backend_kwargs)
        self.mode: MetaMode = mode
        self.template = template
        self.template_dir = template_dir
        self.config = config or GenerationConfig(max_tokens=160, temperature=0.0)
        self._logprobs_work: bool | None = None if mode == "auto" else (mode == "logprob")

    @property
    def spec(self) -> str:
        return f"meta-prompt:{self.backend.spec}"

    async def _one(self, query: str | Sequence[Message], responses: list[str],
                   jd: Judgement, reference: str | None) -> tuple[float | None, Usage]:
        """One judgement's meta score and the usage spent on it, failed calls included (a
        failed meta call leaves the score None but keeps what it cost)."""
        if not jd.valid:
            return None, Usage()
        spent: list[Usage] = []
        try:
            return await self._rate(query, responses, jd, spent, reference), Usage.total(spent)
        except Exception as exc:
            if not is_recorded_failure(exc):
                raise
            failed = (exc.usage if isinstance(exc, BackendError) and exc.usage is not None
                      else Usage(calls=1, retries=exc.retries if isinstance(exc, BackendError)
                                 else 0))
            return None, Usage.total(spent) + failed

    async def _rate(self, query: str | Sequence[Message], responses: list[str], jd: Judgement,
                    spent: list[Usage], reference: str | None) -> float | None:
        shown = [responses[i] for i in jd.permutation] if jd.permutation else responses
        tag = fence_tag(query, [*responses, jd.raw_text], reference)
        caps = self.backend.capabilities
        if self._logprobs_work is not False and (caps.logprobs or self.mode == "logprob"):
            msgs = meta_messages(query, shown, jd.raw_text, mode="yes_no", tag=tag,
                                 template=self.template, template_dir=self.template_dir,
                                 reference=reference)
            result = await self.backend.generate(msgs, self._yes_no_config(), 1)
            spent.append(result.usage)
            p = p_yes_from_logprobs(result.completions[0]) if result.completions else None
            if p is not None:
                self._logprobs_work = True
                return p
            if self._logprobs_work is True:  # asked for log-probs explicitly and got none
                raise CapabilityError(f"{self.backend.spec} returned no usable log-probabilities")
            self._logprobs_work = False
        msgs = meta_messages(query, shown, jd.raw_text, mode="rating", tag=tag,
                             template=self.template, template_dir=self.template_dir,
                             reference=reference)
        config = (self.config.with_(json_schema=rating_schema()) if caps.json_schema
                  else self.config)
        result = await self.backend.generate(msgs, config, 1)
        spent.append(result.usage)
        reply = result.completions[0] if result.completions else Completion(text="")
        text = reply.text
        as_json = config.json_schema is not None and reply.structured_fallback is None
        try:
            if caps.cut_off(reply):
                raise ParseError(f"the rating was cut off ({reply.finish_reason})", raw=text)
            rating = read_rating_json(text) if as_json else parse_rating(text)
        except ParseError:
            if as_json:
                return None
            if not self.backend.capabilities.complete_under_grammar:
                return None
            fr = await self.backend.complete_under_grammar(
                msgs, [text], scores_line_grammar(1), self.config.with_(max_tokens=12))
            spent.append(fr.usage)
            try:  # the forced line alone: the cut text's last line never counts
                rating = parse_rating(fr.completions[0].text)
            except (ParseError, IndexError):
                return None
        return (rating - 1.0) / 9.0

    def _yes_no_config(self) -> GenerationConfig:
        """The yes/no request: greedy, with log-probabilities, the answer constrained to Yes or
        No by a grammar (llama.cpp, local models) or a JSON schema where the backend takes one."""
        caps = self.backend.capabilities
        cfg = self.config.with_(max_tokens=1, logprobs=True, top_logprobs=10, temperature=0.0)
        if caps.grammar:
            return cfg.with_(grammar=YES_NO_GRAMMAR)
        if caps.json_schema:
            return cfg.with_(json_schema=yes_no_schema(), max_tokens=16)
        return cfg

    async def ascore_samples(self, query: str | Sequence[Message], responses: Sequence[str],
                             judgements: Sequence[Judgement], *,
                             reference: str | None = None) -> MetaResult:
        """A meta score in [0, 1] per judgement; a failed meta call leaves that score None. The
        reference answer, when given, is shown to the meta judge as it was to the judge."""
        outcomes = await asyncio.gather(
            *(self._one(query, list(responses), jd, reference) for jd in judgements))
        return MetaResult(scores=[o[0] for o in outcomes],
                          usage=Usage.total(o[1] for o in outcomes))


def meta_rm_text(tokenizer: Any, query: str | Sequence[Message], shown: Sequence[str],
                 judgement: str) -> str:
    """The paper's plain meta RM template: the query and the responses (in the order the
    judgement saw them) as a user turn ("Please score the responses."), the judgement as the
    assistant turn, in the tokenizer's chat template. Inference (`SequenceClassifierMetaScorer`)
    and training (`judgekit.train.meta_rm`) both build their input here, so they cannot drift."""
    context = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in as_messages(query))
    blocks = "".join(f"[The Begin of Response {i}]\n{r}\n[The End of Response {i}]\n"
                     for i, r in enumerate(shown, 1))
    user = (f"Please score the responses.\n#### Conversation Context ####\n{context}\n"
            f"#### Responses to be Scored ####\n{blocks}")
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": judgement}]
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(msgs, tokenize=False)
        return text
    return f"{user}\nResponse: {judgement}"


def meta_rm_input(tokenizer: Any, query: str | Sequence[Message], responses: Sequence[str],
                  judgement: Judgement) -> str:
    """`meta_rm_text` for one sampled judgement: responses put in its shown order."""
    perm = judgement.permutation
    shown = [responses[i] for i in perm] if perm else list(responses)
    return meta_rm_text(tokenizer, query, shown, judgement.raw_text)


class SequenceClassifierMetaScorer(MetaScorer):
    """The paper's kind of meta RM: a local sequence-classification model; its logit is the score.

    Input follows the paper's plain meta template (`meta_rm_text`): the query and responses as a
    user turn ("Please score the responses."), the judgement as the assistant turn, in the
    model's chat template. `judgekit train meta` trains such a directory from stored samples.
    """

    def __init__(self, model_dir: str | Path, *, device: str | None = None,
                 max_length: int = 4096) -> None:
        self.model_dir = str(model_dir)
        self.device = device
        self.max_length = max_length
        self._model: Any = None
        self._tokenizer: Any = None
        # Items of a batch rate in threads at once: one load for all of them (transformers'
        # lazy imports and the model are not safe to set up twice at once), and one forward at
        # a time (a fast tokenizer refuses a second thread: "Already borrowed").
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def spec(self) -> str:
        return f"meta-classifier:{self.model_dir}"

    def _load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            with quiet_model_loading():
                tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
                model = AutoModelForSequenceClassification.from_pretrained(
                    self.model_dir, local_files_only=True)
            # The judgement being rated ends the input: an over-long input loses its start
            # instead (`judgekit train meta` truncates its training inputs the same way).
            tokenizer.truncation_side = "left"
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.device = device
            self._tokenizer = tokenizer
            self._model = model.to(device).eval()  # last: a set model means a ready scorer

    def score_sync(self, query: str | Sequence[Message], responses: Sequence[str],
                   judgements: Sequence[Judgement]) -> list[float | None]:
        self._load()
        with self._run_lock:
            import torch

            out: list[float | None] = []
            for jd in judgements:
                if not jd.valid:
                    out.append(None)
                    continue
                enc = self._tokenizer(meta_rm_input(self._tokenizer, query, responses, jd),
                                      return_tensors="pt", truncation=True,
                                      max_length=self.max_length).to(self.device)
                with torch.inference_mode():
                    logits = self._model(**enc).logits
                out.append(float(logits[0, -1] if logits.shape[-1] > 1 else logits[0, 0]))
            return out

    async def ascore_samples(self, query: str | Sequence[Message], responses: Sequence[str],
                             judgements: Sequence[Judgement], *,
                             reference: str | None = None) -> MetaResult:
        """Classifier logits. `reference` is not part of the input: the paper's plain meta
        template has no reference, and a trained meta RM must see the input it learnt from."""
        scores = await asyncio.to_thread(self.score_sync, query, responses, judgements)
        return MetaResult(scores=scores)


async def rate_samples(scorer: MetaScorer, query: str | Sequence[Message],
                       responses: Sequence[str], judgements: Sequence[Judgement], *,
                       reference: str | None = None) -> Usage:
    """Set each judgement's `meta_score` (None where it could not be rated); the usage spent.
    `reference` is passed only when there is one: scorers written before it existed still
    work."""
    extra = {"reference": reference} if reference is not None else {}
    rated = await scorer.ascore_samples(query, responses, judgements, **extra)
    for jd, score in zip(judgements, rated.scores, strict=True):
        jd.meta_score = score
    return rated.usage


MetaSpec = MetaScorer | str | bool | None
"""`None`/`False`: no meta judge; `True`: the judge's own model; a spec string (a chat model, or
`classifier:<dir>`); or a MetaScorer."""


class NotGiven(Enum):
    """A per-call `meta` that was not given (httpx's USE_CLIENT_DEFAULT style): the judge's own
    meta judge is used. `meta=None` always means no meta judge."""

    VALUE = "not given"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven.VALUE
MetaArg = MetaSpec | NotGiven
"""A per-call `meta`: `NOT_GIVEN` (the default: the judge's own), or a `MetaSpec`."""


class MetaResolver:
    """Turns a `MetaSpec` into a MetaScorer for one judge, building each one once (so a per-call
    `meta=` never becomes the judge's default, and repeated calls reuse one client)."""

    def __init__(self, judge_backend: Backend) -> None:
        self.judge_backend = judge_backend
        self._built: dict[str, MetaScorer] = {}

    def resolve(self, spec: MetaSpec) -> MetaScorer | None:
        if spec is None or spec is False:
            return None
        if isinstance(spec, MetaScorer):
            return spec
        key = "" if spec is True else str(spec)
        if key not in self._built:
            self._built[key] = (MetaJudge(self.judge_backend) if spec is True
                                else meta_from_spec(key))
        return self._built[key]


def meta_from_spec(spec: str | None, **kwargs: Any) -> MetaScorer:
    """'classifier:<dir>' for a sequence-classification meta RM; any other spec is a chat model."""
    if spec and spec.startswith("classifier:"):
        return SequenceClassifierMetaScorer(spec.partition(":")[2])
    return MetaJudge(spec, **kwargs)
