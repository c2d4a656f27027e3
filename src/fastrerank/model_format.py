"""The contract of a converted fastrerank model folder.

A converted folder holds CTranslate2's encoder (``model.bin``, ``config.json``,
``shared_vocabulary.json``), the classification head in float32 (``head.safetensors``), the
tokenizer (``tokenizer.json``) and ``fastrerank.json``. ``fastrerank.json`` is written last and is
the commit marker: a folder without it is not a model. It records the format version, where the
model came from, the facts the engine needs (positions, special-token ids, embedding rows) and
the size of every other file, so that a truncated or swapped file is caught before it is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorruptModelError, ModelNotFoundError, UnsupportedModelError

__all__ = [
    "FORMAT_VERSION",
    "HEAD_FILE",
    "METADATA_FILE",
    "TOKENIZER_FILE",
    "ModelMetadata",
    "is_converted_folder",
    "read_metadata",
    "verify_folder",
]

FORMAT_VERSION = 1
METADATA_FILE = "fastrerank.json"
HEAD_FILE = "head.safetensors"
TOKENIZER_FILE = "tokenizer.json"
ENCODER_FILE = "model.bin"
RECOMMENDED_MAX_LENGTH = 512  # what BAAI and BCE score with, for every supported model


@dataclass(frozen=True)
class ModelMetadata:
    """What ``fastrerank.json`` says about a converted model."""

    format_version: int
    source_model: str
    source_revision: str | None
    quantization: str
    max_positions: int  # usable positions, XLM-R's two reserved rows excluded
    recommended_max_length: int
    embedding_rows: int
    hidden_size: int
    num_layers: int
    special_tokens: dict[str, int]
    ctranslate2_version: str
    files: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise as the content of ``fastrerank.json``."""
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


def is_converted_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like a converted fastrerank model (it has ``fastrerank.json``)."""
    return (folder / METADATA_FILE).is_file()


def read_metadata(folder: Path) -> ModelMetadata:
    """Read and check ``fastrerank.json``.

    Raises:
        ModelNotFoundError: the folder or ``fastrerank.json`` is missing.
        UnsupportedModelError: the format version is newer than this fastrerank reads.
        CorruptModelError: the file is not valid JSON or lacks keys.
    """
    path = folder / METADATA_FILE
    if not folder.is_dir():
        raise ModelNotFoundError(f"model folder {str(folder)!r} does not exist")
    if not path.is_file():
        raise ModelNotFoundError(
            f"{METADATA_FILE} is missing in {str(folder)!r}: not a converted fastrerank model "
            "(convert it with fastrerank.convert, or pass the Hugging Face folder itself)"
        )
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptModelError(f"{path}: {err}") from err
    version = raw.get("format_version")
    if not isinstance(version, int):
        raise CorruptModelError(f"{path}: format_version is missing")
    if version > FORMAT_VERSION:
        raise UnsupportedModelError(
            f"{path}: model format v{version}; this fastrerank reads <= v{FORMAT_VERSION} (upgrade fastrerank)"
        )
    try:
        return ModelMetadata(**raw)
    except TypeError as err:
        raise CorruptModelError(f"{path}: {err}; re-convert with force=True") from err


def verify_folder(folder: Path) -> ModelMetadata:
    """Read the metadata and check that every recorded file is present with its recorded size."""
    metadata = read_metadata(folder)
    for name, size in metadata.files.items():
        path = folder / name
        if not path.is_file():
            raise CorruptModelError(f"{name} is missing in {str(folder)!r}; re-convert with force=True")
        found = path.stat().st_size
        if found != size:
            raise CorruptModelError(
                f"{name} in {str(folder)!r} has {found} bytes, expected {size}; re-convert with force=True"
            )
    return metadata
