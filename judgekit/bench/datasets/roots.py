"""Where benchmark files are looked up.

Dataset by dataset, the first folder that holds the dataset's marker file wins:

1. the data shipped with judgekit (`data/` at the top of a checkout, `judgekit/bench_data` in a
   wheel: LLMBar, JudgeBench and HHH, whose licences allow redistribution);
2. the data directory: the `data_dir` argument (`--data-dir`), else the environment variable
   `JUDGEKIT_DATA_DIR`, else `../shared/data` next to the repository or the current directory.

A data directory that is given explicitly (argument or environment) must exist and be readable:
a typo is an error, not a silent fall-back to the shipped data.
"""

from __future__ import annotations

import os
from pathlib import Path

from judgekit.bench.datasets.base import DatasetError

ENV_DATA_DIR = "JUDGEKIT_DATA_DIR"

PathLike = str | os.PathLike[str]


def repo_root() -> Path:
    """The checkout this package lives in (the parent of the `judgekit` package)."""
    return Path(__file__).resolve().parents[3]


def shipped_data_dir() -> Path:
    """`judgekit/bench_data` inside an installed wheel (when packaged there), else the
    checkout's top-level `data/`."""
    packaged = Path(__file__).resolve().parents[2] / "bench_data"
    return packaged if packaged.is_dir() else repo_root() / "data"


def check_data_dir(path: Path, source: str = "data directory") -> Path:
    """`path` when it is a readable directory, else a DatasetError saying what is wrong."""
    if not path.exists():
        raise DatasetError(f"{source} {path} does not exist")
    if not path.is_dir():
        raise DatasetError(f"{source} {path} is not a directory")
    try:
        if not os.access(path, os.R_OK | os.X_OK):
            raise PermissionError("permission denied")
        with os.scandir(path) as it:
            next(it, None)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DatasetError(f"{source} {path} is not readable: {reason}") from exc
    return path


def default_data_dir(data_dir: PathLike | None = None) -> Path | None:
    """`data_dir`, else $JUDGEKIT_DATA_DIR, else ../shared/data beside the repo or cwd, if any.

    An explicit `data_dir` or environment value must be a readable directory (DatasetError)."""
    if data_dir is not None:
        return check_data_dir(Path(data_dir).expanduser())
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return check_data_dir(Path(env).expanduser(), f"${ENV_DATA_DIR}")
    for base in (repo_root(), Path.cwd()):
        cand = base.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return None


def data_roots(data_dir: PathLike | None = None) -> list[Path]:
    """The folders searched for dataset files, in order: shipped data, then the data dir."""
    roots = [shipped_data_dir()]
    extra = default_data_dir(data_dir)
    if extra is not None and extra.resolve() != roots[0].resolve():
        roots.append(extra)
    return roots


def find_root(marker: str, data_dir: PathLike | None = None) -> Path | None:
    """The first data root that holds `marker` (a file or folder relative to the root), or None."""
    for root in data_roots(data_dir):
        if (root / marker).exists():
            return root
    return None
