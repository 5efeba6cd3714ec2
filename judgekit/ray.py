"""Judging a Ray Data `Dataset` on a cluster: `map_batches` over a pool of actors, each holding
one Judge (extra `ray`: ``pip install 'judgekit-grm[ray]'``).

    import ray
    from judgekit.judge_spec import JudgeSpec
    from judgekit.ray import judge_dataset

    ray.init()                                     # or ray.init("ray://head:10001")
    items = ray.data.read_json("items.jsonl")      # columns id, query, responses
    spec = JudgeSpec(model="openai:my-grm", options={"base_url": "http://vllm:8000/v1"})
    judged = judge_dataset(items, spec, samples=4, workers=8)
    judged.write_parquet("verdicts/")

Why actors: a Judge holds a loaded model (local backends) or connection pools and rate limits
(remote ones); an actor builds it once from a `JudgeSpec` (plain data, so it pickles) and keeps
it for every batch it is given. Inside an actor, the batch's items are judged by the ordinary
`Judge.ascore_many` on one event loop that lives as long as the actor, so a remote backend keeps
its own concurrency (`concurrency` items in flight per actor) and its connections.

Optional input columns: `reference` (a reference answer, or null) and `principles` (the item's
own rubric as a JSON list of criteria, or null) with `principles_mode` ("fixed" or "seed").

Output: the input columns plus one verdict row per item: `scores`, `best`, `tie`,
`valid_samples`, `invalid_samples`, `prompt_tokens`, `completion_tokens`, `cost_usd`, `error`,
and `verdict` (the whole Verdict as JSON, samples included).

`RayScorer` is the same for `judgekit bench run --ray [ADDRESS]`: it streams verdicts back to the
runner as blocks finish, so `results.jsonl` is written (and resumed) as online.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from judgekit.batch import ItemsBar, JudgeItem
from judgekit.errors import MissingDependencyError
from judgekit.judge_spec import JudgeSpec
from judgekit.meta import NOT_GIVEN, MetaArg
from judgekit.pipeline import JudgeSettings
from judgekit.prompts import as_messages
from judgekit.schema import Verdict

VERDICT_COLUMNS = ("scores", "best", "tie", "valid_samples", "invalid_samples", "prompt_tokens",
                   "completion_tokens", "cost_usd", "error", "verdict")
INDEX_COLUMN = "_judgekit_index"


RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune")


def quiet_ray() -> None:
    """Ray's log noise off in this process (its Python loggers at ERROR, so no start-up, token
    and Ray Data execution lines): judgekit's own bar counts the items, and what fails reaches
    the user as judgekit's own errors. `--ray-logs` keeps it all."""
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError("ray[data]", "ray") from exc
    return ray


def _plain(value: Any) -> Any:
    """A cell as plain Python: Arrow/NumPy arrays and structs become lists and dicts."""
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _plain(value.tolist())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _optional(value: Any) -> Any:
    """An optional cell as plain Python, None where it is empty (pandas gives NaN for nulls)."""
    value = _plain(value)
    return None if isinstance(value, float) and math.isnan(value) else value


def verdict_row(verdict: Verdict) -> dict[str, Any]:
    """The verdict columns of one item."""
    return {"scores": list(verdict.scores), "best": verdict.best, "tie": verdict.tie,
            "valid_samples": verdict.valid_samples, "invalid_samples": verdict.invalid_samples,
            "prompt_tokens": verdict.usage.prompt_tokens,
            "completion_tokens": verdict.usage.completion_tokens,
            "cost_usd": verdict.usage.cost_usd, "error": verdict.error,
            "verdict": verdict.model_dump_json()}


class JudgeActor:
    """One Judge per actor, built once; each call judges one batch (a pandas DataFrame with
    columns query, responses and optionally id, reference, principles and principles_mode) and
    returns it with the verdict columns."""

    def __init__(self, spec: dict[str, Any], samples: int = 1, meta: MetaArg = NOT_GIVEN,
                 k_meta: int | None = None, concurrency: int | None = None) -> None:
        self.judge = JudgeSpec.model_validate(spec).build()
        self.samples = samples
        self.meta = meta
        self.k_meta = k_meta
        self.concurrency = concurrency
        # one loop for the actor's life: the backend's clients and limits are bound to it
        self.loop = asyncio.new_event_loop()

    def __call__(self, batch: Any) -> Any:
        items = []
        for row in batch.to_dict("records"):
            query = _plain(row["query"])
            item_id = _plain(row.get("id"))
            principles = _optional(row.get("principles"))
            items.append(JudgeItem(
                id=None if item_id is None else str(item_id), query=query,
                responses=[str(r) for r in _plain(row["responses"])],
                reference=_optional(row.get("reference")),
                principles=json.loads(principles) if principles is not None else None,
                principles_mode=_optional(row.get("principles_mode"))))
        verdicts = self.loop.run_until_complete(self.judge.ascore_many(
            items, self.samples, meta=self.meta, k_meta=self.k_meta,
            concurrency=self.concurrency, progress=False))
        out = batch.copy()
        rows = [verdict_row(v) for v in verdicts]
        for col in VERDICT_COLUMNS:
            out[col] = [r[col] for r in rows]
        return out


def _item_extras(item: JudgeItem, items: Sequence[JudgeItem]) -> dict[str, Any]:
    """The reference and rubric columns of an item, present only when some item has one (a
    rubric travels as JSON text: one Arrow type whatever the criteria)."""
    out: dict[str, Any] = {}
    if any(it.reference is not None for it in items):
        out["reference"] = item.reference
    if any(it.principles is not None for it in items):
        out["principles"] = (None if item.principles is None else
                             json.dumps([p.model_dump() for p in item.principles]))
        out["principles_mode"] = None if item.principles_mode is None else \
            item.principles_mode.value
    return out


def judge_dataset(dataset: Any, spec: JudgeSpec, samples: int = 1, *, workers: int = 2,
                  batch_size: int = 16, num_cpus: float = 1.0, num_gpus: float = 0.0,
                  meta: MetaArg = NOT_GIVEN, k_meta: int | None = None,
                  concurrency: int | None = None) -> Any:
    """`dataset` (columns query: a string or a list of {role, content} messages, one type per
    dataset as Arrow wants; responses: a list of strings; optionally id) with the verdict columns
    added, judged
    by `workers` actors, each given `num_cpus`/`num_gpus` and batches of `batch_size` items.
    Lazy, as Ray Data is: nothing runs until the result is consumed or written.

    Give a remote backend's actors a fraction of a CPU (`num_cpus=0.25`): they wait on the
    network, and `concurrency` (default: the spec's, else 4) items are in flight in each.

    An actor that dies is not restarted (`max_restarts=0`): the run fails with Ray's error, and
    a bench run resumes from what it recorded. (Restarts also made Ray's core worker print an
    error-level warning on every run, its constructor arguments being in the object store.)"""
    ray = _ray()
    if workers < 1 or batch_size < 1:
        raise ValueError("workers and batch_size must be at least 1")
    with warnings.catch_warnings():  # Ray 2.60 names max_restarts a deprecated remote arg
        warnings.simplefilter("ignore", DeprecationWarning)
        return dataset.map_batches(
            JudgeActor, batch_format="pandas", batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=num_cpus,
            num_gpus=num_gpus or None, max_restarts=0,
            fn_constructor_kwargs={"spec": spec.model_dump(mode="json"), "samples": samples,
                                   "meta": meta, "k_meta": k_meta, "concurrency": concurrency})


class RayScorer:
    """The runner's judge for `bench run --ray [ADDRESS]`: `ascore_many` judges the items on a
    Ray cluster (a local one when `address` is None) and hands each Verdict to `on_result` as
    its block comes back, so results.jsonl grows (and resumes) as online."""

    def __init__(self, spec: JudgeSpec, *, address: str | None = None, workers: int = 2,
                 batch_size: int = 8, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 ray_logs: bool = False) -> None:
        self.spec = spec
        self.address = address
        self.workers = workers
        self.batch_size = batch_size
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.ray_logs = ray_logs
        """Ray's own logs and Ray Data's progress bars (off: judgekit's bar counts the items)."""
        self._settings: JudgeSettings | None = None

    @property
    def model(self) -> str:
        return self.spec.model or "embedded"

    def settings(self) -> JudgeSettings:
        """The settings of the Judge each actor builds: built here once from the spec (backends
        load their model and open connections lazily, so this costs neither)."""
        if self._settings is None:
            self._settings = self.spec.build().pipeline.settings(execution="ray")
        return self._settings

    def _init(self) -> Any:
        ray = _ray()
        if not self.ray_logs:
            quiet_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False,
                     logging_level=logging.INFO if self.ray_logs else logging.ERROR)
        ray.data.DataContext.get_current().enable_progress_bars = self.ray_logs
        return ray

    async def ascore_many(self, items: Sequence[JudgeItem | dict[str, Any]], samples: int = 1,
                          *, meta: MetaArg = NOT_GIVEN, k_meta: int | None = None,
                          concurrency: int | None = None, progress: bool = False,
                          on_result: Callable[[int, Verdict], Any] | None = None
                          ) -> list[Verdict]:
        """Verdicts in input order; each also handed to `on_result(index, verdict)` as it comes
        back (from the event loop's thread)."""
        parsed = [i if isinstance(i, JudgeItem) else JudgeItem.model_validate(i) for i in items]
        if not parsed:
            return []
        ray = self._init()
        # an Arrow column has one type: with any conversation among the queries, every query
        # travels as messages (a string is one user turn either way: the same prompt)
        mixed = len({isinstance(it.query, str) for it in parsed}) > 1
        rows = [{INDEX_COLUMN: n, "id": it.id,
                 "query": as_messages(it.query) if mixed else it.query,
                 "responses": it.responses, **_item_extras(it, parsed)}
                for n, it in enumerate(parsed)]
        judged = judge_dataset(ray.data.from_items(rows), self.spec, samples,
                               workers=self.workers, batch_size=self.batch_size,
                               num_cpus=self.num_cpus, num_gpus=self.num_gpus, meta=meta,
                               k_meta=k_meta, concurrency=concurrency)
        out: list[Verdict | None] = [None] * len(parsed)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, Verdict] | None] = asyncio.Queue()

        def stream() -> None:  # Ray's iterator blocks: it runs in a thread, results hop back
            try:
                for row in judged.select_columns([INDEX_COLUMN, "verdict"]).iter_rows():
                    verdict = Verdict.model_validate_json(row["verdict"])
                    loop.call_soon_threadsafe(queue.put_nowait, (int(row[INDEX_COLUMN]),
                                                                 verdict))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = asyncio.ensure_future(asyncio.to_thread(stream))
        bar = ItemsBar(len(parsed), desc="judging on ray", enabled=progress)
        try:
            while (got := await queue.get()) is not None:
                index, verdict = got
                out[index] = verdict
                bar.done(verdict)
                if on_result is not None:
                    on_result(index, verdict)
        finally:
            bar.close()
        await worker  # re-raises what the stream raised
        return [v for v in out if v is not None]

    async def aclose(self) -> None:
        return None
