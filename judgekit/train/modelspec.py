"""Model specs to plain directories, and the device/precision choice for training.

TRL trainers need a plain Hugging Face directory (config + safetensors + tokenizer); the judge's
`embedded` model and `gguf:` files are materialised into the judgekit cache first. Nothing is
downloaded: a spec that is not a local directory is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgekit.errors import ModelSpecError


def resolve_model_dir(spec: str) -> Path:
    """`embedded`, `hf:<dir>`, a plain directory, or `gguf:<file>` -> a local model directory."""
    spec = spec.strip()
    if spec in ("", "embedded"):
        from judgekit.embedded import embedded_model_dir

        return embedded_model_dir()
    prefix, sep, rest = spec.partition(":")
    if sep and prefix == "gguf":
        from judgekit.embedded import cache_home, materialize_gguf

        gguf = Path(rest).expanduser()
        if not gguf.is_file():
            raise ModelSpecError(f"GGUF file not found: {rest}")
        return materialize_gguf(gguf, cache_home() / "models" / gguf.stem)
    path = Path(rest if sep and prefix == "hf" else spec).expanduser()
    if sep and prefix not in ("hf",) and not path.exists():
        raise ModelSpecError(f"training needs a local model (embedded, hf:<dir>, gguf:<file> or a "
                             f"directory), not {spec!r}")
    if not (path / "config.json").is_file():
        raise ModelSpecError(f"{path} is not a Hugging Face model directory (no config.json)")
    return path


def judge_spec(spec: str) -> str:
    """A spec the Judge accepts for the same model (plain directories become `hf:<dir>`)."""
    spec = spec.strip()
    if spec in ("", "embedded"):
        return "embedded"
    prefix, sep, _ = spec.partition(":")
    if sep and prefix.isidentifier() and not Path(spec).exists():
        return spec
    return f"hf:{spec}"


@dataclass(frozen=True)
class Placement:
    """Where and in what precision to train: bf16 on CUDA (fp16 where bf16 is unsupported),
    fp32 on CPU (CPU half precision is slow and numerically fragile)."""

    device: str
    dtype: str  # "bfloat16" | "float16" | "float32"

    @property
    def use_cpu(self) -> bool:
        return self.device == "cpu"

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def trainer_args(self) -> dict[str, Any]:
        """The precision/device flags of transformers' TrainingArguments."""
        return {"use_cpu": self.use_cpu, "bf16": self.dtype == "bfloat16",
                "fp16": self.dtype == "float16"}


def pick_placement(device: str = "auto", dtype: str = "auto") -> Placement:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelSpecError("device cuda requested but CUDA is not available")
    if dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "float32"
    if dtype not in ("bfloat16", "float16", "float32"):
        raise ModelSpecError(f"unknown dtype {dtype!r} (auto, bfloat16, float16, float32)")
    return Placement(device=device, dtype=dtype)
