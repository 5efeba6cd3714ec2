"""RFT keeps the teacher's own words as SFT targets, so its teacher writes the text format the
prompt asks for: a remote teacher whose default would be a JSON schema writes free text."""

from __future__ import annotations

from pathlib import Path

import pytest

from judgekit.structured import StructuredMode
from judgekit.train.config import RFTConfig
from judgekit.train.rft import build_judge


@pytest.mark.parametrize(("model", "structured", "mode"), [
    ("openai:gpt-4o-mini", None, StructuredMode.OFF),  # not JSON targets
    ("anthropic:claude-sonnet-4-6", None, StructuredMode.OFF),
    ("openai:gpt-4o-mini", True, StructuredMode.SCHEMA),  # asked for explicitly
    ("embedded", None, StructuredMode.GRAMMAR),  # the grammar writes the text format
])
def test_rft_teacher_writes_the_prompts_text_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    model: str, structured: bool | None,
                                                    mode: StructuredMode) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    cfg = RFTConfig(model=model, dataset="llmbar", out_dir=tmp_path, structured=structured)
    assert build_judge(cfg).sampler.mode is mode
