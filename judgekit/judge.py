"""`Judge`: the facade over one judging pipeline (format -> sampler -> meta judge -> aggregate)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judgekit.aggregate import build_verdict, k_meta_for
from judgekit.backends.base import Backend
from judgekit.backends.registry import resolve_backend
from judgekit.batch import JudgeItem, score_batch
from judgekit.cache import CacheSpec, wrap_with_cache
from judgekit.config import GenerationConfig
from judgekit.formats import GRMFormat, JudgingFormat
from judgekit.meta import MetaResolver, MetaSpec, rate_samples
from judgekit.prompts import GRM_TEMPLATE, FewShotExample, resolve_examples
from judgekit.rubric import PrinciplesMode, RubricSpec
from judgekit.runtime import run_sync
from judgekit.sampler import Sampler, sampling_config, seed_for_item
from judgekit.schema import AggregateRule, Judgement, Message, Usage, Verdict
from judgekit.voting import TieRule, VotingMethod

if TYPE_CHECKING:
    from judgekit.batch_api import BatchHandle

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
        fixes: bool = False, **backend_kwargs: Any,
    ) -> None:
        if k_meta is not None and k_meta < 1:
            raise ValueError(f"k_meta must be at least 1, got {k_meta}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.backend: Backend = wrap_with_cache(resolve_backend(model, **backend_kwargs), cache)
        self.config = config or GenerationConfig(max_tokens=512)
        if max_tokens is not None:
            self.config = self.config.with_(max_tokens=max_tokens)
        self.sampling_temperature = temperature
        if temperature is not None:
            self.config.with_(temperature=temperature)  # validated now, not at the first call
        self.aggregate = AggregateRule(aggregate)
        self.examples = resolve_examples(examples, template_dir)
        self.format: JudgingFormat = format or GRMFormat(
            aggregate=self.aggregate, examples=self.examples, template=template,
            template_dir=template_dir, system=system, max_criteria=max_criteria, fixes=fixes)
        self.format = self.format.for_call(principles, principles_mode)
        self.meta = meta
        self.k_meta = k_meta
        self.voting = VotingMethod(voting)
        self.tie_rule = TieRule(tie_rule)
        self.seed = seed
        self.concurrency = concurrency
        self.sampler = Sampler(self.backend, self.format, structured=structured,
                               max_reasks=max_reasks)
        self._meta = MetaResolver(self.backend)

    @property
    def model(self) -> str:
        return self.backend.spec

    @property
    def structured(self) -> bool:
        return self.sampler.structured

    def __repr__(self) -> str:
        return f"Judge(model={self.backend.spec!r}, format={self.format.name!r})"

    def item_seed(self, query: str | Sequence[Message], responses: Sequence[str],
                  seed: int | None = None) -> int:
        return seed_for_item(self.seed if seed is None else seed, query, responses)

    def sample_config(self, samples: int, item_seed: int) -> GenerationConfig:
        return sampling_config(self.config, samples, self.sampling_temperature, item_seed)

    async def ascore(self, query: str | Sequence[Message], responses: Sequence[str],
                     samples: int = 1, *, meta: MetaSpec = None, k_meta: int | None = None,
                     item_id: str | None = None, seed: int | None = None,
                     reference: str | None = None, principles: RubricSpec | None = None,
                     principles_mode: PrinciplesMode | str | None = None) -> Verdict:
        """Judge `responses` to `query` with `samples` judgements and vote.

        `reference` is a reference answer, shown to the judge (and a prompt-based meta judge)
        in a fenced block; `principles`/`principles_mode` a rubric for this call only."""
        return await self._averdict(query, responses, samples, meta=meta, k_meta=k_meta,
                                    item_id=item_id, seed=seed, reference=reference,
                                    principles=principles, principles_mode=principles_mode)

    async def _averdict(self, query: str | Sequence[Message], responses: Sequence[str],
                        samples: int, *, meta: MetaSpec = None, k_meta: int | None = None,
                        item_id: str | None = None, seed: int | None = None,
                        hint_best: int | None = None, reference: str | None = None,
                        principles: RubricSpec | None = None,
                        principles_mode: PrinciplesMode | str | None = None) -> Verdict:
        """`ascore` plus RFT's hinted sampling (`hint_best`), which is not on the public path."""
        responses = list(responses)
        if not responses:
            raise ValueError("at least one response is needed")
        if samples < 1:
            raise ValueError("samples must be at least 1")
        fmt = self.format.for_call(principles, principles_mode)
        start = time.perf_counter()
        item_seed = self.item_seed(query, responses, seed)
        judgements = await self.sampler.with_format(fmt).sample(
            query, responses, k=samples, seed=item_seed,
            config=self.sample_config(samples, item_seed), hint_best=hint_best,
            reference=reference)
        return await self._verdict_from_samples(query, responses, judgements, samples,
                                                meta=meta, k_meta=k_meta, item_id=item_id,
                                                item_seed=item_seed, start=start,
                                                reference=reference, fmt=fmt)

    async def _verdict_from_samples(self, query: str | Sequence[Message], responses: list[str],
                                    judgements: list[Judgement], samples: int, *,
                                    meta: MetaSpec, k_meta: int | None, item_id: str | None,
                                    item_seed: int, start: float, reference: str | None = None,
                                    fmt: JudgingFormat | None = None) -> Verdict:
        """Meta judge and vote over an item's judgements, however they were drawn (online above,
        or from a provider's batch results in `judgekit.batch_api`), so both give one Verdict.
        `fmt` is the format they were drawn in (the judge's unless a call brought a rubric)."""
        fmt = fmt or self.format
        scorer = self._meta.resolve(self.meta if meta is None else meta)
        if scorer is not None and not fmt.rates_with_meta:
            raise ValueError(f"the {fmt.name} format has no critique for a meta judge "
                             "to rate: meta-guided voting does not apply")
        used_k_meta, meta_usage = None, Usage()
        k_meta_setting = next((v for v in (k_meta, self.k_meta) if v is not None), None)
        if scorer is not None:
            used_k_meta = k_meta_for(samples, k_meta_setting)
            meta_usage = await rate_samples(scorer, query, responses, judgements,
                                            reference=reference)
        return build_verdict(
            judgements, len(responses), k=samples, voting=self.voting, tie_rule=self.tie_rule,
            seed=item_seed, k_meta=used_k_meta,
            k_meta_setting=k_meta_setting if scorer is not None else None,
            aggregate_rule=self.aggregate.value,
            model=self.model, meta_model=scorer.spec if scorer is not None else None,
            item_id=item_id, extra_usage=meta_usage, wall_time_s=time.perf_counter() - start,
            metadata=fmt.verdict_metadata(reference))

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
                          meta: MetaSpec = None, k_meta: int | None = None,
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

    async def asubmit_batch(self, items: Sequence[JudgeItem | dict[str, Any]], samples: int = 1,
                            *, run_dir: str | Path, **kwargs: Any) -> BatchHandle:
        """Submit to the provider's batch API (half price); collect later, from any process."""
        from judgekit.batch_api import asubmit_batch

        return await asubmit_batch(self, items, samples, run_dir=run_dir, **kwargs)

    def submit_batch(self, items: Sequence[JudgeItem | dict[str, Any]], samples: int = 1, *,
                     run_dir: str | Path, **kwargs: Any) -> BatchHandle:
        """Sync twin of `asubmit_batch`."""
        return run_sync(self.asubmit_batch(items, samples, run_dir=run_dir, **kwargs))

    async def aclose(self) -> None:
        await self.backend.aclose()

