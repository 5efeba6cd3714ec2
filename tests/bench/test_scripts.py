"""The copyable runner scripts in benchmarks/ (driven with the stand-in judge, no model)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.bench_standin import ScriptedJudgeStandIn

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = ["run_llmbar", "run_judgebench", "run_rmbench", "run_rmb", "run_realmistake",
           "sweep_k"]


def _module(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(BENCH))
    common = importlib.import_module("_common")
    monkeypatch.setattr(common, "make_judge", lambda *a, **k: ScriptedJudgeStandIn())
    mod = importlib.import_module(name)
    if hasattr(mod, "make_judge"):
        monkeypatch.setattr(mod, "make_judge", lambda *a, **k: ScriptedJudgeStandIn())
    return mod


def test_every_script_has_help() -> None:
    for name in SCRIPTS:
        assert (BENCH / f"{name}.py").is_file()
    out = subprocess.run([sys.executable, str(BENCH / "run_rmb.py"), "--help"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "--limit" in out.stdout and "--compare-baseline" in out.stdout


def test_run_llmbar_with_baseline_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    mod = _module("run_llmbar", monkeypatch)
    monkeypatch.setattr(sys, "argv", ["run_llmbar.py", "--limit", "5", "--out", str(tmp_path),
                                      "--compare-baseline"])
    mod.main()
    out = capsys.readouterr().out
    assert "llmbar: accuracy" in out
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert runs == ["llmbar-embedded-baseline", "llmbar-embedded-grm-k1"]


def test_sweep_k_prefix_mode_writes_scaling_plot(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _module("sweep_k", monkeypatch)
    plots = tmp_path / "plots"
    monkeypatch.setattr(sys, "argv", ["sweep_k.py", "llmbar", "--ks", "1", "4", "--limit", "6",
                                      "--out", str(tmp_path / "runs"), "--plots", str(plots)])
    mod.main()
    assert (plots / "scaling.png").read_bytes()[:4] == b"\x89PNG"
