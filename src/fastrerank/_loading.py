"""Turn what a user passes as ``model`` into a converted folder on disk, converting once if needed.

``model`` may be a folder made by :func:`fastrerank.convert` (used as it is), a Hugging Face model
folder, or a hub id. The last two are converted once into the cache
(:func:`fastrerank._hub.cache_root`: ``cache_dir``, else ``$FASTRERANK_CACHE``), keyed by source,
revision and quantization, under a file lock so that two processes converting the same model
produce one folder. A valid cached conversion is used without any network call, which is what
makes offline use (``local_files_only=True``, ``HF_HUB_OFFLINE=1``) work. A fresh
conversion is checked against its sha256 before it is used, so a write that went wrong on the
way to disk is caught once, where loading later checks only sizes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from . import _hub as hub
from . import _model_format as model_format
from ._conversion import convert_folder
from ._validation import DEFAULT_CACHE_OPTIONS, CacheOptions
from .errors import CorruptModelError, FastRerankError, InvalidTypeError, ModelLoadError, ModelNotFoundError, describe_value

__all__ = ["conversion_quantization", "local_folder_or_hub_id", "resolve_model"]

logger = logging.getLogger(__name__)

_WEIGHT_FILES = ("config.json", "tokenizer.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def conversion_quantization(device: str, compute_type: str) -> str:
    """The quantization to convert with: ``compute_type`` if it names one, else int8 on CPU and float16 on CUDA."""
    if compute_type not in ("default", "auto"):
        return compute_type
    return "float16" if device == "cuda" else "int8"


def local_folder_or_hub_id(model: object) -> tuple[str, Path | None]:
    """``(name, folder)`` for a ``model`` argument: the folder when it names one, ``None`` for a hub id.

    Raises:
        InvalidTypeError: ``model`` is neither a str nor a path.
        ModelNotFoundError: it names no folder and is not a hub id huggingface_hub accepts (the
            message gives its reason), or it names a file.
    """
    if not isinstance(model, (str, os.PathLike)):
        raise InvalidTypeError(f"model must be a path or a hub id (str), got {type(model).__name__}")
    name = os.fspath(model)
    path = Path(name).expanduser()
    if path.is_dir():
        return name, path
    if path.exists() or _looks_like_path(name):
        raise ModelNotFoundError(f"model folder {name!r} does not exist")
    problem = hub.hub_id_problem(name)
    if problem is not None:
        raise ModelNotFoundError(
            f"model {describe_value(name)} is neither an existing folder nor a valid Hugging Face hub id ({problem})"
        )
    return name, None


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be meant as a path (absolute, relative to ``.``/``~``, or deeper than ``org/name``)."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def resolve_model(
    model: str | os.PathLike[str],
    *,
    quantization: str,
    revision: str | None = None,
    allow_pickle: bool = False,
    cache: CacheOptions = DEFAULT_CACHE_OPTIONS,
) -> Path:
    """Return a converted folder for ``model``; see the module docstring.

    ``revision`` is checked before anything else (it becomes part of cache paths).
    """
    hub.check_revision(revision)
    name, path = local_folder_or_hub_id(model)
    if path is not None:
        if model_format.is_converted_folder(path):
            return path
        if (path / model_format.ENCODER_FILE).is_file():
            # A CTranslate2 folder without its commit marker (a foreign or unfinished conversion):
            # say so instead of reading CTranslate2's config.json as a Hugging Face one.
            model_format.read_metadata(path)
        if (path / "config.json").is_file():
            return _cached_conversion(path, _local_key(path), None, quantization, allow_pickle, cache)
        raise ModelNotFoundError(
            f"{name!r} is neither a converted fastrerank folder (fastrerank.json) nor a Hugging Face model folder (config.json)"
        )
    return _cached_conversion(None, name, revision, quantization, allow_pickle, cache)


def _local_key(folder: Path) -> str:
    """A cache key for a local folder that changes when its files change."""
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for name in _WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"local/{folder.name}-{digest.hexdigest()[:16]}"


def _valid_cache(folder: Path, quantization: str) -> bool:
    if not model_format.is_converted_folder(folder):
        return False
    try:
        return model_format.verify_folder(folder).quantization == quantization
    except FastRerankError as err:
        logger.warning("cached conversion %s is unusable (%s); converting again", folder, err)
        return False


def _cached_conversion(
    local: Path | None, key: str, revision: str | None, quantization: str, allow_pickle: bool, cache: CacheOptions
) -> Path:
    from filelock import FileLock

    target = hub.converted_cache_dir(key, revision, quantization, cache_dir=cache.cache_dir)
    if _valid_cache(target, quantization):
        return target
    lock = FileLock(str(target) + ".lock")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as err:
        remedy = "pass a writable folder as cache_dir" if cache.cache_dir is not None else "set FASTRERANK_CACHE to a writable folder"
        raise ModelLoadError(
            f"cannot write the conversion cache {str(target.parent)!r} ({err.strerror or err}); {remedy}"
        ) from err
    try:
        if _valid_cache(target, quantization):  # another process finished it while we waited
            return target
        source = local or hub.download_snapshot(key, revision, allow_pickle=allow_pickle, cache_dir=cache.cache_dir,
                                                local_files_only=cache.local_files_only)
        logger.info("converting %s (%s) into %s", key, quantization, target)
        converted = convert_folder(
            source, target, quantization=quantization, force=True, allow_pickle=allow_pickle,
            source_model=str(local) if local else key, source_revision=revision,
        )
        _check_fresh_conversion(converted)
        return converted
    finally:
        lock.release()


def _check_fresh_conversion(folder: Path) -> None:
    """Read back what conversion wrote against its sha256; remove it from the cache if it differs.

    Loading checks sizes only, so a conversion damaged on its way to disk would otherwise be
    used silently from then on. The folder is the cache's own, never the user's.
    """
    try:
        model_format.verify_checksums(folder)
    except CorruptModelError as err:
        shutil.rmtree(folder, ignore_errors=True)
        reason = str(err).removesuffix("; re-convert with force=True")
        raise CorruptModelError(
            f"the conversion just written to the cache is damaged ({reason}); it was removed and the next load "
            "converts again (if this repeats, check the disk that holds FASTRERANK_CACHE)"
        ) from err
