"""The generative reward model judge: principles, critiques and 1-10 scores, k samples voted."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from judgekit.backends.base import Backend, GenerationResult
from judgekit.backends.registry import resolve_backend
from judgekit.batch import JudgeItem, score_batch
from judgekit.config import GenerationConfig
from judgekit.errors import BackendError, JudgekitError, ParseError, describe_error
from judgekit.parsing import grm_output_grammar, parse_grm, scores_line_grammar
from judgekit.prompts import (
    GRM_TEMPLATE,
    FewShotExample,
    as_messages,
    grm_messages,
    load_examples,
)
from judgekit.runtime import run_sync
from judgekit.schema import Critique, Judgement, Message, SampleStatus, Usage, Verdict
from judgekit.voting import (
    TieRule,
    VotingMethod,
    balanced_permutations,
    select_top_meta,
    unpermute,
    vote,
)

DEFAULT_SAMPLING_TEMPERATURE = 0.5  # the paper's temperature for k > 1
REASK_MESSAGE = (
    "Your judgement could not be read: {error}. Reply with only the final line, holding the "
    "{n} overall score(s) in response order, e.g. Scores: \\boxed{{{example}}}"
)


def seed_for_item(base: int, query: str | Sequence[Message], responses: Sequence[str]) -> int:
    """A stable per-item seed, so permutations and sampling are reproducible run to run."""
    key = repr(as_messages(query)) + "\x00" + "\x00".join(responses)
    return (base * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (2**31)


class Judge:
    """A pointwise generative reward model over any backend.

    `Judge()` runs the embedded SmolLM2-135M model (machinery, not quality); pass a model spec
    (`hf:<dir>`, `gguf:<file>`, `openai:<model>`, `anthropic:<model>`) or a Backend for real use.
    One sample decodes greedily; several samples use temperature 0.5 with balanced permutations.
    """

    def __init__(
        self,
        model: str | Backend | None = None,
        *,
        config: GenerationConfig | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        examples: Sequence[FewShotExample] | str | Path | bool = True,
        template: str = GRM_TEMPLATE,
        template_dir: str | Path | None = None,
        system: str | None = None,
        meta: Any = None,
        k_meta: int | None = None,
        voting: VotingMethod | str = VotingMethod.SUM,
        tie_rule: TieRule | str = TieRule.STRICT,
        seed: int = 0,
        concurrency: int = 4,
        max_reasks: int = 1,
        structured: bool | None = None,
        max_criteria: int = 4,
        cache: Any = None,
        **backend_kwargs: Any,
    ) -> None:
        backend = resolve_backend(model, **backend_kwargs)
        if cache:
            from judgekit.cache import wrap_with_cache

            backend = wrap_with_cache(backend, cache)
        self.backend: Backend = backend
        self.config = config or GenerationConfig(max_tokens=512)
        self.sampling_temperature = temperature
        if max_tokens is not None:
            self.config = self.config.with_(max_tokens=max_tokens)
        if examples is True:
            self.examples: list[FewShotExample] = load_examples(template_dir=template_dir)
        elif examples is False:
            self.examples = []
        elif isinstance(examples, str | Path):
            self.examples = load_examples(examples)
        else:
            self.examples = list(examples)
        self.template = template
        self.template_dir = template_dir
        self.system = system
        self.meta = self._resolve_meta(meta)
        self._own_meta: Any = None
        self.k_meta = k_meta
        self.voting = VotingMethod(voting)
        self.tie_rule = TieRule(tie_rule)
        self.seed = seed
        self.concurrency = concurrency
        self.max_reasks = max_reasks
        supports = self.backend.capabilities.grammar
        if structured and not supports:
            raise JudgekitError(f"{self.backend.spec} cannot constrain output to a grammar")
        # Local models write the whole judgement under the output grammar by default, so even
        # a 135M model yields principles, critiques and scores.
        self.structured = supports if structured is None else structured
        self.max_criteria = max_criteria

    @staticmethod
    def _resolve_meta(meta: Any) -> Any:
        if meta is None or meta is False:
            return None
        from judgekit.meta import meta_from_spec

        if hasattr(meta, "ascore_samples"):
            return meta
        if meta is True:
            return "same-as-judge"
        return meta_from_spec(meta)

    def _meta_judge(self, meta: Any) -> Any:
        """The meta judge for one call: None, the judge's own, or one given per call."""
        chosen = self.meta if meta is None else self._resolve_meta(meta)
        if chosen == "same-as-judge":
            from judgekit.meta import MetaJudge

            if self._own_meta is None:  # built once, but never stored as the judge's default
                self._own_meta = MetaJudge(self.backend)
            chosen = self._own_meta
        return chosen

    @property
    def model(self) -> str:
        return self.backend.spec

    def __repr__(self) -> str:
        return f"Judge(model={self.backend.spec!r})"

    # -- one item --------------------------------------------------------------------------
    def _sample_config(self, samples: int, seed: int) -> GenerationConfig:
        if samples == 1 and self.sampling_temperature is None:
            return self.config.with_(temperature=0.0, seed=seed)
        temp = (self.sampling_temperature if self.sampling_temperature is not None
                else DEFAULT_SAMPLING_TEMPERATURE)
        return self.config.with_(temperature=temp, seed=seed)

    async def ascore(
        self,
        query: str | Sequence[Message],
        responses: Sequence[str],
        samples: int = 1,
        *,
        meta: Any = None,
        k_meta: int | None = None,
        item_id: str | None = None,
        hint_best: int | None = None,
        seed: int | None = None,
    ) -> Verdict:
        """Judge `responses` to `query` with `samples` judgements and vote.

        `hint_best` (0-based, RFT data generation only) tells the judge which response is best;
        such samples are marked `hinted`.
        """
        responses = list(responses)
        if not responses:
            raise ValueError("at least one response is needed")
        if samples < 1:
            raise ValueError("samples must be at least 1")
        start = time.perf_counter()
        n = len(responses)
        item_seed = seed_for_item(self.seed if seed is None else seed, query, responses)
        perms = balanced_permutations(n, samples, item_seed)
        config = self._sample_config(samples, item_seed)
        if self.structured:
            config = config.with_(grammar=grm_output_grammar(n, self.max_criteria))
        judgements = await self._sample(query, responses, perms, config, hint_best)
        meta_judge = self._meta_judge(meta)
        used_k_meta: int | None = None
        meta_usage = Usage()
        if meta_judge is not None:
            used_k_meta = k_meta or self.k_meta or max(1, samples // 2)
            meta_usage = await self._apply_meta(meta_judge, query, responses, judgements,
                                                used_k_meta)
        result = vote(judgements, n, self.voting, self.tie_rule, item_seed)
        valid = sum(1 for j in judgements if j.valid)
        error = None
        if valid == 0:
            kinds = sorted({j.status.value for j in judgements})
            first = next((j.error for j in judgements if j.error), None)
            error = f"no valid sample ({', '.join(kinds)}): {first}"
        return Verdict(
            item_id=item_id,
            n_responses=n,
            scores=result.scores,
            best=result.best,
            tie=result.tie,
            voting=self.voting.value,
            k=samples,
            k_meta=used_k_meta,
            valid_samples=valid,
            invalid_samples=len(judgements) - valid,
            samples=judgements,
            model=self.backend.spec,
            meta_model=getattr(meta_judge, "spec", None) if meta_judge is not None else None,
            usage=Usage.total(j.usage for j in judgements) + meta_usage,
            wall_time_s=round(time.perf_counter() - start, 4),
            error=error,
        )

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

    # -- sampling ----------------------------------------------------------------------------
    async def _sample(self, query: str | Sequence[Message], responses: list[str],
                      perms: list[list[int]], config: GenerationConfig,
                      hint_best: int | None) -> list[Judgement]:
        n = len(responses)
        groups: dict[tuple[int, ...], list[int]] = {}
        for j, p in enumerate(perms):
            groups.setdefault(tuple(p), []).append(j)
        prompts: list[tuple[tuple[int, ...], list[Message]]] = []
        for perm in groups:
            shown = [responses[i] for i in perm]
            hint_pos = perm.index(hint_best) + 1 if hint_best is not None else None
            prompts.append((perm, grm_messages(
                query, shown, examples=self.examples, template=self.template,
                template_dir=self.template_dir, hint_best=hint_pos, system=self.system)))
        results = await self._generate_groups(prompts, groups, config)
        judgements: list[Judgement | None] = [None] * len(perms)
        force_jobs: list[tuple[list[Message], list[tuple[int, Judgement]]]] = []
        reask_jobs: list[tuple[list[Message], int, Judgement]] = []
        for (perm, messages), outcome in zip(prompts, results, strict=True):
            indices = groups[perm]
            if isinstance(outcome, BaseException):
                for j in indices:
                    judgements[j] = Judgement(
                        sample_index=j, status=SampleStatus.API_ERROR, permutation=list(perm),
                        error=describe_error(outcome), usage=_failed_call_usage(outcome, j == indices[0]),
                        hinted=hint_best is not None)
                continue
            share = _split_usage(outcome.usage, len(indices))
            failed: list[tuple[int, Judgement]] = []
            for j, completion, usage in zip(indices, outcome.completions, share, strict=False):
                jd = _judgement_from_text(completion.text, n, list(perm), j, usage)
                jd.hinted = hint_best is not None
                judgements[j] = jd
                if not jd.valid:
                    failed.append((j, jd))
            if failed and self.backend.capabilities.complete_under_grammar:
                force_jobs.append((messages, failed))
            else:
                reask_jobs.extend((messages, n, jd) for _, jd in failed)
        await asyncio.gather(*(self._force(m, f, n, config) for m, f in force_jobs),
                             *(self._reask(m, k, jd, config) for m, k, jd in reask_jobs))
        out = [j for j in judgements if j is not None]
        assert len(out) == len(perms)
        return out

    async def _generate_groups(
        self, prompts: list[tuple[tuple[int, ...], list[Message]]],
        groups: dict[tuple[int, ...], list[int]], config: GenerationConfig,
    ) -> list[GenerationResult | BaseException]:
        requests = [(messages, len(groups[perm])) for perm, messages in prompts]
        return list(await self.backend.generate_many(requests, config))

    async def _force(self, messages: list[Message], failed: list[tuple[int, Judgement]], n: int,
                     config: GenerationConfig) -> None:
        """Complete the scores line under a grammar for every failed sample of one prompt."""
        try:
            result = await self.backend.complete_under_grammar(
                messages, [jd.raw_text for _, jd in failed], scores_line_grammar(n),
                config.with_(max_tokens=8 + 4 * n, grammar=None))
        except (BackendError, JudgekitError, RuntimeError, ValueError) as exc:
            for _, jd in failed:
                jd.error = f"{jd.error}; forcing failed: {describe_error(exc)}"
            return
        share = _split_usage(result.usage, len(failed))
        for (_, jd), completion, usage in zip(failed, result.completions, share, strict=False):
            text = jd.raw_text.rstrip() + "\n" + completion.text
            forced = _judgement_from_text(text, n, jd.permutation, jd.sample_index,
                                          jd.usage + usage)
            if forced.valid:
                _adopt(jd, forced, SampleStatus.FORCED, extra_attempt=True)
            else:
                jd.error = f"{jd.error}; forced line unreadable: {completion.text!r}"

    async def _reask(self, messages: list[Message], n: int, jd: Judgement,
                     config: GenerationConfig) -> None:
        """Bounded re-ask carrying the parse error (instructor-style), for remote backends."""
        for _ in range(self.max_reasks):
            example = ", ".join(["x"] * n)
            follow = [*messages, {"role": "assistant", "content": jd.raw_text},
                      {"role": "user", "content": REASK_MESSAGE.format(error=jd.error, n=n,
                                                                        example=example)}]
            try:
                result = await self.backend.generate(follow, config.with_(max_tokens=64, grammar=None), 1)
            except (BackendError, JudgekitError) as exc:
                jd.error = f"{jd.error}; re-ask failed: {describe_error(exc)}"
                return
            reply = result.completions[0].text if result.completions else ""
            text = jd.raw_text.rstrip() + "\n" + reply
            again = _judgement_from_text(text, n, jd.permutation, jd.sample_index,
                                         jd.usage + result.usage)
            jd.attempts += 1
            jd.usage = again.usage
            if again.valid:
                _adopt(jd, again, SampleStatus.OK, extra_attempt=False)
                return
            jd.error = again.error

    async def _apply_meta(self, meta_judge: Any, query: str | Sequence[Message],
                          responses: list[str], judgements: list[Judgement], k_meta: int) -> Usage:
        result = await meta_judge.ascore_samples(query, responses, judgements)
        for jd, s in zip(judgements, result.scores, strict=True):
            jd.meta_score = s
        keep = select_top_meta(judgements, k_meta)
        # Valid samples the meta judge could not rate fill the remaining places in sample order,
        # so a failing meta judge degrades to plain voting instead of discarding everything.
        unrated = [jd.sample_index for jd in judgements if jd.valid and jd.meta_score is None]
        keep |= set(unrated[:max(0, k_meta - len(keep))])
        for jd in judgements:
            jd.kept = jd.sample_index in keep
        return result.usage

    # -- batches -----------------------------------------------------------------------------
    async def ascore_many(
        self,
        items: Sequence[JudgeItem | dict[str, Any]],
        samples: int = 1,
        *,
        meta: Any = None,
        k_meta: int | None = None,
        concurrency: int | None = None,
        progress: bool = True,
        on_result: Callable[[int, Verdict], Any] | None = None,
    ) -> list[Verdict]:
        """Judge many items with bounded concurrency; results in input order.

        A failing item becomes a Verdict with `error` set: it never aborts the batch.
        `on_result(index, verdict)` is called as each item finishes (for append-as-you-go files).
        """
        parsed = [i if isinstance(i, JudgeItem) else JudgeItem.model_validate(i) for i in items]

        async def one(item: JudgeItem) -> Verdict:
            return await self.ascore(item.query, item.responses, samples, meta=meta,
                                     k_meta=k_meta, item_id=item.id)

        return await score_batch(parsed, one, model=self.backend.spec, samples=samples,
                                 concurrency=concurrency or self.concurrency, progress=progress,
                                 on_result=on_result, desc="judging")

    def score_many(self, items: Sequence[JudgeItem | dict[str, Any]], samples: int = 1,
                   **kwargs: Any) -> list[Verdict]:
        """Sync twin of `ascore_many`; safe inside Jupyter."""
        return run_sync(self.ascore_many(items, samples, **kwargs))

    async def aclose(self) -> None:
        await self.backend.aclose()


# -- pure helpers ------------------------------------------------------------------------------
def _failed_call_usage(exc: BaseException, first: bool) -> Usage:
    """A failed call still counts: one call, and the retries it spent (on its first sample)."""
    if not first:
        return Usage()
    return Usage(calls=1, retries=int(getattr(exc, "retries", 0) or 0))


def _split_usage(usage: Usage, parts: int) -> list[Usage]:
    """Spread one call's usage over its samples: the first carries the call and the prompt."""
    parts = max(parts, 1)
    out = []
    for i in range(parts):
        share = usage.completion_tokens // parts + (1 if i < usage.completion_tokens % parts else 0)
        out.append(Usage(
            prompt_tokens=usage.prompt_tokens if i == 0 else 0,
            completion_tokens=share,
            calls=usage.calls if i == 0 else 0,
            cached_calls=usage.cached_calls if i == 0 else 0,
            retries=usage.retries if i == 0 else 0,
            cost_usd=(usage.cost_usd if i == 0 else (0.0 if usage.cost_usd is not None else None)),
        ))
    return out


def _judgement_from_text(text: str, n: int, perm: list[int], index: int, usage: Usage) -> Judgement:
    try:
        parsed = parse_grm(text, n)
    except ParseError as exc:
        return Judgement(sample_index=index, status=SampleStatus.PARSE_FAILURE, permutation=perm,
                         raw_text=text, error=str(exc), usage=usage)
    critiques: list[Critique] = [Critique()] * n
    for pos, original in enumerate(perm):
        critiques[original] = parsed.critiques[pos]
    return Judgement(sample_index=index, status=SampleStatus.OK, permutation=perm,
                     principles=parsed.principles, critiques=critiques,
                     scores=unpermute(parsed.scores, perm), raw_text=text, usage=usage)


def _adopt(target: Judgement, source: Judgement, status: SampleStatus, extra_attempt: bool) -> None:
    target.status = status
    target.principles = source.principles
    target.critiques = source.critiques
    target.scores = source.scores
    target.raw_text = source.raw_text
    target.usage = source.usage
    target.error = None
    if extra_attempt:
        target.attempts += 1
