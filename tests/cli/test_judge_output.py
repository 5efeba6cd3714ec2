"""`judgekit judge`'s text output: model-written text wrapped whole (never cut), the meta
scores and the kept samples marked, and no third-party progress bar in it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from judgekit.cli import format_verdict
from judgekit.quiet import quiet_model_loading
from judgekit.schema import Critique, Judgement, Principle, SampleStatus, Verdict

LONG = ("The response names red, which is one of the three primary colours in the additive "
        "and subtractive models alike; it answers the question directly and correctly, with no "
        "padding, although a short note on the two colour models would have helped a reader "
        "who is unsure which model the question means. Averylongunbrokenidentifier" + "x" * 90)


def _sample(i: int, meta: float | None, kept: bool, status: SampleStatus = SampleStatus.OK
            ) -> Judgement:
    ok = status is SampleStatus.OK
    return Judgement(
        sample_index=i, status=status, permutation=[0, 1] if i % 2 == 0 else [1, 0],
        principles=[Principle(name="Correctness", weight=0.6, description=LONG),
                    Principle(name="Brevity", weight=0.4, description="Short.\nNo filler.")]
        if ok else [],
        critiques=[Critique(analysis=LONG, overall=9.0), Critique(analysis="Wrong.", overall=2)]
        if ok else [],
        scores=[9.0, 2.0] if ok else None, meta_score=meta, kept=kept,
        error=None if ok else "the judge wrote no scores line " + "and more " * 20)


def _verdict(samples: list[Judgement], k_meta: int | None) -> Verdict:
    valid = sum(s.valid for s in samples)
    return Verdict(n_responses=2, scores=[18.0, 4.0], best=0, k=len(samples), k_meta=k_meta,
                   valid_samples=valid, invalid_samples=len(samples) - valid, samples=samples,
                   model="m")


def _words(text: str) -> str:
    """The text without its whitespace: a wrapped text (a long word broken across lines
    included) reads the same as the original."""
    return "".join(text.split())


@pytest.mark.parametrize("width", [60, 80, 119])
def test_text_is_wrapped_whole_never_cut(width: int) -> None:
    verdict = _verdict([_sample(0, None, True), _sample(1, None, True)], None)
    text = format_verdict(verdict, ["Red.", "Banana. " * 30], width=width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    # every word of the model's text is there, in order: join the wrapped lines back
    flat = _words(text)
    assert _words(f"Response 1: score 9. {LONG}") in flat
    assert _words(f"Correctness (weight 0.60): {LONG}") in flat
    # its own line breaks are kept
    assert "    - Brevity (weight 0.40): Short.\n      No filler." in text
    assert "meta" not in text.lower() and "KEPT" not in text


def test_meta_scores_and_kept_samples_are_marked() -> None:
    samples = [_sample(0, 0.91, True), _sample(1, 0.12, False), _sample(2, None, False),
               _sample(3, None, False, SampleStatus.PARSE_FAILURE)]
    text = format_verdict(_verdict(samples, k_meta=1), ["Red.", "Banana."], width=100)
    heads = [line for line in text.splitlines() if line.startswith("Sample ")]
    assert heads == ["Sample 1 [ok]  order 1,2  meta score 0.910  KEPT",
                     "Sample 2 [ok]  order 2,1  meta score 0.120  not kept",
                     "Sample 3 [ok]  order 1,2  meta score not rated  not kept",
                     "Sample 4 [parse_failure]  order 2,1"]
    assert _words("Scores (sum over the 1 KEPT of 3 valid samples, meta-guided with k_meta=1; "
                  "1 not rated by the meta judge):") in _words(text)
    assert _words("Error: the judge wrote no scores line " + "and more " * 20) in _words(text)


def test_quiet_model_loading_silences_the_bar_and_restores_the_setting(
        capfd: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import utils as hub
    from transformers.utils import logging as hf_logging

    for before in (True, False):
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()
        capfd.readouterr()
        with quiet_model_loading():
            for _ in hf_logging.tqdm(range(3), desc="Loading weights"):
                pass
        assert "Loading weights" not in "".join(capfd.readouterr())
        assert hf_logging.is_progress_bar_enabled() is before
        assert hub.are_progress_bars_disabled() is not before
    hf_logging.enable_progress_bar()
    for _ in hf_logging.tqdm(range(3), desc="Loading weights"):  # the bar itself does draw
        pass
    assert "Loading weights" in "".join(capfd.readouterr())


@pytest.mark.model
def test_judge_text_on_the_embedded_model_has_no_progress_bar() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "judgekit.cli", "judge", "--query", "Name a primary colour.",
         "--response", "Red.", "--response", "Banana.", "--max-tokens", "160"],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Sample 1 [" in out.stdout and "Scores (" in out.stdout
    assert "Loading weights" not in out.stdout + out.stderr
    assert "it/s]" not in out.stdout + out.stderr  # no tqdm bar of any kind
