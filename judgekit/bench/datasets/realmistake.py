"""ReaLMistake: single responses with human error labels, read from the authors' encrypted zip
in memory (the plain text never touches the disk, as the authors ask)."""

from __future__ import annotations

import ast
import json
import zipfile
from pathlib import Path
from typing import Any

from judgekit.bench.datasets.base import DatasetError, row_context
from judgekit.bench.datasets.registry import register
from judgekit.bench.items import BenchItem, Label

REALMISTAKE_PASSWORD = b"open-realmistake"  # published by the authors in their README
REALMISTAKE_ZIP = "realmistake/data.zip"
REALMISTAKE_TASKS = ("math_word_problem_generation", "finegrained_fact_verification",
                     "answerability_classification")
REALMISTAKE_MODELS = ("gpt-4-0613", "Llama-2-70b-chat-hf")


def _literal(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def read_encrypted_zip_member(path: Path, member: str, password: bytes) -> bytes:
    """One member of a ZipCrypto-encrypted zip, decrypted in memory (stdlib `zipfile`).

    AES-encrypted members (compression method 99) are not supported by the standard library:
    they raise DatasetError naming the `pyzipper` package.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(member)
            if info.compress_type == 99:
                raise DatasetError(f"{path}: {member} is AES-encrypted; install `pyzipper`")
            return zf.read(info, pwd=password)
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError) as exc:
        raise DatasetError(f"cannot read {member} from {path}: {exc}") from exc


@register("realmistake", description="ReaLMistake: 900 single responses, human error labels",
          marker=REALMISTAKE_ZIP, expected=900, license="CC BY-SA 4.0", shipped=False,
          kind="binary")
def load_realmistake(root: Path) -> list[BenchItem]:
    """900 single-response items; label `error=True` when the human label is "error"."""
    path = root / REALMISTAKE_ZIP
    items: list[BenchItem] = []
    for task in REALMISTAKE_TASKS:
        for model in REALMISTAKE_MODELS:
            member = f"data/{task}/{model}.jsonl"
            raw = read_encrypted_zip_member(path, member, REALMISTAKE_PASSWORD)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path}:{member} is not UTF-8: {exc}") from exc
            # Item ids count "\n"-separated lines from 0, blank lines included, as they always
            # have (str.splitlines would also split at U+2028 inside a JSON string).
            for n, line in enumerate(text.split("\n")):
                if not line.strip():
                    continue
                where = f"{path.name}:{member} line {n + 1}"
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise DatasetError(f"{where} is not JSON: {exc}") from exc
                with row_context(where):
                    if not isinstance(row, dict):
                        raise DatasetError(f"{where}: expected an object")
                    meta = _literal(row.get("metadata"))
                    source_id = meta.get("id") if isinstance(meta, dict) else None
                    label = row["error_label"]
                    if label not in ("error", "no_error"):
                        raise DatasetError(f"ReaLMistake {task}/{model} line {n}: label {label!r}")
                    cats = _literal(row.get("error_categories"))
                    items.append(BenchItem(
                        id=f"realmistake-{task}-{model}-{n}",
                        query=row["input"],
                        responses=[row["llm_response"]],
                        label=Label.binary(error=label == "error"),
                        subset=f"{task}/{model}",
                        # The human explanation is left out: results must not carry dataset text.
                        metadata={"task": task, "response_model": model, "source_id": source_id,
                                  "error_categories": cats if isinstance(cats, list) else []},
                    ))
    return items
