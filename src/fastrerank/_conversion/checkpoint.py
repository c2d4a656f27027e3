"""Read and validate a Hugging Face reranker folder (XLM-R or BERT), without torch.

The weights are read from safetensors with numpy. Pickle checkpoints (``pytorch_model.bin``)
can run arbitrary code when unpickled, so they are refused unless the caller opts in, and are
then read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import (
    ConversionError,
    CorruptModelError,
    MissingDependencyError,
    ModelLoadError,
    ModelNotFoundError,
)
from .config import ModelConfig, read_config
from .families import family_of

__all__ = ["Checkpoint", "open_checkpoint"]

logger = logging.getLogger(__name__)

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILE = "pytorch_model.bin"
_MIN_TORCH = (2, 10)
_FLOAT_DTYPES = ("F32", "F16", "F64")  # what numpy reads and _as_float32 accepts


@dataclass(frozen=True)
class Checkpoint:
    """A validated reranker folder: its config, tokenizer file and tensor files."""

    folder: Path
    config: ModelConfig
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
                        if not _is_buffer(name):
                            yield name, _as_float32(name, handle.get_tensor(name))
            except (SafetensorError, OSError, ValueError, TypeError) as err:
                raise ConversionError(f"{path.name}: cannot read weights ({err})") from err

    def header_shapes(self) -> dict[str, tuple[int, ...]] | None:
        """``{name: shape}`` from the safetensors headers alone (no tensor data), or None for a pickle.

        Raises:
            ConversionError: a file is not valid safetensors, or a weight has a dtype numpy cannot read.
        """
        if self.pickled:
            return None  # a pickle's shapes are only known once it is unpickled
        from safetensors import SafetensorError, safe_open

        shapes: dict[str, tuple[int, ...]] = {}
        for path in self.tensor_files:
            try:
                with safe_open(str(path), framework="np") as handle:
                    for name in filter(lambda name: not _is_buffer(name), handle.keys()):
                        tensor = handle.get_slice(name)
                        dtype = tensor.get_dtype()
                        if dtype not in _FLOAT_DTYPES:  # the same rule as reading (_as_float32), told before reading
                            raise ConversionError(f"tensor {name!r} has dtype {dtype}; expected float32 or float16")
                        shapes[name] = tuple(tensor.get_shape())
            except (SafetensorError, OSError, ValueError, TypeError) as err:
                raise ConversionError(f"{path.name}: cannot read weights ({err})") from err
        return shapes

    def total_bytes(self) -> int:
        """Size of the weight files, for progress reporting."""
        return sum(path.stat().st_size for path in self.tensor_files)


def open_checkpoint(folder: Path, *, allow_pickle: bool = False) -> Checkpoint:
    """Validate ``folder`` as a reranker checkpoint: ``config.json`` and the weight headers, no weights yet.

    The tensor names and shapes of a safetensors checkpoint are checked against the config here
    (``check_layout`` of the config's family); a pickle checkpoint's only once it is read.

    Raises:
        ModelNotFoundError: the folder, ``config.json``, ``tokenizer.json`` or the weights are missing.
        CorruptModelError: a config value has the wrong type or range (the key is named).
        UnsupportedModelError: another architecture, several labels, relative positions, an unknown activation.
        ConversionError: the weight files are unreadable or disagree with the config.
        ModelLoadError: only a pickle checkpoint is present and ``allow_pickle`` is false.
    """
    checkpoint = _find_weights(folder, read_config(folder), allow_pickle)
    shapes = checkpoint.header_shapes()
    if shapes is not None:
        family_of(checkpoint.config).check_layout(shapes, checkpoint.config)
    return checkpoint


def _find_weights(folder: Path, config: ModelConfig, allow_pickle: bool) -> Checkpoint:
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


def _is_buffer(name: str) -> bool:
    # ``embeddings.position_ids`` (int64 0, 1, 2, ...) is a buffer older transformers saved with
    # the weights; no family uses it.
    return name.endswith("embeddings.position_ids")


def _as_float32(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype not in (np.float32, np.float16, np.float64):
        raise ConversionError(f"tensor {name!r} has dtype {array.dtype}; expected float32 or float16")
    out = np.ascontiguousarray(array, dtype=np.float32)
    # NaN or inf in a weight converts and then scores every document with finite nonsense. A float64
    # sum is non-finite exactly when an element is (finite float32 values cannot overflow it), and
    # needs no temporary as large as the tensor, unlike np.isfinite(out).all().
    if not math.isfinite(out.sum(dtype=np.float64)):
        raise ConversionError(f"tensor {name!r} contains NaN or infinite values; the checkpoint is damaged")
    return out


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
        if _is_buffer(name):
            continue
        if not isinstance(tensor, torch.Tensor):
            raise ConversionError(f"{path.name}: entry {name!r} is not a tensor")
        yield name, _as_float32(name, tensor.detach().to(torch.float32).numpy())
