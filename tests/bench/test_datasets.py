"""Every loader on the real files: item counts equal SOURCES.md, labels and subsets as documented."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from judgekit.bench import datasets as ds
from judgekit.bench.items import BenchItem, Label, LabelKind, place_best, stable_position


def _have(name: str) -> bool:
    return ds.locate(name) is not None


def _load(name: str, **kw: object) -> list[BenchItem]:
    if not _have(name):
        pytest.skip(f"{name} data not available")
    return ds.load_dataset(name, **kw)  # type: ignore[arg-type]


def test_shipped_datasets_are_found_in_the_repo_first() -> None:
    for name in ("llmbar", "llmbar-processed", "llmbar-casestudy", "judgebench", "hhh"):
        assert ds.locate(name) == ds.shipped_data_dir(), name
    for name in ("rmb", "realmistake", "xstest", "rm-bench"):
        root = ds.locate(name)
        assert root is None or root != ds.shipped_data_dir(), f"{name} must not be shipped"


def test_repo_ships_no_restricted_data() -> None:
    shipped = {p.name for p in ds.shipped_data_dir().iterdir() if p.is_dir()}
    assert shipped == {"llmbar", "judgebench", "hhh-alignment"}
    total = sum(f.stat().st_size for f in ds.shipped_data_dir().rglob("*") if f.is_file())
    assert total < 8_000_000
    for folder in shipped:
        assert (ds.shipped_data_dir() / folder / "SOURCE.md").is_file()
        assert (ds.shipped_data_dir() / folder / "LICENSE").is_file()


def test_judgebench() -> None:
    items = _load("judgebench")
    assert len(items) == 620
    by = Counter(it.subset for it in items)
    assert by == {"gpt/knowledge": 154, "gpt/reasoning": 98, "gpt/math": 56, "gpt/coding": 42,
                  "claude/knowledge": 154, "claude/reasoning": 51, "claude/math": 34,
                  "claude/coding": 31}
    gpt = Counter(it.label.best for it in items if it.subset.startswith("gpt"))
    claude = Counter(it.label.best for it in items if it.subset.startswith("claude"))
    assert gpt == {0: 193, 1: 157} and claude == {0: 143, 1: 127}


def test_llmbar_sets() -> None:
    items = _load("llmbar")
    assert Counter(it.subset for it in items) == {
        "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
        "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46}
    nat = [it for it in items if it.subset == "llmbar-natural"]
    assert Counter(it.label.best for it in nat) == {0: 42, 1: 58}
    processed = _load("llmbar-processed")
    assert Counter(it.subset for it in processed) == {"faireval": 66, "llmeval2": 200,
                                                      "mt-bench-human": 200}
    fair = [it for it in processed if it.subset == "faireval"]
    assert Counter(it.label.best for it in fair) == {0: 41, 1: 25}
    case = _load("llmbar-casestudy")
    assert Counter(it.subset for it in case) == {"constraint": 89, "negation": 59, "normal": 59,
                                                 "base-9": 54, "base-10": 54}


def test_rmbench_3x3_pairs() -> None:
    items = _load("rm-bench")
    assert len(items) == 798 * 9
    prompts = {(it.subset, it.metadata["prompt_id"]) for it in items}
    assert len(prompts) == 798
    assert Counter(it.subset for it in items) == {"chat": 129 * 9, "code": 228 * 9,
                                                  "safety-refuse": 284 * 9,
                                                  "safety-response": 157 * 9}
    cells = Counter((it.metadata["chosen_style"], it.metadata["rejected_style"]) for it in items)
    assert set(cells.values()) == {798} and len(cells) == 9
    # the gold position is not always first
    assert 0.4 < sum(it.label.best == 0 for it in items) / len(items) < 0.6


def test_rmb_pairwise_and_bon() -> None:
    items = _load("rmb")
    pair = [it for it in items if it.metadata["kind"] == "pairwise"]
    bon = [it for it in items if it.metadata["kind"] == "bon"]
    assert len(pair) == 14543 and len(bon) == 3786
    assert Counter(it.metadata["goal"] for it in pair) == {"Harmlessness": 6087,
                                                          "Helpfulness": 8456}
    assert Counter(it.metadata["goal"] for it in bon) == {"Harmlessness": 1677,
                                                         "Helpfulness": 2109}
    assert all(3 <= len(it.responses) <= 7 for it in bon)
    assert all(isinstance(it.query, list) and it.query[-1]["role"] for it in items[:50])
    code = [it for it in pair if it.subset.startswith("pairwise/Helpfulness/Code/")]
    assert len(code) == 1224
    assert len(ds.load_dataset("rmb", subset="bon/Harmlessness")) == 1677


def test_realmistake_zip_in_memory(tmp_path: Path) -> None:
    items = _load("realmistake")
    assert len(items) == 900
    counts = Counter((it.metadata["task"], it.metadata["response_model"], it.label.error)
                     for it in items)
    assert counts[("math_word_problem_generation", "gpt-4-0613", True)] == 87
    assert counts[("math_word_problem_generation", "Llama-2-70b-chat-hf", False)] == 32
    assert counts[("answerability_classification", "Llama-2-70b-chat-hf", True)] == 130
    assert all(it.label.kind is LabelKind.BINARY and len(it.responses) == 1 for it in items)
    assert all("human_explanation" not in it.metadata for it in items)


def test_xstest_gold_flag() -> None:
    items = _load("xstest")
    assert len(items) == 2250
    assert Counter(it.metadata["prompt_label"] for it in items) == {"safe": 1250, "unsafe": 1000}
    gpt4 = [it for it in items if it.metadata["model"] == "gpt4"]
    assert Counter(it.metadata["final_label"] for it in gpt4) == {
        "1_full_compliance": 230, "2_full_refusal": 211, "3_partial_refusal": 9}
    assert ds.xstest_is_error("safe", "1_full_compliance") is False
    assert ds.xstest_is_error("safe", "2_full_refusal") is True
    assert ds.xstest_is_error("unsafe", "2_full_refusal") is False
    assert ds.xstest_is_error("unsafe", "1_full_compliance") is True
    assert ds.xstest_is_error("unsafe", "3_partial_refusal") is True
    assert len(ds.load_dataset("xstest", subset="*/safe")) == 1250


def test_hhh_parsed_from_prometheus_prompts() -> None:
    items = _load("hhh")
    assert len(items) == 221
    assert Counter(it.subset for it in items) == {"harmless": 58, "helpful": 59, "honest": 61,
                                                  "other": 43}
    for it in items:
        assert isinstance(it.query, str)
        assert "###" not in it.query and "Score Rubrics" not in it.responses[0]


def test_ids_unique_and_list_datasets_counts() -> None:
    rows = {r["name"]: r for r in ds.list_datasets()}
    assert set(rows) >= {"judgebench", "llmbar", "rm-bench", "rmb", "realmistake", "xstest",
                         "hhh"}
    for name, row in rows.items():
        if row["items"] is not None:
            assert row["items"] == row["expected"], name


def test_subset_matching_and_errors() -> None:
    assert ds.subset_matches("pairwise/Helpfulness/Code/X", "pairwise")
    assert ds.subset_matches("pairwise/Helpfulness/Code/X", "pairwise/Helpfulness/")
    assert not ds.subset_matches("pairwise2/a", "pairwise")
    assert ds.subset_matches("gpt4/safe", "*/safe")
    assert ds.subset_matches("b", "a, b")
    with pytest.raises(ds.DatasetError, match="unknown dataset"):
        ds.load_dataset("nope")
    with pytest.raises(ds.DatasetError, match="no items in subset"):
        ds.load_dataset("llmbar", subset="does-not-exist")
    assert len(ds.load_dataset("llmbar", subset="llmbar-adver*", limit=5)) == 5


def test_missing_data_dir_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ds.roots, "shipped_data_dir", lambda: tmp_path / "none")
    monkeypatch.setattr(ds.roots, "default_data_dir", lambda data_dir=None: tmp_path / "also-none")
    with pytest.raises(ds.DatasetError, match="not found"):
        ds.load_dataset("rmb")


def test_label_and_item_helpers() -> None:
    assert stable_position("x", 2) == stable_position("x", 2)
    responses, best = place_best("key", "GOOD", ["b1", "b2"])
    assert responses[best] == "GOOD" and len(responses) == 3
    item = BenchItem(id="a", query="q", responses=["r0", "r1", "r2"], label=Label.best_of(2))
    rev = item.reordered([2, 1, 0])
    assert rev.responses == ["r2", "r1", "r0"] and rev.label.best == 0
    assert Label.ranking([2, 1, 3]).remap([1, 0, 2]).ranks == [1, 2, 3]
    assert Label.ranking([2, 1, 1]).best_index is None
    assert Label.tie([0, 1]).remap([1, 0]).tied == [0, 1]
    with pytest.raises(ValueError):
        BenchItem(id="b", query="q", responses=["x", "y"], label=Label.binary(error=True))
    with pytest.raises(ValueError):
        BenchItem(id="c", query="q", responses=["x"], label=Label.best_of(1))
    with pytest.raises(ValueError):
        Label(kind=LabelKind.BEST)


def test_stratified_limit_spreads_over_subsets() -> None:
    items = ds.load_dataset("llmbar", limit=10, stratify=True)
    assert Counter(it.subset for it in items) == {s: 2 for s in ds.LLMBAR_SETS}
    few = ds.load_dataset("llmbar", limit=3, stratify=True)
    assert len(few) == 3 and len({it.subset for it in few}) == 3
    assert len(ds.load_dataset("llmbar", limit=1000, stratify=True)) == 419


def test_builtin_loaders_keep_empty_responses() -> None:
    """LLMEval^2 row 169 has an empty output: the item keeps both responses."""
    items = {it.id: it for it in ds.load_dataset("llmbar-processed", subset="llmeval2")}
    item = items["llmbar-processed-llmeval2-169"]
    assert len(item.responses) == 2 and any(not r.strip() for r in item.responses)


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(("rows", "message"), [
    ([{"input": "q", "output_1": "a", "output_2": "b", "label": 1},
      {"input": "q", "output_1": "a", "label": 2}],
     "llmbar/LLMBar/Natural/dataset.json row 1: missing field 'output_2'"),
    ([{"input": "q", "output_1": "a", "output_2": "b", "label": 3}],
     "llmbar/LLMBar/Natural/dataset.json row 0: field 'label' is 3, not 1 or 2"),
    ([{"input": "q", "output_1": "a", "output_2": "b", "label": "first"}],
     "llmbar/LLMBar/Natural/dataset.json row 0: field 'label' is 'first', not 1 or 2"),
    ([{"input": "q", "output_1": "a", "output_2": None, "label": 1}],
     "llmbar/LLMBar/Natural/dataset.json row 0: field 'responses.1': Input should be a valid "
     "string"),
    (["not an object"], "llmbar/LLMBar/Natural/dataset.json row 0: expected an object, got str"),
    ({"input": "q"}, "llmbar/LLMBar/Natural/dataset.json: expected a list of objects, got dict"),
])
def test_a_malformed_row_of_a_builtin_file_names_file_row_and_field(
        tmp_path: Path, rows: object, message: str) -> None:
    _write(tmp_path / "llmbar/LLMBar/Natural/dataset.json", rows)
    with pytest.raises(ds.DatasetError) as exc:
        ds.load_llmbar(tmp_path)
    assert str(exc.value) == message


def test_malformed_rows_through_load_dataset(tmp_path: Path) -> None:
    good = {"id": 1, "prompt": "p", "chosen": ["a", "b", "c"], "rejected": ["d", "e", "f"]}
    _write(tmp_path / "rm-bench/chat_filtered.json",
           [good, {"id": 2, "prompt": "p", "chosen": ["a", "b"], "rejected": ["d", "e", "f"]}])
    with pytest.raises(ds.DatasetError, match=r"rm-bench/chat_filtered.json row 1\): expected 3"):
        ds.load_dataset("rm-bench", data_dir=tmp_path)
    jb = tmp_path / "jb"
    _write(jb / ds.JUDGEBENCH_FILES["gpt"], json.dumps({"pair_id": "x", "label": "A>B"}) + "\n")
    with pytest.raises(ds.DatasetError, match=r"response_model=gpt-4o-2024-05-13.jsonl row 0: "
                                              r"missing field 'question'$"):
        ds.load_judgebench(jb)


def test_an_explicit_data_dir_must_exist_and_be_a_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ds.DatasetError, match=r"data directory .*nope does not exist"):
        ds.load_dataset("rmb", data_dir=tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ds.DatasetError, match="is not a directory"):
        ds.list_datasets(tmp_path / "file", count=False)
    monkeypatch.setenv(ds.ENV_DATA_DIR, str(tmp_path / "gone"))
    with pytest.raises(ds.DatasetError, match=r"\$JUDGEKIT_DATA_DIR .*gone does not exist"):
        ds.load_dataset("llmbar")
    monkeypatch.setenv(ds.ENV_DATA_DIR, str(tmp_path))
    assert ds.data_roots()[-1] == tmp_path


def test_an_unreadable_data_dir_is_a_clear_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:  # root reads anything: simulate the refusal instead
        locked.chmod(0)
    else:
        monkeypatch.setattr(ds.roots.os, "access", lambda *a, **k: False)
    try:
        with pytest.raises(ds.DatasetError, match="is not readable"):
            ds.load_dataset("rmb", data_dir=locked)
    finally:
        locked.chmod(0o755)


def test_registry_decorator_carries_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ds.dataset_names():
        info = ds.get_info(name)
        assert info.kind in ("pairwise", "pairwise+bon", "binary") and info.expected > 0
    assert ds.get_info("rmb").kind == "pairwise+bon" and not ds.get_info("rmb").shipped
    monkeypatch.setattr(ds.registry, "_REGISTRY", dict(ds.registry._REGISTRY))

    @ds.register("tiny", description="two items", marker="llmbar", expected=2, license="MIT",
                 shipped=True, kind="pairwise")
    def load_tiny(root: Path) -> list[BenchItem]:
        return [BenchItem(id=f"t{i}", query="q", responses=["a", "b"], label=Label.best_of(i))
                for i in range(2)]

    assert "tiny" in ds.dataset_names() and ds.get_info("tiny").loader is load_tiny
    assert [it.id for it in ds.load_dataset("tiny")] == ["t0", "t1"]
