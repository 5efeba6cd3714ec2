"""The wheel carries the templates and the shipped benchmark data, and works without the repo."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_templates_and_data_and_works_from_site_packages(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("judgekit_grm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "judgekit/templates/grm/default.jinja" in names
    assert "judgekit/templates/grm/examples.json" in names
    assert "judgekit/templates/meta/default.jinja" in names
    for partial in ("_partials/fence.jinja", "baseline/pairwise.jinja", "reask/default.jinja"):
        assert f"judgekit/templates/{partial}" in names
    assert any(n.startswith("judgekit/bench_data/llmbar/") for n in names)
    for static in ("viewer.html", "viewer.js", "viewer.css"):  # `judgekit view`'s page
        assert f"judgekit/view/static/{static}" in names
    assert not any(n.endswith((".gguf", ".safetensors", ".zip")) for n in names)
    assert wheel.stat().st_size < 10 * 2**20
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import judgekit, judgekit.formats as f, judgekit.bench.datasets as d;"
            f"assert judgekit.__file__.startswith({str(site)!r});"
            "tag = f.fence_tag('q', ['a']);"
            "assert f'<response-1 tag={tag}>' in f.grm_messages('q', ['a'])[0]['content'];"
            "assert 'Best: ' in f.PairwiseFormat().messages('q', ['a'], tag=tag)[0]['content'];"
            "print(d.shipped_data_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(site / "judgekit" / "bench_data")


def test_repository_stays_small() -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.split(b"\0")
    total = sum((ROOT / f.decode()).stat().st_size for f in tracked
                if f and (ROOT / f.decode()).is_file())
    assert total < 20 * 2**20, f"tracked files hold {total / 2**20:.1f} MB"
