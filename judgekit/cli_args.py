"""The arguments the three command lines share (`judgekit judge`, `judgekit bench run`,
`judgekit train ...`), defined once: names, help, and the checks that turn a bad value into one
line on stderr and exit code 2 (never a traceback).

Each check is an argparse `type` converter, so argparse reports it as
`prog: error: argument --temperature: ...`. `add_common_args` adds the judging options to a
parser, `judge_options` maps the parsed values onto `Judge(...)` keywords, and the train CLI,
whose flags are generated from its configs, borrows the converter of every field whose name is
a common argument (`converter_for`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from judgekit.backends.flavours import FLAVOURS

EXIT_USAGE = 2
VOTING_CHOICES = ("sum", "mean", "majority")
AGGREGATE_CHOICES = ("overall", "weighted")
RUBRIC_MODE_CHOICES = ("fixed", "seed")


class CLIError(Exception):
    """A user error of `judgekit judge` or `judgekit improve`: printed as one line, exit
    code 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {' '.join(message.split())}\n")


# --------------------------------------------------------------------------------------------
# Converters (argparse `type=`): each raises ArgumentTypeError with a one-line reason
# --------------------------------------------------------------------------------------------
def _temperature_range() -> tuple[float, float]:
    """The temperature bounds GenerationConfig enforces (read from it, so they cannot drift)."""
    from judgekit.config import GenerationConfig

    low, high = 0.0, 2.0
    for meta in GenerationConfig.model_fields["temperature"].metadata:
        low = float(getattr(meta, "ge", low))
        high = float(getattr(meta, "le", high))
    return low, high


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least {low}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer of at least 0."""
    return _int_at_least(text, 0)


def temperature(text: str) -> float:
    """A sampling temperature within GenerationConfig's range (0 to 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    low, high = _temperature_range()
    if not low <= value <= high:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: the temperature must be "
                                         f"between {low:g} and {high:g}")
    return value


def seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def http_url(text: str) -> str:
    """A server's http(s) URL (`--base-url`)."""
    from judgekit.redact import is_http_url, safe_url

    if not is_http_url(text):
        raise argparse.ArgumentTypeError(f"{safe_url(text)!r} is not an http(s) URL (e.g. "
                                         "http://localhost:8000/v1)")
    return text


def read_text_file(path: Path) -> str:
    """A file's text as UTF-8; ArgumentTypeError (one line) when missing, unreadable or not
    UTF-8."""
    if not path.exists():
        raise argparse.ArgumentTypeError(f"file not found: {path}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a directory, not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "convert it, e.g. with iconv -t UTF-8") from None


def text_arg(value: str) -> str:
    """A text value; `@path` reads the text from a UTF-8 file, so long texts need no quoting."""
    if value.startswith("@"):
        return read_text_file(Path(value[1:]))
    return value


def utf8_file(value: str) -> Path:
    """A path to an existing, readable UTF-8 text file (checked now, read later)."""
    path = Path(value).expanduser()
    read_text_file(path)
    return path


def rubric_file(value: str) -> Any:
    """A rubric file (JSON or YAML list of criteria), read and checked now (a `Rubric`)."""
    from judgekit.errors import RubricError
    from judgekit.rubric import load_rubric

    path = Path(value).expanduser()
    read_text_file(path)  # missing, a directory, not UTF-8: the shared one-line messages
    try:
        return load_rubric(path)
    except RubricError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def data_dir(value: str) -> Path:
    """An existing, readable directory of benchmark files."""
    from judgekit.bench.datasets import DatasetError, check_data_dir

    try:
        return check_data_dir(Path(value).expanduser())
    except DatasetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# The common judging arguments
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommonArg:
    """One shared argument: its flags and the keywords for `add_argument`."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return str(self.kwargs.get("dest") or self.flags[0].removeprefix("--").replace("-", "_"))


COMMON_ARGS: dict[str, CommonArg] = {a.dest: a for a in (
    CommonArg(("--model",), {"help": "embedded (default), hf:<dir>, gguf:<file>, "
                                     "openai:<model>, anthropic:<model>"}),
    CommonArg(("--base-url",), {"type": http_url, "metavar": "URL",
                                 "help": "OpenAI/Anthropic-compatible server URL for --model"}),
    CommonArg(("--server-flavour",), {
        "choices": FLAVOURS, "default": None,
        "help": "how an openai: --model's server takes a JSON schema (default: openai for "
                "OpenAI's API, auto-detected for a --base-url)"}),
    CommonArg(("--no-structured",), {
        "dest": "structured", "action": "store_false", "default": None,
        "help": "free text everywhere, even where the backend can enforce a JSON schema or "
                "grammar"}),
    CommonArg(("--samples", "-k"), {"type": positive_int, "default": 1,
                                    "help": "judgements sampled and voted per item (k, >= 1)"}),
    CommonArg(("--meta",), {"action": "store_true", "help": "meta-guided voting"}),
    CommonArg(("--meta-model",), {"help": "model spec of the meta judge (default: the judge's "
                                          "model); classifier:<dir> for a sequence-"
                                          "classification meta RM"}),
    CommonArg(("--k-meta",), {"type": positive_int, "help": "samples kept by the meta judge "
                                                            "(>= 1; default k/2); needs --meta"}),
    CommonArg(("--voting",), {"choices": VOTING_CHOICES, "default": "sum",
                              "help": "how samples vote (default sum)"}),
    CommonArg(("--aggregate",), {"choices": AGGREGATE_CHOICES, "default": None,
                                 "help": "a response's score: the final score the judge wrote "
                                         "(overall, the default) or the weighted sum of its "
                                         "principle scores (weighted)"}),
    CommonArg(("--rubric",), {"type": rubric_file, "metavar": "FILE",
                              "help": "your own criteria: a JSON or YAML list of {name, "
                                      "description, weight} (see --rubric-mode)"}),
    CommonArg(("--rubric-mode",), {"choices": RUBRIC_MODE_CHOICES, "default": None,
                                   "help": "fixed: judge with exactly the rubric's criteria and "
                                           "weights (the default); seed: the judge starts from "
                                           "them and may add its own; needs --rubric"}),
    CommonArg(("--max-tokens",), {"type": positive_int,
                                  "help": "generation limit per judgement (>= 1)"}),
    CommonArg(("--temperature",), {"type": temperature,
                                   "help": "sampling temperature, 0 to 2 (default: 0 for one "
                                           "sample, 0.5 for several)"}),
    CommonArg(("--seed",), {"type": int, "default": 0, "help": "seed for permutations and "
                                                               "sampling (default 0)"}),
    CommonArg(("--concurrency",), {"type": positive_int, "default": 4,
                                   "help": "requests (items) in flight at once (default 4)"}),
    CommonArg(("--timeout",), {"type": seconds, "metavar": "SECONDS",
                               "help": "seconds per request attempt to an openai:/anthropic: "
                                       "model (default 60)"}),
    CommonArg(("--max-retries",), {"type": non_negative_int, "metavar": "N",
                                   "help": "retries of a failed request to an openai:/anthropic: "
                                           "model (default 6; a timed-out one is retried once "
                                           "at most)"}),
)}

REMOTE_PREFIXES = ("openai:", "anthropic:")


REFERENCE_ARG = CommonArg(("--reference",), {
    "type": text_arg, "help": "a reference answer to the query (or @file, UTF-8), shown to the "
                              "judge (and a prompt-based meta judge) as a correct answer"})
"""`judgekit judge` only: benchmark items carry their own references (`--reference-field`)."""


def add_reference_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(*REFERENCE_ARG.flags, dest=REFERENCE_ARG.dest, **REFERENCE_ARG.kwargs)


def add_common_args(parser: argparse.ArgumentParser, names: Iterable[str] | None = None,
                    **defaults: Any) -> None:
    """Add the common arguments (all, or `names`) to `parser`; keyword arguments override
    defaults, e.g. `add_common_args(p, max_tokens=512)`."""
    for name in names if names is not None else COMMON_ARGS:
        arg = COMMON_ARGS[name]
        kwargs = {k: v for k, v in arg.kwargs.items() if k != "dest"}
        if name in defaults:
            kwargs["default"] = defaults[name]
        parser.add_argument(*arg.flags, dest=name, **kwargs)


def check_common(args: argparse.Namespace) -> str | None:
    """A usage problem across common arguments (one line), or None."""
    if getattr(args, "k_meta", None) is not None and not getattr(args, "meta", False):
        return "--k-meta needs --meta"
    if getattr(args, "rubric_mode", None) is not None and getattr(args, "rubric", None) is None:
        return "--rubric-mode needs --rubric"
    # `improve` names its models with --judge (and --model as their default)
    models = [getattr(args, "model", None) or "", *(getattr(args, "judge", None) or [])]
    if getattr(args, "server_flavour", None) is not None and not any(
            m.startswith("openai:") for m in models):
        return "--server-flavour needs an openai: --model"
    for flag in ("timeout", "max_retries"):
        if getattr(args, flag, None) is not None and not any(
                m.startswith(REMOTE_PREFIXES) for m in models):
            return f"--{flag.replace('_', '-')} applies to openai: and anthropic: models only"
    return None


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keywords for the backend (`base_url`, `server_flavour`, `max_retries`), each only when
    given."""
    out: dict[str, Any] = {}
    if getattr(args, "base_url", None):
        out["base_url"] = args.base_url
    if getattr(args, "server_flavour", None):
        out["server_flavour"] = args.server_flavour
    if getattr(args, "max_retries", None) is not None:
        out["max_retries"] = args.max_retries
    return out


def judge_options(args: argparse.Namespace) -> dict[str, Any]:
    """`Judge(...)` keywords from the parsed common arguments (model excluded). `aggregate` is
    passed only when given, so the Judge's own default applies otherwise."""
    out: dict[str, Any] = {"max_tokens": args.max_tokens, "temperature": args.temperature,
                           "seed": args.seed, "voting": args.voting,
                           "concurrency": args.concurrency, **backend_options(args)}
    if getattr(args, "meta", False):
        out["meta"] = args.meta_model or True
        out["k_meta"] = args.k_meta
    if getattr(args, "aggregate", None) is not None:
        out["aggregate"] = args.aggregate
    if getattr(args, "structured", None) is False:
        out["structured"] = False
    if getattr(args, "timeout", None) is not None:
        out["timeout"] = args.timeout
    out.update(rubric_options(args))
    return out


def rubric_options(args: argparse.Namespace) -> dict[str, Any]:
    """`Judge(...)` keywords of `--rubric` and `--rubric-mode` (none when no rubric), as plain
    JSON values so they also travel in a `JudgeSpec` (Ray actors, batch run directories)."""
    rubric = getattr(args, "rubric", None)
    if rubric is None:
        return {}
    return {"principles": [p.model_dump() for p in rubric.principles],
            "principles_mode": getattr(args, "rubric_mode", None) or rubric.mode.value}


def converter_for(name: str) -> Callable[[str], Any] | None:
    """The shared converter for a flag named `name` (a common argument, `data_dir`,
    `items_file` or `config`), or None: the train CLI uses it for its generated flags."""
    special: dict[str, Callable[[str], Any]] = {"data_dir": data_dir, "items_file": utf8_file,
                                                "config": utf8_file}
    if name in special:
        return special[name]
    arg = COMMON_ARGS.get(name)
    conv = arg.kwargs.get("type") if arg is not None else None
    return conv if callable(conv) else None
