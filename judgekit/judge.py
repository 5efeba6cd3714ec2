"""`Judge`: the facade over one judging pipeline (format -> sampler -> meta judge -> aggregate)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from judgekit.backends.base import Backend
from judgekit.backends.registry import resolve_backend
from judgekit.batch import JudgeItem, score_batch
from judgekit.cache import CacheSpec, wrap_with_cache
from judgekit.config import GenerationConfig
from judgekit.formats import GRMFormat, JudgingFormat
from judgekit.meta import NOT_GIVEN, MetaArg, MetaSpec
from judgekit.pipeline import JudgeSettings, Pipeline
from judgekit.prompts import GRM_TEMPLATE, FewShotExample, resolve_examples
from judgekit.rubric import PrinciplesMode, RubricSpec
from judgekit.runtime import run_sync
from judgekit.sampler import Sampler
from judgekit.schema import AggregateRule, Message, Verdict
from judgekit.voting import TieRule, VotingMethod


class Judge:
    """A generative reward model over any backend.

    Arguments:
      model: `None` (the embedded SmolLM2-135M: machinery, not quality), a spec (`hf:<dir>`,
        `gguf:<file>`, `openai:<model>`, `anthropic:<model>`) or a Backend.
      format: how the judge is asked and read; default `GRMFormat` built from the options below
        (`PairwiseFormat()` gives the plain LLM-as-a-judge baseline through the same pipeline).
      aggregate: `"overall"` (default, the paper's rule: the score the judge wrote in its final
        scores line) or `"weighted"` (sum of w_i * s_i over its fixed-form criterion scores).
      examples, template, template_dir, system, max_criteria: the GRM format's few-shot examples
        (True: the built-in ones; False: none; a list or a JSON file), template, template folder
        that shadows the built-ins, system prompt, and most criteria in the output grammar.
      principles, principles_mode: a user rubric (Principles, (name, description, weight)
        tuples, dicts, or a `Rubric`; see `judgekit.rubric`): `"fixed"` (default) judges with
        exactly these criteria and weights, `"seed"` gives them as the criteria the judge
        starts from. Each call may pass its own.
      fixes: the GRM format's suggested-fixes mode (each critique ends with 'Fix:' lines, read
        into `Critique.fixes`; `judgekit.debate` and `judgekit.improve` need it).
      config, temperature, max_tokens: generation settings; one sample decodes greedily, several
        at `temperature` (default 0.5, the paper's).
      meta, k_meta: the meta judge (see `MetaSpec`) and how many samples meta-guided voting
        keeps (default k/2).
      voting, tie_rule, seed: vote by sum/mean/majority; `strict` ties have no best response,
        `random` breaks them with the item's seed; `seed` seeds permutations and sampling.
      concurrency: items in flight in `score_many` (the only cap: backends add none).
      max_reasks: re-asks for an unreadable answer on backends that cannot force a final line.
      structured: constrain the whole answer (`judgekit.structured.resolve_structured`). None,
        the default: the format's JSON schema wherever the backend declares one (OpenAI, Anthropic,
        llama.cpp, vLLM, SGLang, Ollama), the output grammar for the embedded model (bigger local
        models write free text, the final line forced if needed). True: a schema, else the
        grammar, else CapabilityError. False: free text everywhere.
      cache: an on-disk response cache (`True`, a path, or a ResponseCache).
      timeout, max_retries: deadlines of a remote model's calls: seconds per attempt (default
        60, `GenerationConfig.timeout`) and retries of a failed call (default 6; a timed-out
        attempt is retried once at most, see `judgekit.retry`). A call that runs out of them is
        a recorded failure (`APITimeoutError`), and a batch stops after 5 items in a row that
        got no answer.
      backend_kwargs: passed to the backend (base_url, api_key, device, ...).
    """

    def __init__(
        self, model: str | Backend | None = None, *, format: JudgingFormat | None = None,
        aggregate: AggregateRule | str = AggregateRule.OVERALL,
        config: GenerationConfig | None = None, temperature: float | None = None,
        max_tokens: int | None = None, examples: Sequence[FewShotExample] | str | Path | bool = True,
        template: str = GRM_TEMPLATE, template_dir: str | Path | None = None,
        system: str | None = None, max_criteria: int = 4, principles: RubricSpec | None = None,
        principles_mode: PrinciplesMode | str | None = None, meta: MetaSpec = None,
        k_meta: int | None = None, voting: VotingMethod | str = VotingMethod.SUM,
        tie_rule: TieRule | str = TieRule.STRICT, seed: int = 0, concurrency: int = 4,
        max_reasks: int = 1, structured: bool | None = None, cache: CacheSpec = None,
        fixes: bool = False, timeout: float | None = None, max_retries: int | None = None,
        **backend_kwargs: Any,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_retries is not None:
            if isinstance(model, Backend):
                raise ValueError("max_retries is a setting of the backend: give it to the "
                                 "backend you pass, not to the Judge")
            backend_kwargs["max_retries"] = max_retries
        backend = wrap_with_cache(resolve_backend(model, **backend_kwargs), cache)
        gen = config or GenerationConfig(max_tokens=512)
        if max_tokens is not None:
            gen = gen.with_(max_tokens=max_tokens)
        if timeout is not None:
            gen = gen.with_(timeout=timeout)
        if temperature is not None:
            gen.with_(temperature=temperature)  # validated now, not at the first call
        rule = AggregateRule(aggregate)
        fmt = format or GRMFormat(
            aggregate=rule, examples=resolve_examples(examples, template_dir), template=template,
            template_dir=template_dir, system=system, max_criteria=max_criteria, fixes=fixes)
        self.pipeline = Pipeline(
            backend, fmt.for_call(principles, principles_mode), config=gen,
            temperature=temperature, aggregate=rule, meta=meta, k_meta=k_meta,
            voting=VotingMethod(voting), tie_rule=TieRule(tie_rule), seed=seed,
            structured=structured, max_reasks=max_reasks, scorer=type(self).__name__)
        self.concurrency = concurrency

    # -- what the pipeline holds, read-only ------------------------------------------------------
    @property
    def model(self) -> str:
        return self.pipeline.model

    @property
    def backend(self) -> Backend:
        return self.pipeline.backend

    @property
    def format(self) -> JudgingFormat:
        return self.pipeline.format

    @property
    def sampler(self) -> Sampler:
        return self.pipeline.sampler

    @property
    def config(self) -> GenerationConfig:
        return self.pipeline.config

    @property
    def meta(self) -> MetaSpec:
        return self.pipeline.meta

    @property
    def seed(self) -> int:
        return self.pipeline.seed

    @property
    def structured(self) -> bool:
        return self.pipeline.sampler.structured

    def settings(self) -> JudgeSettings:
        """Every setting that changes this judge's results (`judgekit.scorer.Scorer`)."""
        return self.pipeline.settings()

    def __repr__(self) -> str:
        return f"Judge(model={self.backend.spec!r}, format={self.format.name!r})"

    def item_seed(self, query: str | Sequence[Message], responses: Sequence[str],
                  seed: int | None = None) -> int:
        return self.pipeline.item_seed(query, responses, seed)

    async def ascore(self, query: str | Sequence[Message], responses: Sequence[str],
                     samples: int = 1, *, meta: MetaArg = NOT_GIVEN, k_meta: int | None = None,
                     item_id: str | None = None, seed: int | None = None,
                     reference: str | None = None, principles: RubricSpec | None = None,
                     principles_mode: PrinciplesMode | str | None = None) -> Verdict:
        """Judge `responses` to `query` with `samples` judgements and vote.

        `meta` not given uses the judge's own meta judge; `meta=None` none. `reference` is a
        reference answer, shown to the judge (and a prompt-based meta judge) in a fenced block;
        `principles`/`principles_mode` a rubric for this call only."""
        return await self.pipeline.judge(query, responses, samples, meta=meta, k_meta=k_meta,
                                         item_id=item_id, seed=seed, reference=reference,
                                         principles=principles, principles_mode=principles_mode)

    def score(self, query: str | Sequence[Message], responses: Sequence[str], samples: int = 1,
              **kwargs: Any) -> Verdict:
        """Sync twin of `ascore`; safe inside Jupyter."""
        return run_sync(self.ascore(query, responses, samples, **kwargs))

    def compare(self, query: str | Sequence[Message], a: str, b: str, samples: int = 1,
                **kwargs: Any) -> Verdict:
        """Pairwise: `verdict.best` is 0 for `a`, 1 for `b`, None for a tie."""
        return self.score(query, [a, b], samples, **kwargs)

    async def acompare(self, query: str | Sequence[Message], a: str, b: str, samples: int = 1,
                       **kwargs: Any) -> Verdict:
        return await self.ascore(query, [a, b], samples, **kwargs)

    async def ascore_many(self, items: Sequence[JudgeItem | dict[str, Any]], samples: int = 1, *,
                          meta: MetaArg = NOT_GIVEN, k_meta: int | None = None,
                          concurrency: int | None = None, progress: bool = True,
                          on_result: Callable[[int, Verdict], Any] | None = None) -> list[Verdict]:
        """Judge many items, at most `concurrency` in flight; results in input order. A failing
        item becomes a Verdict with `error` set; `on_result(index, verdict)` runs as each ends."""
        parsed = [i if isinstance(i, JudgeItem) else JudgeItem.model_validate(i) for i in items]

        async def one(item: JudgeItem) -> Verdict:
            return await self.ascore(item.query, item.responses, samples, meta=meta,
                                     k_meta=k_meta, item_id=item.id, reference=item.reference,
                                     principles=item.principles,
                                     principles_mode=item.principles_mode)

        return await score_batch(parsed, one, model=self.model, samples=samples,
                                 concurrency=concurrency or self.concurrency, progress=progress,
                                 on_result=on_result, desc="judging")

    def score_many(self, items: Sequence[JudgeItem | dict[str, Any]], samples: int = 1,
                   **kwargs: Any) -> list[Verdict]:
        """Sync twin of `ascore_many`; safe inside Jupyter."""
        return run_sync(self.ascore_many(items, samples, **kwargs))

    async def aclose(self) -> None:
        await self.backend.aclose()

