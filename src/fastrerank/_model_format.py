"""The contract of a converted fastrerank model folder.

A converted folder holds CTranslate2's encoder (``model.bin``, ``config.json``,
``shared_vocabulary.json``), the classification head in float32 (``head.safetensors``), the
tokenizer (``tokenizer.json``) and ``fastrerank.json``. ``fastrerank.json`` is written last and is
the commit marker: a folder without it is not a model. It records the format version, where the
model came from, the facts the engine needs (positions, special-token ids, embedding rows, and
from format v3 the architecture and the pair template), and the size and (from format v2) the
sha256 of every other file. A v1 or v2 folder, which records no pair template, is XLM-R's.

Loading checks the sizes only (a truncated or swapped file); :func:`verify_checksums`
(``fastrerank.verify``, ``fastrerank verify FOLDER``) also checks every byte against the sha256,
which catches silent corruption such as a zeroed page. It is not done at every load because
hashing a large model costs most of what loading it does (``benchmarks/verify_cost.py`` measures
it; the figures are in the reliability documentation).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeGuard

from .errors import CorruptModelError, InvalidTypeError, ModelNotFoundError, UnsupportedModelError, describe_value

__all__ = [
    "FORMAT_VERSION",
    "XLMR_PAIR_TEMPLATE",
    "HEAD_FILE",
    "METADATA_FILE",
    "TOKENIZER_FILE",
    "ModelMetadata",
    "describe_files",
    "is_converted_folder",
    "read_metadata",
    "verify_checksums",
    "verify_folder",
]

# v2 added ``sha256``; v1 folders (without it) still load. v3 added ``architecture`` and
# ``pair_template`` (BERT rerankers); v1 and v2 folders are XLM-R's. Each bump makes an older
# fastrerank say "upgrade fastrerank" for a newer folder instead of calling the unknown key a
# corruption (or, worse, running a BERT folder as XLM-R).
FORMAT_VERSION = 3
FIRST_CHECKSUM_VERSION = 2
FIRST_TEMPLATE_VERSION = 3
METADATA_FILE = "fastrerank.json"
HEAD_FILE = "head.safetensors"
TOKENIZER_FILE = "tokenizer.json"
ENCODER_FILE = "model.bin"
RECOMMENDED_MAX_LENGTH = 512  # what BAAI, BCE and the ms-marco cross-encoders score with, for every supported model
XLMR_ARCHITECTURE = "XLMRobertaForSequenceClassification"
# How a pair becomes a row: before_query + query + between + window + after_window, the window
# and what follows it with token type window_token_type (0 and the rest 0 too: XLM-R has one
# token type). XLM-R's ``<s> q </s></s> w </s>``, what v1 and v2 folders hold.
XLMR_PAIR_TEMPLATE: dict[str, Any] = {"before_query": [0], "between": [2, 2], "after_window": [2], "window_token_type": 0}
_TEMPLATE_KEYS = ("before_query", "between", "after_window", "window_token_type")


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
    sha256: dict[str, str] = field(default_factory=dict)  # empty in v1 folders
    architecture: str = XLMR_ARCHITECTURE  # from v3; XLM-R's in v1 and v2 folders
    pair_template: dict[str, Any] = field(default_factory=lambda: dict(XLMR_PAIR_TEMPLATE))  # from v3

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
        CorruptModelError: the file is not valid JSON, lacks keys, has unknown ones, or a value of
            the wrong type or range (each message names the key).
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
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptModelError(f"{path}: {err}") from err
    if not isinstance(raw, dict):
        raise CorruptModelError(f"{path}: must hold a JSON object, got {type(raw).__name__}; re-convert with force=True")
    version = raw.get("format_version")
    if not _is_int(version, 1):
        raise CorruptModelError(
            f"{path}: format_version must be an integer >= 1, got {describe_value(version)}; re-convert with force=True"
        )
    if version > FORMAT_VERSION:
        raise UnsupportedModelError(
            f"{path}: model format v{version}; this fastrerank reads <= v{FORMAT_VERSION} (upgrade fastrerank)"
        )
    problem = _metadata_problem(raw, version)
    if problem:
        raise CorruptModelError(f"{path}: {problem}; re-convert with force=True")
    return ModelMetadata(**raw)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEYS = {item.name for item in fields(ModelMetadata)}
_OPTIONAL = {"source_revision", "sha256", "architecture", "pair_template"}
_ARCHITECTURES = (XLMR_ARCHITECTURE, "BertForSequenceClassification")


def _is_int(value: object, minimum: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_file_name(name: object) -> bool:
    # A name from fastrerank.json is joined to the folder: only a plain name may stay inside it.
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def _mapping_problem(raw: dict[str, Any], key: str, valid_name: Any, valid_value: Any, expected: str) -> str | None:
    """What is wrong with the mapping ``raw[key]`` (naming the first bad entry), or ``None``."""
    mapping = raw.get(key, {})
    if not isinstance(mapping, dict):
        return f"{key} must be an object, got {describe_value(mapping)}"
    for name, value in mapping.items():
        if not valid_name(name):
            return f"{key} has an invalid name {describe_value(name)}"
        if not valid_value(value):
            return f"{key}[{describe_value(name)}] must be {expected}, got {describe_value(value)}"
    return None


def _metadata_problem(raw: dict[str, Any], version: int) -> str | None:
    """What is wrong with the parsed content of ``fastrerank.json``, or ``None``: every key, type and range."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        return f"unknown key {unknown[0]!r}"
    required = (_KEYS - _OPTIONAL | ({"sha256"} if version >= FIRST_CHECKSUM_VERSION else set())
                | ({"architecture", "pair_template"} if version >= FIRST_TEMPLATE_VERSION else set()))
    missing = sorted(required - set(raw))
    if missing:
        return f"{missing[0]} is missing"
    checks: dict[str, tuple[bool, str]] = {
        "source_model": (isinstance(raw["source_model"], str), "a string"),
        "source_revision": (raw.get("source_revision") is None or isinstance(raw["source_revision"], str), "a string or null"),
        "quantization": (isinstance(raw["quantization"], str) and bool(raw["quantization"]), "a non-empty string"),
        "ctranslate2_version": (isinstance(raw["ctranslate2_version"], str), "a string"),
        "architecture": (raw.get("architecture", XLMR_ARCHITECTURE) in _ARCHITECTURES, f"one of {', '.join(_ARCHITECTURES)}"),
    }
    for key in ("max_positions", "recommended_max_length", "embedding_rows", "hidden_size", "num_layers"):
        checks[key] = (_is_int(raw[key], 1), "an integer >= 1")
    for key, (valid, expected) in checks.items():
        if not valid:
            return f"{key} must be {expected}, got {describe_value(raw[key])}"
    problem = (
        _template_problem(raw.get("pair_template", XLMR_PAIR_TEMPLATE), raw["embedding_rows"])
        or _mapping_problem(raw, "special_tokens", lambda name: isinstance(name, str), lambda v: _is_int(v, 0), "a token id >= 0")
        or _mapping_problem(raw, "files", _is_file_name, lambda v: _is_int(v, 0), "a size >= 0")
        or _mapping_problem(raw, "sha256", _is_file_name, lambda v: isinstance(v, str) and bool(_SHA256.match(v)),
                            "64 lowercase hex digits")
    )
    if problem:
        return problem
    sums, files = raw.get("sha256", {}), raw["files"]
    if (sums or version >= FIRST_CHECKSUM_VERSION) and sums.keys() != files.keys():
        return f"sha256 names {describe_value(sorted(sums))}, files names {describe_value(sorted(files))}"
    return None


def _template_problem(template: object, rows: int) -> str | None:
    """What is wrong with a ``pair_template`` record, or ``None``: its keys, ids within the table, type 0 or 1."""
    if not isinstance(template, dict) or sorted(template) != sorted(_TEMPLATE_KEYS):
        return f"pair_template must be an object with the keys {', '.join(_TEMPLATE_KEYS)}, got {describe_value(template)}"
    for key in _TEMPLATE_KEYS[:3]:
        ids = template[key]
        if not isinstance(ids, list) or not all(_is_int(i, 0) and i < rows for i in ids):
            return f"pair_template[{key!r}] must be a list of token ids in [0, embedding_rows={rows}), got {describe_value(ids)}"
    if not template["before_query"] or not template["between"]:
        return "pair_template must have a token before the query and one between query and window"
    kind = template["window_token_type"]
    if kind not in (0, 1) or isinstance(kind, bool):
        # CTranslate2 does not check token types: one past the table would read out of bounds.
        return f"pair_template['window_token_type'] must be 0 or 1, got {describe_value(kind)}"
    return None


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


_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content, in hex, read in 1 MiB chunks (memory stays flat for a 2 GB model)."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while read := handle.readinto(view):
            digest.update(view[:read])
    return digest.hexdigest()


def describe_files(folder: Path) -> tuple[dict[str, int], dict[str, str]]:
    """``(sizes, sha256s)`` of every file in ``folder``, by name: what conversion records in ``fastrerank.json``."""
    paths = sorted(path for path in folder.iterdir() if path.is_file() and path.name != METADATA_FILE)
    return {path.name: path.stat().st_size for path in paths}, {path.name: file_sha256(path) for path in paths}


def verify_checksums(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Check every file of a converted folder against the sha256 recorded at conversion.

    Loading a model checks only the files' sizes; this reads every byte, so it also catches
    silent damage such as a zeroed page (a disk or copy fault). What it costs next to a load is
    measured by ``benchmarks/verify_cost.py``. Returns the checked files and their sha256.

    Example:
        >>> fastrerank.verify("bge-m3-int8")  # doctest: +SKIP
        {'config.json': '1f0e...', 'head.safetensors': '9a3c...', 'model.bin': '77b2...', ...}

    Raises:
        InvalidTypeError: ``folder`` is not a str or a path.
        ModelNotFoundError: the folder or its ``fastrerank.json`` is missing.
        CorruptModelError: a file is missing, or its size or content differs from the record
            (the message names it); or ``fastrerank.json`` is damaged.
        UnsupportedModelError: the folder was converted before checksums were recorded (format
            v1): it cannot be verified; re-convert it to record them.
    """
    if not isinstance(folder, (str, os.PathLike)):
        raise InvalidTypeError(f"folder must be a path (str or os.PathLike), got {type(folder).__name__}")
    path = Path(folder)
    metadata = verify_folder(path)
    if not metadata.sha256:
        raise UnsupportedModelError(
            f"{str(path)!r} has no checksums (format v{metadata.format_version}, converted before fastrerank "
            f"recorded them): its sizes match but its content cannot be verified; re-convert with force=True "
            "to record them"
        )
    for name, expected in metadata.sha256.items():
        try:
            found = file_sha256(path / name)
        except OSError as err:
            raise CorruptModelError(f"{name} in {str(path)!r} cannot be read ({err}); re-convert with force=True") from err
        if found != expected:
            raise CorruptModelError(
                f"{name} in {str(path)!r} is damaged: its sha256 is {found}, expected {expected}; re-convert with force=True"
            )
    return dict(metadata.sha256)
