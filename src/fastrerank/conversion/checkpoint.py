"""Read and validate a Hugging Face ``XLMRobertaForSequenceClassification`` folder, without torch.

The weights are read from safetensors with numpy. Pickle checkpoints (``pytorch_model.bin``)
can run arbitrary code when unpickled, so they are refused unless the caller opts in, and are
then read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ConversionError,
    CorruptModelError,
    MissingDependencyError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedModelError,
)

__all__ = ["Checkpoint", "XLMRConfig", "open_checkpoint", "read_config"]

logger = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURE = "XLMRobertaForSequenceClassification"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILE = "pytorch_model.bin"
_MIN_TORCH = (2, 10)


@dataclass(frozen=True)
class XLMRConfig:
    """The architecture facts fastrerank needs from ``config.json``."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    vocab_size: int
    layer_norm_eps: float
    hidden_act: str
    pad_token_id: int

    @property
    def max_positions(self) -> int:
        """Usable positions: XLM-R reserves ``pad_token_id + 1`` rows of its position table."""
        return self.max_position_embeddings - self.pad_token_id - 1


def read_config(folder: Path) -> XLMRConfig:
    """Read ``config.json`` and accept only a one-label XLM-R classifier with absolute positions.

    Raises:
        ModelNotFoundError: the folder or ``config.json`` is missing.
        CorruptModelError: ``config.json`` is not JSON or lacks a key.
        UnsupportedModelError: another architecture, several labels, or relative positions.
    """
    if not folder.is_dir():
        raise ModelNotFoundError(f"model folder {str(folder)!r} does not exist")
    path = folder / "config.json"
    if not path.is_file():
        raise ModelNotFoundError(f"config.json is missing in {str(folder)!r}")
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorruptModelError(f"config.json: invalid JSON at line {err.lineno}: {err.msg}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise CorruptModelError(f"config.json cannot be read: {err}") from err
    if not isinstance(raw, dict):
        raise CorruptModelError("config.json: expected a JSON object")
    architectures = raw.get("architectures")
    model_type = raw.get("model_type")
    if architectures != [SUPPORTED_ARCHITECTURE] or model_type not in ("xlm-roberta", "roberta"):
        raise UnsupportedModelError(
            f"unsupported model: architectures={architectures!r}, model_type={model_type!r}; "
            f"fastrerank converts {SUPPORTED_ARCHITECTURE} (model_type 'xlm-roberta') rerankers"
        )
    labels = raw.get("num_labels", len(raw.get("id2label") or {"0": None}))
    if labels != 1:
        raise UnsupportedModelError(f"unsupported model: {labels} labels; a reranker has exactly 1 (num_labels=1)")
    position_type = raw.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise UnsupportedModelError(
            f"unsupported model: position_embedding_type={position_type!r}; only 'absolute' is supported"
        )
    try:
        return XLMRConfig(
            hidden_size=int(raw["hidden_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            max_position_embeddings=int(raw["max_position_embeddings"]),
            vocab_size=int(raw["vocab_size"]),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-5)),
            hidden_act=str(raw.get("hidden_act", "gelu")),
            pad_token_id=int(raw.get("pad_token_id", 1)),
        )
    except KeyError as err:
        raise CorruptModelError(f"config.json: missing key {err.args[0]!r}") from err
    except (TypeError, ValueError) as err:
        raise CorruptModelError(f"config.json: {err}") from err


@dataclass(frozen=True)
class Checkpoint:
    """A validated reranker folder: its config, tokenizer file and tensor files."""

    folder: Path
    config: XLMRConfig
    tokenizer_file: Path
    tensor_files: tuple[Path, ...]
    pickled: bool

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(name, float32 array)`` for every tensor of the checkpoint, one at a time."""
        if self.pickled:
            yield from _pickle_tensors(self.tensor_files[0])
            return
        from safetensors import SafetensorError, safe_open

        for path in self.tensor_files:
            try:
                with safe_open(str(path), framework="np") as handle:
                    for name in handle.keys():
                        yield name, _as_float32(name, handle.get_tensor(name))
            except (SafetensorError, OSError, ValueError, TypeError) as err:
                raise ConversionError(f"{path.name}: cannot read weights ({err})") from err

    def total_bytes(self) -> int:
        """Size of the weight files, for progress reporting."""
        return sum(path.stat().st_size for path in self.tensor_files)


def open_checkpoint(folder: Path, *, allow_pickle: bool = False) -> Checkpoint:
    """Validate ``folder`` as a reranker checkpoint; reads ``config.json`` but no weights yet.

    Raises:
        ModelNotFoundError: the folder, ``config.json``, ``tokenizer.json`` or the weights are missing.
        ModelLoadError: only a pickle checkpoint is present and ``allow_pickle`` is false.
    """
    config = read_config(folder)
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelNotFoundError(
            f"tokenizer.json is missing in {str(folder)!r} (fastrerank needs the fast tokenizer file)"
        )
    index = folder / SAFETENSORS_INDEX
    if (folder / SAFETENSORS_FILE).is_file():
        return Checkpoint(folder, config, tokenizer_file, (folder / SAFETENSORS_FILE,), pickled=False)
    if index.is_file():
        return Checkpoint(folder, config, tokenizer_file, _shards(index), pickled=False)
    if (folder / PICKLE_FILE).is_file():
        if not allow_pickle:
            raise ModelLoadError(
                f"{folder / PICKLE_FILE} is a pickle checkpoint, which can run code when loaded; "
                "pass allow_pickle=True (it is then read with torch.load(weights_only=True)) "
                "or convert it to safetensors"
            )
        return Checkpoint(folder, config, tokenizer_file, (folder / PICKLE_FILE,), pickled=True)
    raise ModelNotFoundError(f"no weights in {str(folder)!r}: expected {SAFETENSORS_FILE}")


def _shards(index: Path) -> tuple[Path, ...]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CorruptModelError(f"{index.name}: cannot read the shard index ({err})") from err
    shards = tuple(index.parent / name for name in names)
    for shard in shards:
        if not shard.is_file():
            raise ModelNotFoundError(f"{shard.name} (listed in {index.name}) is missing in {str(index.parent)!r}")
    return shards


def _as_float32(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype not in (np.float32, np.float16, np.float64):
        raise ConversionError(f"tensor {name!r} has dtype {array.dtype}; expected float32 or float16")
    return np.ascontiguousarray(array, dtype=np.float32)


def _pickle_tensors(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    try:
        import torch
    except ImportError as err:
        raise MissingDependencyError("reading pytorch_model.bin needs torch: pip install 'fastrerank[pickle]'") from err
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if version < _MIN_TORCH:
        raise MissingDependencyError(
            f"reading pickle checkpoints safely needs torch >= {'.'.join(map(str, _MIN_TORCH))}, found {torch.__version__}"
        )
    try:
        # weights_only=True refuses arbitrary objects; never fall back to a full unpickle.
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, ... for hostile or broken files
        raise ConversionError(f"{path.name}: refused or unreadable with torch.load(weights_only=True): {err}") from err
    if not isinstance(state, dict):
        raise ConversionError(f"{path.name}: expected a state dict, found {type(state).__name__}")
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise ConversionError(f"{path.name}: entry {name!r} is not a tensor")
        yield name, _as_float32(name, tensor.detach().to(torch.float32).numpy())
