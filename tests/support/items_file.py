"""A JSONL file of n two-response items whose first response is right, as the fault server's
judges read them (the `jk-item-<id>` tag names the item in the server's records)."""

from __future__ import annotations

import json
from pathlib import Path


def write_items(path: Path, n: int, prefix: str = "i") -> Path:
    path.write_text("".join(json.dumps({"id": f"{prefix}{i}",
                                        "query": f"jk-item-{prefix}{i} Which is right?",
                                        "responses": ["GOOD: four", "five"], "label": 0}) + "\n"
                            for i in range(n)))
    return path
