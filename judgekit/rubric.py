"""User rubrics: evaluation criteria the caller gives the judge, instead of or before its own.

A rubric is a list of principles (name, description, weight) and a mode:

* ``fixed``: the prompt lists exactly these criteria with these weights and asks the judge to
  analyse and score every response on each of them, in order. The judge writes no criteria of
  its own (any it writes are ignored): the rubric is what its 'Criterion scores' lines are read
  against, and `aggregate="weighted"` weighs them with the rubric's weights.
* ``seed``: the criteria are listed as starting criteria. The judge begins its specific criteria
  with them (names kept, weights its own for the query) and may add its own; what it writes is
  parsed as without a rubric, so the paper's self-principled judging stays intact.

A rubric is the same for every item of a run, so it sits in the static prefix of the prompt
(cached by servers) and never changes the item part.

Names are single lines of at most 80 characters without the characters that delimit a criterion
line (``:()[]*``): a criterion is written ``1. Name (Weight: 40%): what it checks`` and the
parser reads it back from that form. Weights are any non-negative numbers (40/30/30 or
0.5/0.5; equal when left out) and are normalised to sum to 1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from os import PathLike
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from judgekit.errors import RubricError
from judgekit.schema import Principle

NAME_MAX_CHARS = 80
_NAME_FORBIDDEN = set(":()[]*\n\r")


class PrinciplesMode(StrEnum):
    """How a user rubric meets the judge's own principles."""

    FIXED = "fixed"  # exactly these criteria and weights; the judge writes none of its own
    SEED = "seed"  # starting criteria; the judge keeps them and may add its own


PrincipleSpec = Principle | Mapping[str, Any] | Sequence[Any] | str
"""One criterion as a user may give it: a Principle, a dict with name/description/weight, a
tuple (name, description[, weight]) or a bare name."""


def as_mode(value: PrinciplesMode | str) -> PrinciplesMode:
    """A principles mode from its name; ValueError naming the two modes."""
    try:
        return PrinciplesMode(value)
    except ValueError:
        raise ValueError(f"the principles mode must be 'fixed' or 'seed', not {value!r}") from None


def as_principle(spec: PrincipleSpec) -> Principle:
    """One criterion in any accepted form as a Principle; ValueError names what is wrong."""
    if isinstance(spec, Principle):
        return spec
    if isinstance(spec, str):
        return Principle(name=spec)
    if isinstance(spec, Mapping):
        return Principle.model_validate(dict(spec))
    if isinstance(spec, Sequence) and 1 <= len(spec) <= 3:
        keys = ("name", "description", "weight")
        return Principle.model_validate(dict(zip(keys, spec, strict=False)))
    raise ValueError(f"a criterion is a Principle, a dict, a (name, description, weight) tuple "
                     f"or a name, not {spec!r}")


def _clean_name(name: str) -> str:
    text = " ".join(name.split())
    if not 2 <= len(text) <= NAME_MAX_CHARS:
        raise ValueError(f"criterion name {name!r} must have 2 to {NAME_MAX_CHARS} characters")
    bad = sorted(set(text) & _NAME_FORBIDDEN)
    if bad:
        raise ValueError(f"criterion name {name!r} contains {''.join(bad)!r}; names may not "
                         "contain any of : ( ) [ ] * (they delimit a criterion line)")
    return text


class Rubric(BaseModel):
    """A user's criteria and how they are used. Weights are normalised to sum to 1 and names
    and descriptions are put on one line when the rubric is built."""

    principles: list[Principle] = Field(min_length=1)
    mode: PrinciplesMode = PrinciplesMode.FIXED

    @model_validator(mode="after")
    def _normalise(self) -> Rubric:
        names = [_clean_name(p.name) for p in self.principles]
        seen: set[str] = set()
        for name in names:
            if name.lower() in seen:
                raise ValueError(f"criterion {name!r} is listed twice")
            seen.add(name.lower())
        total = sum(p.weight for p in self.principles)
        if total <= 0:
            raise ValueError("the criteria's weights add up to 0")
        self.principles = [
            Principle(name=name, description=" ".join(p.description.split()),
                      weight=p.weight / total)
            for name, p in zip(names, self.principles, strict=True)]
        return self

    @classmethod
    def of(cls, principles: Rubric | Sequence[PrincipleSpec],
           mode: PrinciplesMode | str | None = None) -> Rubric:
        """A Rubric from a Rubric (its mode unless `mode` is given) or a list of criteria in
        any accepted form (mode `fixed` unless given)."""
        if isinstance(principles, Rubric):
            return principles if mode is None else principles.model_copy(
                update={"mode": as_mode(mode)})
        if isinstance(principles, str | Mapping):
            raise ValueError("principles must be a list of criteria")
        return cls(principles=[as_principle(p) for p in principles],
                   mode=as_mode(mode or PrinciplesMode.FIXED))

    @property
    def fixed(self) -> bool:
        return self.mode is PrinciplesMode.FIXED

    def names(self) -> list[str]:
        return [p.name for p in self.principles]

    def template_rows(self) -> list[dict[str, str]]:
        """What the prompt template lists: name, description and the weight as a percentage
        (at most one decimal, so 1/3 reads 33.3)."""
        return [{"name": p.name, "description": p.description,
                 "percent": f"{round(100 * p.weight, 1):g}"} for p in self.principles]


RubricSpec = Rubric | Sequence[PrincipleSpec]
"""What `principles=` accepts: a Rubric, or a list of criteria in any `PrincipleSpec` form."""


def load_rubric(path: str | PathLike[str], mode: PrinciplesMode | str | None = None) -> Rubric:
    """A rubric from a JSON or YAML file: a list of criteria (dicts with name, description,
    weight; [name, description, weight] lists; or names), or an object
    ``{"mode": "seed", "principles": [...]}``. `mode` overrides the file's (default fixed).
    Raises RubricError naming the file and what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RubricError(f"{p} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except OSError as exc:
        raise RubricError(f"cannot read rubric {p}: {exc.strerror or exc}") from exc
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:  # YAML is a superset of JSON, so .yaml, .yml and anything else read as YAML
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:
        raise RubricError(f"rubric {p} is not valid JSON: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError; yaml is imported lazily
        raise RubricError(f"rubric {p} is not valid YAML: {' '.join(str(exc).split())}") from exc
    file_mode = None
    if isinstance(data, Mapping):
        unknown = set(data) - {"mode", "principles"}
        if unknown or "principles" not in data:
            raise RubricError(f"rubric {p}: an object needs 'principles' (and optionally "
                              f"'mode'), got keys {sorted(map(str, data))}")
        file_mode, data = data.get("mode"), data["principles"]
    if not isinstance(data, list) or not data:
        raise RubricError(f"rubric {p}: expected a non-empty list of criteria")
    try:
        return Rubric.of(data, mode if mode is not None else file_mode)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise RubricError(f"rubric {p}: {where + ': ' if where else ''}{msg}") from exc
    except ValueError as exc:
        raise RubricError(f"rubric {p}: {exc}") from exc


def resolve_rubric(rubric: RubricSpec | str | PathLike[str] | None,
                   mode: PrinciplesMode | str | None = None) -> Rubric | None:
    """A rubric given as a Rubric, a list of criteria or a file path (JSON/YAML); None for
    none (then `mode` must be None too)."""
    if rubric is None:
        if mode is not None:
            raise ValueError("a rubric mode needs a rubric")
        return None
    if isinstance(rubric, str | PathLike):
        return load_rubric(rubric, mode)
    return Rubric.of(rubric, mode)


__all__ = ["PrincipleSpec", "PrinciplesMode", "Rubric", "RubricSpec", "as_principle",
           "load_rubric", "resolve_rubric"]
