"""`Pipeline`: one judging pipeline (format -> sampler -> meta judge -> aggregate), with its
generation and seed rules, shared by `Judge` (online), `judgekit.batch_api` (the same prompts
submitted to a provider's batch API, the results voted here), `judgekit.debate` (reviews drawn
through the judge's sampler) and RFT (hinted sampling).

Rules that live here and nowhere else:

* **Seeds.** An item's seed is `seed_for_item(seed, query, responses)`; permutations, sampling
  and the random tie-break all use it.
* **Generation.** One sample decodes greedily unless a temperature was given, several sample at
  it (default the paper's 0.5) (`judgekit.sampler.sampling_config`).
* **A call's rubric.** An item's own principles make a format for that call
  (`JudgingFormat.for_call`); its sampler keeps the judge's backend, structured mode and re-asks.
* **Meta.** `meta` is a `judgekit.meta.MetaArg`: not given is the pipeline's own meta judge,
  None or False none. k_meta is the call's, else the pipeline's, else k/2: the one rule,
  `judgekit.aggregate.k_meta_for`, which the Verdict records (`k_meta_setting`) so that reports
  keep k_meta_for(j, it) over the first j samples.
* **Settings.** `settings()` lists every setting that changes results (`JudgeSettings`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from judgekit.aggregate import build_verdict, k_meta_for
from judgekit.backends.base import Backend
from judgekit.config import GenerationConfig
from judgekit.formats import GRMFormat, JudgingFormat
from judgekit.meta import MetaArg, MetaResolver, MetaSpec, NotGiven, rate_samples
from judgekit.prompts import builtin_prompt_dir
from judgekit.rubric import PrinciplesMode, RubricSpec
from judgekit.sampler import SamplePrompt, Sampler, sampling_config, seed_for_item
from judgekit.schema import AggregateRule, Judgement, Message, Verdict
from judgekit.scorer import ScorerSettings
from judgekit.voting import TieRule, VotingMethod


class JudgeSettings(ScorerSettings):
    """Every setting of a judging pipeline that changes its results."""

    format: str
    format_fingerprint: str = ""
    aggregate: str = AggregateRule.OVERALL.value
    generation: dict[str, Any] = Field(default_factory=dict)
    temperature: float | None = None
    seed: int = 0
    voting: str = VotingMethod.SUM.value
    tie_rule: str = TieRule.STRICT.value
    k_meta: int | None = None
    template: str = ""
    template_hash: str | None = None
    system: str | None = None
    examples: str | None = None
    max_criteria: int | None = None
    structured: str = "off"
    max_reasks: int = 1
    backend: dict[str, str | None] = Field(default_factory=dict)
    execution: str = "online"


@dataclass
class Plan:
    """An item's requests, as an online call would send them: the sampler of its format, its
    distinct prompts and the request config."""

    sampler: Sampler
    prompts: list[SamplePrompt]
    config: GenerationConfig


def _digest(value: Any) -> str | None:
    if value is None:
        return None
    data = value if isinstance(value, bytes) else json.dumps(
        value, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:16]


def template_digest(template: str, template_dir: str | os.PathLike[str] | None) -> str | None:
    """The hash of a template's source and of the partials it may include: the file in
    `template_dir` if there, else the shipped one."""
    roots = ([Path(template_dir)] if template_dir else []) + [builtin_prompt_dir()]
    main = next((root / template for root in roots if (root / template).is_file()), None)
    if main is None:
        return None
    parts = [main.read_bytes()]
    for root in roots:
        parts.extend(p.read_bytes() for p in sorted((root / "_partials").glob("*.jinja")))
    return _digest(b"\0".join(parts))


def meta_name(meta: MetaSpec) -> str | None:
    """A MetaSpec as recorded: None, "same-as-judge", a spec string, or the scorer's spec."""
    if meta is None or meta is False:
        return None
    if meta is True:
        return "same-as-judge"
    return meta if isinstance(meta, str) else meta.spec


class Pipeline:
    """Format, sampler, generation, seed and vote rules of one judge (see the module doc)."""

    def __init__(self, backend: Backend, fmt: JudgingFormat, *, config: GenerationConfig,
                 temperature: float | None = None, aggregate: AggregateRule,
                 meta: MetaSpec = None, k_meta: int | None = None,
                 voting: VotingMethod = VotingMethod.SUM, tie_rule: TieRule = TieRule.STRICT,
                 seed: int = 0, structured: bool | None = None, max_reasks: int = 1,
                 scorer: str = "Judge") -> None:
        if k_meta is not None and k_meta < 1:
            raise ValueError(f"k_meta must be at least 1, got {k_meta}")
        self.backend = backend
        self.format = fmt
        self.config = config
        self.temperature = temperature
        self.aggregate = aggregate
        self.meta = meta
        self.k_meta = k_meta
        self.voting = voting
        self.tie_rule = tie_rule
        self.seed = seed
        self.scorer = scorer
        self.sampler = Sampler(backend, fmt, structured=structured, max_reasks=max_reasks)
        self.meta_resolver = MetaResolver(backend)

    @property
    def model(self) -> str:
        return self.backend.spec

    # -- seeds and generation -------------------------------------------------------------------
    def item_seed(self, query: str | Sequence[Message], responses: Sequence[str],
                  seed: int | None = None) -> int:
        return seed_for_item(self.seed if seed is None else seed, query, responses)

    def sample_config(self, samples: int, item_seed: int) -> GenerationConfig:
        return sampling_config(self.config, samples, self.temperature, item_seed)

    def sampler_for(self, principles: RubricSpec | None = None,
                    principles_mode: PrinciplesMode | str | None = None) -> Sampler:
        """The sampler in the format of a call's own rubric (this one's without)."""
        return self.sampler.with_format(self.format.for_call(principles, principles_mode))

    def plan(self, query: str | Sequence[Message], responses: Sequence[str], samples: int,
             item_seed: int, *, reference: str | None = None,
             principles: RubricSpec | None = None,
             principles_mode: PrinciplesMode | str | None = None) -> Plan:
        """The prompts and request config of an item, exactly as `judge` sends them."""
        sampler = self.sampler_for(principles, principles_mode)
        prompts = sampler.prompts(query, responses, samples, item_seed, reference=reference)
        config = sampler.request_config(self.sample_config(samples, item_seed), len(responses))
        return Plan(sampler, prompts, config)

    # -- judging ---------------------------------------------------------------------------------
    async def judge(self, query: str | Sequence[Message], responses: Sequence[str],
                    samples: int, *, meta: MetaArg = NotGiven.VALUE, k_meta: int | None = None,
                    item_id: str | None = None, seed: int | None = None,
                    hint_best: int | None = None, reference: str | None = None,
                    principles: RubricSpec | None = None,
                    principles_mode: PrinciplesMode | str | None = None) -> Verdict:
        """Sample `samples` judgements online and vote. `hint_best` (RFT's hinted sampling)
        tells the judge which response is best."""
        responses = list(responses)
        if not responses:
            raise ValueError("at least one response is needed")
        if samples < 1:
            raise ValueError("samples must be at least 1")
        sampler = self.sampler_for(principles, principles_mode)
        start = time.perf_counter()
        item_seed = self.item_seed(query, responses, seed)
        judgements = await sampler.sample(
            query, responses, k=samples, seed=item_seed,
            config=self.sample_config(samples, item_seed), hint_best=hint_best,
            reference=reference)
        return await self.verdict(query, responses, judgements, samples, fmt=sampler.format,
                                  meta=meta, k_meta=k_meta, item_id=item_id,
                                  item_seed=item_seed, start=start, reference=reference)

    async def verdict(self, query: str | Sequence[Message], responses: list[str],
                      judgements: list[Judgement], samples: int, *, fmt: JudgingFormat,
                      meta: MetaArg = NotGiven.VALUE, k_meta: int | None = None,
                      item_id: str | None = None, item_seed: int, start: float,
                      reference: str | None = None) -> Verdict:
        """Meta judge and vote over an item's judgements, however they were drawn (online, or
        from a provider's batch results), so both give one Verdict. `fmt` is the format they
        were drawn in."""
        chosen = self.meta if isinstance(meta, NotGiven) else meta
        scorer = self.meta_resolver.resolve(chosen)
        if scorer is not None and not fmt.rates_with_meta:
            raise ValueError(f"the {fmt.name} format has no critique for a meta judge "
                             "to rate: meta-guided voting does not apply")
        used_k_meta, meta_usage = None, None
        setting = next((v for v in (k_meta, self.k_meta) if v is not None), None)
        if scorer is not None:
            used_k_meta = k_meta_for(samples, setting)
            meta_usage = await rate_samples(scorer, query, responses, judgements,
                                            reference=reference)
        return build_verdict(
            judgements, len(responses), k=samples, voting=self.voting, tie_rule=self.tie_rule,
            seed=item_seed, k_meta=used_k_meta,
            k_meta_setting=setting if scorer is not None else None,
            aggregate_rule=self.aggregate.value,
            model=self.model, meta_model=scorer.spec if scorer is not None else None,
            item_id=item_id, extra_usage=meta_usage, wall_time_s=time.perf_counter() - start,
            metadata=fmt.verdict_metadata(reference))

    # -- settings --------------------------------------------------------------------------------
    def settings(self, execution: str = "online") -> JudgeSettings:
        fmt = self.format
        grm = fmt if isinstance(fmt, GRMFormat) else None
        return JudgeSettings(
            scorer=self.scorer, model=self.backend.identity, endpoint=self.backend.endpoint,
            format=fmt.name, format_fingerprint=fmt.fingerprint(),
            aggregate=self.aggregate.value,
            generation=self.config.model_dump(mode="json", exclude={"timeout"}),
            temperature=self.temperature, seed=self.seed, voting=self.voting.value,
            tie_rule=self.tie_rule.value, k_meta=self.k_meta, meta_model=meta_name(self.meta),
            template=fmt.template, template_hash=template_digest(fmt.template, fmt.template_dir),
            system=_digest(fmt.system),
            examples=(_digest([e.model_dump(mode="json") for e in grm.examples])
                      if grm is not None else None),
            max_criteria=grm.max_criteria if grm is not None else None,
            structured=self.sampler.mode.value, max_reasks=self.sampler.max_reasks,
            backend=self.backend.settings(), execution=execution)


__all__ = ["JudgeSettings", "Pipeline", "Plan", "meta_name", "template_digest"]
