"""Structural claims of issue 22, checked on the source itself (each check is a small independent
reading of the AST, not a call into judgekit):

* judgekit/ has no import cycle (an import inside a function counts; one under
  `if TYPE_CHECKING:` does not);
* nothing outside judge.py touches a private name of `Judge`;
* no judgekit module imports a private (underscore) name of another, nor reaches one through a
  module it imported (`from judgekit import x; x._y`), nor imports a private module from outside
  the package that holds it;
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


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def _private_owner(dotted: str) -> str | None:
    """The package that holds the first private module on a dotted path (only its own modules
    may import it), or None when the path has none."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            return ".".join(parts[:i])
    return None


def test_no_module_uses_a_private_name_of_another_module() -> None:
    modules = {_module(p) for p in PKG.rglob("*.py")}
    offenders = []
    for path in PKG.rglob("*.py"):
        mod = _module(path)
        base = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound: set[str] = set()  # local names of judgekit modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                root = base
                for _ in range(node.level - 1):
                    root = root.rpartition(".")[0]
                target = (f"{root}.{node.module}" if node.module else root) if node.level \
                    else (node.module or "")
                if target != "judgekit" and not target.startswith("judgekit."):
                    continue
                owner = _private_owner(target)
                if owner is not None and not mod.startswith(owner + "."):
                    offenders.append(f"{path.relative_to(PKG)}:{node.lineno} "
                                     f"imports private module {target}")
                for a in node.names:
                    if _private(a.name) and target != mod:
                        offenders.append(f"{path.relative_to(PKG)}:{node.lineno} "
                                         f"imports {target}.{a.name}")
                    if f"{target}.{a.name}" in modules:
                        bound.add(a.asname or a.name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    owner = _private_owner(a.name) if a.name.startswith("judgekit.") else None
                    if owner is not None and not mod.startswith(owner + "."):
                        offenders.append(f"{path.relative_to(PKG)}:{node.lineno} "
                                         f"imports private module {a.name}")
                    if a.asname and a.name in modules:
                        bound.add(a.asname)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in bound):
                offenders.append(f"{path.relative_to(PKG)}:{node.lineno} "
                                 f"{node.value.id}.{node.attr}")
    assert offenders == []
