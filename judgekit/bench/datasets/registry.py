"""The benchmark registry: `@register(...)` on a loader records it with its metadata, and
`load_dataset` finds the files, loads (once per process and root) and selects items."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from judgekit.bench.datasets.base import DatasetError, DatasetInfo, DatasetKind, Loader
from judgekit.bench.datasets.roots import ENV_DATA_DIR, PathLike, data_roots, find_root
from judgekit.bench.datasets.selection import select, subsets
from judgekit.bench.items import BenchItem

_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> None:
    """Add (or replace) a benchmark in the registry."""
    _REGISTRY[info.name] = info
    _load_cached.cache_clear()


def register(name: str, *, description: str, marker: str, expected: int, license: str,
             shipped: bool, kind: DatasetKind) -> Callable[[Loader], Loader]:
    """Decorator: register the decorated loader (root folder -> items) as benchmark `name`.

    `marker` is the file or folder, relative to a data root, whose presence says the data is
    there; `expected` is the item count the source documents; `shipped` says whether judgekit
    redistributes the files (their licence allows it)."""

    def decorate(loader: Loader) -> Loader:
        register_dataset(DatasetInfo(name, description, marker, loader, expected, license,
                                     shipped, kind))
        return loader

    return decorate


def dataset_names() -> list[str]:
    return list(_REGISTRY)


def get_info(name: str) -> DatasetInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise DatasetError(f"unknown dataset {name!r} (known: {known})") from None


def locate(name: str, data_dir: PathLike | None = None) -> Path | None:
    """The data root that holds dataset `name`, or None."""
    return find_root(get_info(name).marker, data_dir)


@lru_cache(maxsize=8)
def _load_cached(name: str, root: str) -> tuple[BenchItem, ...]:
    items = get_info(name).loader(Path(root))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DatasetError(f"dataset {name}: duplicate item id {item.id}")
        seen.add(item.id)
    return tuple(items)


def load_dataset(name: str, subset: str | None = None, limit: int | None = None,
                 data_dir: PathLike | None = None,
                 stratify: bool = False) -> list[BenchItem]:
    """The items of a registered benchmark, optionally one subset (pattern) and N items (the
    first N, or an even spread over subsets with `stratify`)."""
    get_info(name)
    root = locate(name, data_dir)
    if root is None:
        searched = ", ".join(str(r) for r in data_roots(data_dir))
        raise DatasetError(f"dataset {name!r} not found (searched {searched}); "
                           f"pass --data-dir or set {ENV_DATA_DIR}")
    return select(_load_cached(name, str(root.resolve())), subset, limit, stratify)


def list_datasets(data_dir: PathLike | None = None, count: bool = True) -> list[dict[str, Any]]:
    """One row per registered benchmark: name, item count (None when not found), subsets,
    expected count (SOURCES.md), where it was found, licence, whether the repo ships it, and
    the item count per subset (`subset_items`, empty when not counted)."""
    rows: list[dict[str, Any]] = []
    for name, info in _REGISTRY.items():
        root = locate(name, data_dir)
        n_items: int | None = None
        n_subsets: int | None = None
        per_subset: dict[str, int] = {}
        if root is not None and count:
            items = _load_cached(name, str(root.resolve()))
            per_subset = subsets(items)
            n_items, n_subsets = len(items), len(per_subset)
        rows.append({"name": name, "items": n_items, "expected": info.expected,
                     "subsets": n_subsets, "kind": info.kind,
                     "location": str(root) if root is not None else None,
                     "license": info.license, "shipped": info.shipped,
                     "description": info.description, "subset_items": per_subset})
    return rows
