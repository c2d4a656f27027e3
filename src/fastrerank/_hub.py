"""Hugging Face hub ids -> verified local snapshots, and where converted models are cached.

This is the only module that talks to the hub. huggingface_hub can hand back a half-downloaded
snapshot (after an interrupted download, on a 5xx, or offline), so every file fastrerank needs is
checked after each download or cache hit: present, parseable, and with consistent sizes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from pathlib import Path

from .errors import CorruptModelError, InvalidInputError, InvalidTypeError, ModelNotFoundError, describe_value

__all__ = [
    "cache_root",
    "check_revision",
    "converted_cache_dir",
    "download_snapshot",
    "hub_cache",
    "hub_id_problem",
    "is_offline",
    "looks_like_hub_id",
    "verify_snapshot",
]

logger = logging.getLogger(__name__)

_REQUIRED = ("config.json", "tokenizer.json")
_PATTERNS = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
# Git ref names (branches, tags, ``refs/pr/1``) and commit hashes, in the characters the hub
# uses; '/' separates segments, and no segment may be empty, '.' or '..' (see check_revision).
_REVISION = re.compile(r"^[A-Za-z0-9._+=@-]+(/[A-Za-z0-9._+=@-]+)*$")
_MAX_REVISION = 255


def is_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_id_problem(name: str) -> str | None:
    """Why huggingface_hub would refuse ``name`` as a repository id, or ``None`` when it accepts it.

    huggingface_hub's own validator decides (``--``, ``..``, a trailing ``.``, ``.git``, over 96
    characters...), so that its ``HFValidationError`` never reaches the user.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as err:
        # Its messages end with the id itself, which the caller's message already shows.
        return str(err).replace(f": '{name}'", "")
    return None


def looks_like_hub_id(name: str) -> bool:
    """``org/name`` or ``name`` as huggingface_hub accepts it (which no path starting with ``.``, ``/`` or ``~`` is)."""
    return hub_id_problem(name) is None


def check_revision(revision: object) -> str | None:
    """Return ``revision`` (a branch, tag or commit) if it is ``None`` or a safe ref name.

    Checked before any file is touched: the revision becomes part of cache paths, so a value
    such as ``"x/../../elsewhere"`` must never reach the filesystem.

    Raises:
        InvalidTypeError: ``revision`` is not a str or ``None``.
        InvalidInputError: empty, longer than 255 characters, or not made of ``/``-separated
            segments of letters, digits and ``._+=@-`` (no ``.`` or ``..`` segment, no leading or
            trailing ``/``, no control characters).
    """
    if revision is None:
        return None
    if not isinstance(revision, str):
        raise InvalidTypeError(f"revision must be a str (branch, tag or commit) or None, got {type(revision).__name__}")
    segments = revision.split("/")
    if (not _REVISION.match(revision) or len(revision) > _MAX_REVISION
            or any(segment in (".", "..") for segment in segments)):
        raise InvalidInputError(
            f"revision must be a branch, tag or commit: up to {_MAX_REVISION} letters, digits, '._+=@-' in "
            f"'/'-separated parts, none of them '.' or '..'; got {describe_value(revision)}"
        )
    return revision


def cache_root(cache_dir: Path | None = None) -> Path:
    """Where converted models are kept: ``cache_dir`` when given, else ``$FASTRERANK_CACHE``, else ``$HF_HOME/fastrerank``."""
    if cache_dir is not None:
        return cache_dir
    explicit = os.environ.get("FASTRERANK_CACHE")
    if explicit:
        return Path(explicit)
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(hf_home) / "fastrerank"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "fastrerank"


def hub_cache(cache_dir: Path | None) -> Path | None:
    """Where hub downloads are kept: ``<cache_dir>/hub`` (huggingface_hub's layout) when ``cache_dir`` is given,
    else ``None``, huggingface_hub's own cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``)."""
    return None if cache_dir is None else cache_dir / "hub"


def converted_cache_dir(source: str, revision: str | None, quantization: str, *, cache_dir: Path | None = None) -> Path:
    """The cache folder of one (source, revision, quantization): readable name plus a short hash.

    Every part of the name is reduced to word characters, ``.`` and ``-`` and the parts are joined
    with ``--``, so the folder is always a direct child of :func:`cache_root` (of ``cache_dir`` when
    given), whatever they hold.

    Raises:
        InvalidInputError: ``revision`` is not a safe ref name (see :func:`check_revision`).
    """
    check_revision(revision)
    key = f"{source}@{revision or 'default'}#{quantization}"
    parts = [_readable(source)[-80:], _readable(revision or "default")[-80:], _readable(quantization)[-40:]]
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    root = cache_root(cache_dir)
    folder = root / "--".join([*parts, digest])
    # The name has no separator and is never '.' or '..', so this cannot fail; it states the
    # invariant that the cache's locks and replacements rely on (symlinks are not followed: a
    # cache entry the user moved elsewhere and linked back stays usable).
    if Path(os.path.normpath(folder)).parent != Path(os.path.normpath(root)):
        raise InvalidInputError(f"the cache folder for {describe_value(key)} would leave the cache {str(root)!r}")
    return folder


def _readable(text: str) -> str:
    """``text`` with every run of characters other than word characters, ``.`` and ``-`` replaced by ``--``."""
    return re.sub(r"[^\w.-]+", "--", text.strip("/"))


def download_snapshot(
    repo_id: str,
    revision: str | None = None,
    *,
    allow_pickle: bool = False,
    cache_dir: Path | None = None,
    local_files_only: bool = False,
) -> Path:
    """Download (or find in the cache) the files a reranker needs, and verify them.

    The snapshot is kept in :func:`hub_cache` of ``cache_dir``: huggingface_hub's own cache when
    it is ``None`` (honouring ``HF_HOME`` and ``HF_HUB_CACHE``). ``HF_TOKEN`` is honoured. With
    ``local_files_only=True``, or when ``HF_HUB_OFFLINE`` is set, the network is never used
    (huggingface_hub's ``local_files_only``): only a snapshot already in the cache is found. A
    snapshot that fails verification is downloaded again once (online) or refused (offline).

    Raises:
        InvalidInputError: ``revision`` is not a safe ref name (checked before anything is written).
        ModelNotFoundError: unknown, gated or private repository, unknown revision, or offline
            (``local_files_only`` or ``HF_HUB_OFFLINE``) with nothing cached.
        CorruptModelError: the files stay inconsistent after a fresh download, or offline.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    check_revision(revision)
    patterns = _PATTERNS + (["pytorch_model.bin"] if allow_pickle else [])
    offline = local_files_only or is_offline()
    where = f"{repo_id!r} (revision {revision or 'main'})"
    downloads = hub_cache(cache_dir)
    for attempt in range(2):
        try:
            folder = Path(snapshot_download(
                repo_id, revision=revision, allow_patterns=patterns, local_files_only=offline,
                force_download=attempt > 0, library_name="fastrerank", cache_dir=downloads,
            ))
        except GatedRepoError as err:
            raise ModelNotFoundError(f"{where} is gated: accept its terms and set HF_TOKEN") from err
        except RepositoryNotFoundError as err:
            raise ModelNotFoundError(f"{where} was not found on the hub (if it is private, set HF_TOKEN)") from err
        except RevisionNotFoundError as err:
            raise ModelNotFoundError(f"revision {revision!r} of {repo_id!r} does not exist") from err
        except LocalEntryNotFoundError as err:
            reason = ("local_files_only=True" if local_files_only else "HF_HUB_OFFLINE is set" if offline
                      else "the hub cannot be reached")
            raise ModelNotFoundError(f"{where} is not in the local cache and {reason}") from err
        except (HfHubHTTPError, OSError) as err:
            raise ModelNotFoundError(f"downloading {where} failed: {err}") from err
        problem = verify_snapshot(folder)
        if problem is None:
            return folder
        if offline or attempt:
            raise CorruptModelError(f"the cached snapshot of {where} is incomplete: {problem}"
                                    + ("; run once online to repair it" if offline else ""))
        logger.warning("snapshot of %s is incomplete (%s); downloading it again", where, problem)
    raise AssertionError("unreachable")


def verify_snapshot(folder: Path) -> str | None:
    """Why ``folder`` is not a usable reranker snapshot, or ``None`` when it is.

    Checks that ``config.json`` and ``tokenizer.json`` parse and that every safetensors file is
    exactly as long as its header says (a truncated download fails this).
    """
    for name in _REQUIRED:
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return f"{name} is not valid JSON ({err})"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not (folder / "pytorch_model.bin").is_file():
        return "no weights (model.safetensors) found"
    for path in weights:
        problem = safetensors_size_problem(path)
        if problem:
            return problem
    return None


def safetensors_size_problem(path: Path) -> str | None:
    """Compare a safetensors file's size with the one its header implies."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > min(size, 100 << 20):
                return f"{path.name} has a corrupt header"
            header = json.loads(handle.read(header_len))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError) as err:
        return f"{path.name} cannot be read ({err})"
    expected = 8 + header_len + end
    if size != expected:
        return f"{path.name} has {size} bytes, its header implies {expected} (truncated download?)"
    return None
