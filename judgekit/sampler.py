"""Drawing k judgements of one item: permutations, requests, dispatch, forcing and re-asking.

Rules that live here and nowhere else:

* **Permutations.** Sample j shows the responses in `balanced_permutations(n, k, seed)[j]`;
  samples that share an order are one request with n = their count.
* **Dispatch.** All requests of an item go to `backend.generate_many` (one batched call on a
  local model, concurrent requests elsewhere). A failed call is recorded on its samples as
  `api_error` with the calls and retries it spent; its siblings keep their results and usage.
* **Structured output.** `structured` is resolved once (`judgekit.structured.resolve_structured`):
  requests carry the format's JSON schema or its output grammar, or nothing. An answer written
  under the schema is read by field (`format.parse_structured`); one the server wrote without it
  (it refused the schema: `Completion.structured_fallback`) is read as text, and the sample
  records the fallback.
* **Which text counts.** A completion that stopped for one of the backend's declared cut-off
  reasons (`BackendCapabilities.cutoff_reasons`: the token limit, a content filter, a refusal,
  the context window) is never accepted as it stands, whatever box it contains. Otherwise the
  format's parser reads the final line. A re-ask reply, and a forced line, is read on its own:
  when it is empty, blank or only a code fence, the sample fails; the cut text's last line never
  counts.
* **Prompt caching.** Requests say where the format's static prefix ends
  (`GenerationConfig.cache_prefix_chars`), so backends with explicit caching can mark it.
* **Recovery.** An unreadable or truncated sample gets its final line completed under the
  format's grammar where the backend declares `complete_under_grammar` (status `forced`), and is
  re-asked (at most `max_reasks` times, carrying the parse error) elsewhere. What still fails is
  a `parse_failure`, never a score.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from judgekit.backends.base import Backend, Completion, GenerationResult
from judgekit.config import GenerationConfig
from judgekit.errors import BackendError, ParseError, describe_error, is_recorded_failure
from judgekit.formats import JudgingFormat, ParsedJudgement, fence_tag
from judgekit.prompts import as_messages
from judgekit.schema import Critique, Judgement, Message, SampleStatus, Usage
from judgekit.structured import StructuredMode, resolve_structured
from judgekit.voting import balanced_permutations, unpermute

DEFAULT_SAMPLING_TEMPERATURE = 0.5  # the paper's temperature for k > 1


def sampling_config(config: GenerationConfig, samples: int, temperature: float | None,
                    seed: int) -> GenerationConfig:
    """One sample decodes greedily (unless a temperature was set); several samples draw at
    `temperature`, by default the paper's 0.5. The item's seed makes sampling reproducible."""
    if samples == 1 and temperature is None:
        return config.with_(temperature=0.0, seed=seed)
    temp = temperature if temperature is not None else DEFAULT_SAMPLING_TEMPERATURE
    return config.with_(temperature=temp, seed=seed)


def seed_for_item(base: int, query: str | Sequence[Message], responses: Sequence[str]) -> int:
    """A stable per-item seed, so permutations, sampling and tie-breaks reproduce run to run."""
    key = repr(as_messages(query)) + "\x00" + "\x00".join(responses)
    return (base * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (2**31)


@dataclass
class SamplePrompt:
    """One distinct prompt of an item: the order it shows, its messages, the samples it serves."""

    permutation: tuple[int, ...]
    messages: list[Message]
    samples: list[int]


class Sampler:
    """Samples judgements of one item from `backend` in `fmt`.

    `structured` (None: the default rule, True, False) picks the format's JSON schema or output
    grammar as `judgekit.structured.resolve_structured` says; `max_reasks` bounds re-asks on
    backends that cannot force a final line.
    """

    def __init__(self, backend: Backend, fmt: JudgingFormat, *, structured: bool | None = None,
                 max_reasks: int = 1) -> None:
        if max_reasks < 0:
            raise ValueError("max_reasks must be at least 0")
        self.backend = backend
        self.format = fmt
        self.requested_structured = structured
        self.mode = resolve_structured(backend, fmt, structured)
        self.max_reasks = max_reasks

    def with_format(self, fmt: JudgingFormat) -> Sampler:
        """This sampler, or one like it for another format (a call's rubric)."""
        if fmt is self.format:
            return self
        return Sampler(self.backend, fmt, structured=self.requested_structured,
                       max_reasks=self.max_reasks)

    @property
    def structured(self) -> bool:
        """Whether requests carry the format's schema or grammar."""
        return self.mode is not StructuredMode.OFF

    def prompts(self, query: str | Sequence[Message], responses: Sequence[str], k: int,
                seed: int, hint_best: int | None = None,
                reference: str | None = None) -> list[SamplePrompt]:
        """The distinct prompts of an item's k samples, each with the samples it serves (all
        with the item's reference answer, when it has one)."""
        n = len(responses)
        tag = fence_tag(query, responses, reference)
        groups: dict[tuple[int, ...], list[int]] = {}
        for j, perm in enumerate(balanced_permutations(n, k, seed)):
            groups.setdefault(tuple(perm), []).append(j)
        out = []
        for order, indices in groups.items():
            shown = [responses[i] for i in order]
            hint_pos = order.index(hint_best) + 1 if hint_best is not None else None
            out.append(SamplePrompt(order, self.format.messages(
                query, shown, tag=tag, hint_best=hint_pos, reference=reference), indices))
        return out

    def request_config(self, config: GenerationConfig, n_responses: int,
                       messages: Sequence[Message] | None = None) -> GenerationConfig:
        """The config the requests are sent with: the format's schema or grammar when
        structured, and where the static prefix of `messages` (a prompt of the item) ends."""
        changes: dict[str, object] = {}
        if self.mode is StructuredMode.SCHEMA:
            changes["json_schema"] = self.format.output_schema(n_responses)
        elif self.mode is StructuredMode.GRAMMAR:
            changes["grammar"] = self.format.output_grammar(n_responses, config.max_tokens)
        if messages is not None:
            changes["cache_prefix_chars"] = self.format.static_prefix_chars(messages)
        return config.with_(**changes) if changes else config

    async def sample(self, query: str | Sequence[Message], responses: Sequence[str], *, k: int,
                     config: GenerationConfig, seed: int, hint_best: int | None = None,
                     reference: str | None = None) -> list[Judgement]:
        """k judgements in sample order; every one has an explicit status."""
        n = len(responses)
        prompts = self.prompts(query, responses, k, seed, hint_best, reference)
        config = self.request_config(config, n, prompts[0].messages)
        outcomes = await self.backend.generate_many(
            [(p.messages, len(p.samples)) for p in prompts], config)
        return await self.collect(prompts, outcomes, n_responses=n, config=config,
                                  hinted=hint_best is not None)

    async def collect(self, prompts: Sequence[SamplePrompt],
                      outcomes: Sequence[GenerationResult | BackendError], *, n_responses: int,
                      config: GenerationConfig, hinted: bool = False) -> list[Judgement]:
        """Judgements from the outcomes of `prompts` (however they were obtained: online, from
        a provider's batch results or a cache), recovering unreadable samples online."""
        judgements: dict[int, Judgement] = {}
        repairs: list[tuple[SamplePrompt, list[Judgement]]] = []
        for prompt, outcome in zip(prompts, outcomes, strict=True):
            made = self._read_outcome(prompt, outcome, n_responses, config)
            judgements.update((jd.sample_index, jd) for jd in made)
            failed = [jd for jd in made if jd.status is SampleStatus.PARSE_FAILURE]
            if failed:
                repairs.append((prompt, failed))
        await asyncio.gather(*(self._repair(p, failed, n_responses, config)
                               for p, failed in repairs))
        out = [judgements[j] for j in sorted(judgements)]
        if hinted:
            for jd in out:
                jd.hinted = True
        return out

    # -- reading ---------------------------------------------------------------------------------
    def _read_outcome(self, prompt: SamplePrompt, outcome: GenerationResult | BackendError, n: int,
                      config: GenerationConfig) -> list[Judgement]:
        perm = list(prompt.permutation)
        if isinstance(outcome, BackendError):
            return [Judgement(sample_index=j, status=SampleStatus.API_ERROR, permutation=perm,
                              error=describe_error(outcome),
                              usage=_failed_call_usage(outcome) if pos == 0 else Usage())
                    for pos, j in enumerate(prompt.samples)]
        shares = split_usage(outcome.usage, len(prompt.samples))
        made = []
        for pos, (j, usage) in enumerate(zip(prompt.samples, shares, strict=True)):
            if pos >= len(outcome.completions):
                made.append(Judgement(
                    sample_index=j, status=SampleStatus.API_ERROR, permutation=perm, usage=usage,
                    error=f"the backend returned {len(outcome.completions)} of "
                          f"{len(prompt.samples)} completions"))
                continue
            made.append(self.read(outcome.completions[pos], n, perm, j, usage,
                                  config.max_tokens, schema=config.json_schema is not None,
                                  grammar=config.grammar is not None))
        return made

    def read(self, completion: Completion, n: int, perm: list[int], index: int, usage: Usage,
             max_tokens: int | None = None, *, schema: bool = False,
             grammar: bool = False) -> Judgement:
        """One completion as a Judgement: truncated text is refused, else the format parses it
        (by field when it was written under the format's `schema`, else as text)."""
        fallback = completion.structured_fallback if schema else None
        as_json = schema and fallback is None
        if self.backend.capabilities.cut_off(completion):
            return Judgement(
                sample_index=index, status=SampleStatus.PARSE_FAILURE, permutation=perm,
                raw_text=completion.text, usage=usage, truncated=True,
                structured=as_json or grammar, structured_fallback=fallback,
                error=f"output truncated: the provider cut it off ({completion.finish_reason}, "
                      f"max_tokens={max_tokens}); a cut-off judgement is never read as it "
                      "stands")
        jd = self.judgement_from_text(completion.text, n, perm, index, usage, structured=as_json)
        if as_json or grammar:  # set only where they differ from the defaults: each set is a
            jd.structured = True  # pydantic __setattr__, on every sample
        if fallback is not None:
            jd.structured_fallback = fallback
        return jd

    def judgement_from_text(self, text: str, n: int, perm: list[int], index: int,
                            usage: Usage, *, structured: bool = False) -> Judgement:
        """Parse a complete answer into a Judgement in the caller's order (OK or
        PARSE_FAILURE); `structured`: the answer is JSON under the format's schema."""
        try:
            parsed = (self.format.parse_structured(text, n) if structured
                      else self.format.parse(text, n))
        except ParseError as exc:
            return Judgement(sample_index=index, status=SampleStatus.PARSE_FAILURE,
                             permutation=perm, raw_text=text, error=str(exc), usage=usage)
        return self.judgement_from_parsed(parsed, n, perm, index, usage, text)

    @staticmethod
    def judgement_from_parsed(parsed: ParsedJudgement, n: int, perm: list[int], index: int,
                              usage: Usage, raw_text: str) -> Judgement:
        """An OK Judgement in the caller's order from an answer read in shown order."""
        critiques: list[Critique] = []
        if parsed.critiques:
            slots: list[Critique | None] = [None] * n
            for pos, original in enumerate(perm):
                slots[original] = parsed.critiques[pos]
            critiques = [c if c is not None else Critique() for c in slots]
        return Judgement(sample_index=index, status=SampleStatus.OK, permutation=perm,
                         principles=parsed.principles, critiques=critiques,
                         scores=unpermute(parsed.scores, perm), raw_text=raw_text, usage=usage)

    # -- recovery --------------------------------------------------------------------------------
    async def _repair(self, prompt: SamplePrompt, failed: list[Judgement], n: int,
                      config: GenerationConfig) -> None:
        if self.backend.capabilities.complete_under_grammar:
            await self._force(prompt.messages, failed, n, config)
        else:
            await asyncio.gather(*(self._reask(prompt.messages, jd, n, config) for jd in failed))

    async def _force(self, messages: list[Message], failed: list[Judgement], n: int,
                     config: GenerationConfig) -> None:
        """Complete the final line under the format's grammar, for every failed sample of one
        prompt in one call. A forced line is the final line, so it is what the parser reads."""
        force_config = config.with_(max_tokens=self.format.final_line_tokens(n), grammar=None,
                                    json_schema=None, temperature=0.0)
        try:
            result = await self.backend.complete_under_grammar(
                messages, [jd.raw_text for jd in failed], self.format.final_line_grammar(n),
                force_config)
        except Exception as exc:
            if not is_recorded_failure(exc):
                raise
            for jd in failed:
                jd.error = f"{jd.error}; forcing failed: {describe_error(exc)}"
            failed[0].usage = failed[0].usage + _failed_call_usage(exc)
            return
        shares = split_usage(result.usage, len(failed))
        for jd, completion, usage in zip(failed, result.completions, shares, strict=False):
            jd.attempts += 1
            jd.usage = jd.usage + usage
            # The forced line must be a final line on its own: were it empty, the cut text's
            # last line would be read in its place.
            alone = self.judgement_from_text(completion.text, n, jd.permutation,
                                             jd.sample_index, jd.usage)
            forced = self.judgement_from_text(jd.raw_text.rstrip() + "\n" + completion.text, n,
                                              jd.permutation, jd.sample_index, jd.usage)
            if alone.valid and forced.valid:
                _adopt(jd, forced, SampleStatus.FORCED)
            else:
                jd.error = f"{jd.error}; forced line unreadable: {completion.text!r}"

    async def _reask(self, messages: list[Message], jd: Judgement, n: int,
                     config: GenerationConfig) -> None:
        """Bounded re-ask carrying the parse error (instructor style)."""
        for _ in range(self.max_reasks):
            follow = self.format.reask_messages(messages, jd.raw_text, jd.error or "", n)
            reask_config = config.with_(max_tokens=max(64, self.format.final_line_tokens(n)),
                                        grammar=None, json_schema=None)
            try:
                result = await self.backend.generate(follow, reask_config, 1)
            except Exception as exc:
                if not is_recorded_failure(exc):
                    raise
                jd.attempts += 1
                jd.usage = jd.usage + _failed_call_usage(exc)
                jd.error = f"{jd.error}; re-ask failed: {describe_error(exc)}"
                return
            jd.attempts += 1
            jd.usage = jd.usage + result.usage
            reply = result.completions[0] if result.completions else Completion(text="")
            if self.backend.capabilities.cut_off(reply):
                jd.error = f"{jd.error}; re-ask reply cut off ({reply.finish_reason})"
                continue
            again = self.reask_judgement(jd, reply.text, n)
            if again.valid:
                _adopt(jd, again, SampleStatus.OK)
                return
            jd.error = f"{jd.error}; re-ask reply unreadable: {again.error}"

    def reask_judgement(self, jd: Judgement, reply: str, n: int) -> Judgement:
        """The judgement a re-ask reply gives, read on its own (`JudgingFormat.parse_reask`):
        an empty, blank or fence-only reply is a parse failure, never the old text's last line.
        Its raw text records the exchange: the first answer, then the reply."""
        raw = jd.raw_text.rstrip() + "\n" + reply
        try:
            parsed = self.format.parse_reask(jd.raw_text, reply, n)
        except ParseError as exc:
            return Judgement(sample_index=jd.sample_index, status=SampleStatus.PARSE_FAILURE,
                             permutation=jd.permutation, raw_text=raw, error=str(exc),
                             usage=jd.usage)
        return self.judgement_from_parsed(parsed, n, jd.permutation, jd.sample_index, jd.usage,
                                          raw)


def split_usage(usage: Usage, parts: int) -> list[Usage]:
    """Spread one call's usage over its samples: the first carries the call and the prompt."""
    parts = max(parts, 1)
    if parts == 1:
        return [usage]  # Usage is never changed in place: the one share is the call's usage
    out = []
    for i in range(parts):
        share = usage.completion_tokens // parts + (1 if i < usage.completion_tokens % parts else 0)
        out.append(usage.model_copy(update={
            "prompt_tokens": usage.prompt_tokens if i == 0 else 0,
            "cached_prompt_tokens": usage.cached_prompt_tokens if i == 0 else 0,
            "cache_write_tokens": usage.cache_write_tokens if i == 0 else 0,
            "completion_tokens": share,
            "calls": usage.calls if i == 0 else 0,
            "cached_calls": usage.cached_calls if i == 0 else 0,
            "retries": usage.retries if i == 0 else 0,
            "cost_usd": (usage.cost_usd if i == 0
                         else (0.0 if usage.cost_usd is not None else None)),
        }))
    return out


def _failed_call_usage(exc: BaseException) -> Usage:
    """A failed call still counts: what its successful sibling requests spent where it carries
    that record, else one call and the retries it spent."""
    if not isinstance(exc, BackendError):
        return Usage(calls=1)
    return exc.usage if exc.usage is not None else Usage(calls=1, retries=exc.retries)


def _adopt(target: Judgement, source: Judgement, status: SampleStatus) -> None:
    target.status = status
    target.principles = source.principles
    target.critiques = source.critiques
    target.scores = source.scores
    target.raw_text = source.raw_text
    target.error = None
    target.structured = False  # the recovered answer ends with a free-text (or forced) line
