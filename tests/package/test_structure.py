"""Structural claims of issue 22, checked on the source itself (each check is a small independent
reading of the AST, not a call into judgekit):

* judgekit/ has no import cycle (an import inside a function counts; one under
  `if TYPE_CHECKING:` does not);
* nothing outside judge.py touches a private name of `Judge`;
* the bench runner never probes a scorer (no getattr/hasattr: the Scorer protocol declares it).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "judgekit"


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, mod: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    is_pkg = path.name == "__init__.py"
    base = mod if is_pkg else mod.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            root = base
            for _ in range(node.level - 1):
                root = root.rpartition(".")[0]
            target = (f"{root}.{node.module}" if node.module else root) if node.level \
                else (node.module or "")
            names.add(target)
            names.update(f"{target}.{a.name}" for a in node.names)
    out = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        # a module's own parent packages load before it: an edge to them is no cycle
        if name and name != mod and not mod.startswith(name + "."):
            out.add(name)
    return out


def test_judgekit_has_no_import_cycle() -> None:
    paths = {_module(p): p for p in PKG.rglob("*.py")}
    graph = {m: _imports(p, m, set(paths)) for m, p in paths.items()}
    # a cycle exists iff some module reaches itself
    for start in graph:
        seen: set[str] = set()
        stack = list(graph[start])
        while stack:
            m = stack.pop()
            assert m != start, f"{start} imports itself through {sorted(seen)}"
            if m not in seen:
                seen.add(m)
                stack.extend(graph[m])


def test_no_module_outside_judge_py_touches_a_private_judge_name() -> None:
    tree = ast.parse((PKG / "judge.py").read_text(encoding="utf-8"))
    judge = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Judge")
    private = {n.name for n in judge.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
               and n.name.startswith("_") and not n.name.endswith("__")}
    private |= {t.attr for n in ast.walk(judge) if isinstance(n, ast.Assign)
                for t in n.targets if isinstance(t, ast.Attribute) and t.attr.startswith("_")}
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.name == "judge.py" and path.parent == PKG:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in private:
                offenders.append(f"{path.relative_to(PKG)}:{node.lineno} .{node.attr}")
    assert offenders == []


def test_the_bench_runner_never_probes_a_scorer() -> None:
    tree = ast.parse((PKG / "bench" / "runner.py").read_text(encoding="utf-8"))
    probes = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr")]
    assert probes == []
