"""Jinja prompt templates, shipped in the wheel as `judgekit/templates` (the repo's `prompts/`).

User text (query, responses, judgements) is passed to templates as data: Jinja never evaluates the
content of a variable, so `{{ 7*7 }}` or `{% raw %}` inside a response appears verbatim.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel, ConfigDict

from judgekit.errors import TemplateError
from judgekit.fencing import Fence
from judgekit.schema import Message

GRM_TEMPLATE = "grm/default.jinja"
GRM_EXAMPLES = "grm/examples.json"
META_TEMPLATE = "meta/default.jinja"
PAIRWISE_BASELINE_TEMPLATE = "baseline/pairwise.jinja"
REASK_TEMPLATE = "reask/default.jinja"
GRM_EXAMPLES_PARTIAL = "_partials/grm_examples.jinja"


class FewShotExample(BaseModel):
    """A worked example shown to the judge: a query, its responses, and the ideal judge output."""

    model_config = ConfigDict(frozen=True)  # a format renders its examples once (GRMFormat)

    query: str
    responses: list[str]
    output: str


def builtin_prompt_dir() -> Path:
    """`judgekit/templates` inside an installed wheel, or the repo's `prompts/` in a checkout."""
    packaged = resources.files("judgekit") / "templates"
    if packaged.is_dir():
        return Path(str(packaged))
    repo = Path(__file__).resolve().parent.parent / "prompts"
    if repo.is_dir():
        return repo
    raise TemplateError("judgekit's prompt templates are missing from this installation")


@lru_cache(maxsize=16)
def _environment(template_dir: str | None) -> jinja2.Environment:
    search = [template_dir] if template_dir else []
    search.append(str(builtin_prompt_dir()))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        # A template is read once per process, not checked on disk at every prompt (two stats
        # per prompt otherwise): a run's prompts all come from the templates its settings hashed
        # at the start (`template_digest`), even if a file is edited while it runs.
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain-text prompts; escaping would alter the user's text
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["fence"] = Fence(env)  # the fences of user text (`judgekit.fencing`)
    return env


def render(template: str, template_dir: str | Path | None = None, **variables: Any) -> str:
    """Render one template; a user's `template_dir` shadows the built-in files of the same name."""
    return render_piece(template, template_dir, **variables).strip() + "\n"


def render_piece(template: str, template_dir: str | Path | None = None,
                 **variables: Any) -> str:
    """Render a template exactly as it comes out (no trimming), for text that another template
    splices in as it is (`GRMFormat`'s worked examples)."""
    env = _environment(str(template_dir) if template_dir else None)
    try:
        loaded = env.get_template(template)
        # What `Template.render` does, less its merge of the globals into the variables
        # through a ChainMap (a third of a prompt's rendering time): our templates have no
        # globals of their own, so the environment's plain dict is merged here, and the
        # context gets the variables as they are (`shared=True`, Jinja's documented way).
        context = loaded.new_context({**env.globals, **variables}, shared=True)
        try:
            return env.concat(loaded.root_render_func(context))
        except Exception:
            env.handle_exception()  # raises the error with the template's own traceback
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"prompt template not found: {template}") from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(f"prompt template {template} failed to render: {exc}") from exc


def template_source(template: str, template_dir: str | Path | None = None) -> str:
    """The source text of a template as it would be loaded (for fingerprints of a run)."""
    env = _environment(str(template_dir) if template_dir else None)
    loader = env.loader
    assert loader is not None
    try:
        source, _, _ = loader.get_source(env, template)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"prompt template not found: {template}") from exc
    return source


def load_examples(path: str | Path | None = None,
                  template_dir: str | Path | None = None) -> list[FewShotExample]:
    """Few-shot examples kept as data (JSON list); the built-in file unless a path is given."""
    if path is None:
        base = Path(template_dir) if template_dir else builtin_prompt_dir()
        path = base / GRM_EXAMPLES
        if not path.is_file():
            path = builtin_prompt_dir() / GRM_EXAMPLES
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return [FewShotExample.model_validate(x) for x in data]
    except (OSError, ValueError) as exc:
        raise TemplateError(f"cannot read few-shot examples from {path}: {exc}") from exc


def resolve_examples(examples: Sequence[FewShotExample] | str | Path | bool,
                     template_dir: str | Path | None = None) -> list[FewShotExample]:
    """True: the built-in examples (or `template_dir`'s); False: none; a path: that JSON file;
    a list: as given."""
    if examples is True:
        return load_examples(template_dir=template_dir)
    if examples is False:
        return []
    if isinstance(examples, str | Path):
        return load_examples(examples)
    return list(examples)


def as_messages(query: str | Sequence[Message]) -> list[Message]:
    """A query string becomes one user turn; a conversation passes through (last turn = query)."""
    if isinstance(query, str):
        return [{"role": "user", "content": query}]
    msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in query]
    if not msgs:
        raise ValueError("the conversation is empty")
    return msgs


def meta_messages(query: str | Sequence[Message], responses: Sequence[str], judgement: str, *,
                  tag: str, mode: str = "yes_no", template: str = META_TEMPLATE,
                  template_dir: str | Path | None = None,
                  reference: str | None = None) -> list[Message]:
    """The meta judge's prompt about one sampled judgement (responses in that sample's order),
    with the item's reference answer when it has one."""
    text = render(template, template_dir, messages=as_messages(query), responses=list(responses),
                  judgement=judgement, mode=mode, tag=tag, reference=reference)
    return [{"role": "user", "content": text}]
