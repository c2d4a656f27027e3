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

from .errors import CorruptModelError, ModelNotFoundError

__all__ = ["cache_root", "converted_cache_dir", "download_snapshot", "is_offline", "looks_like_hub_id", "verify_snapshot"]

logger = logging.getLogger(__name__)

_REQUIRED = ("config.json", "tokenizer.json")
_PATTERNS = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^[A-Za-z0-9][\w.-]*$")


def is_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def looks_like_hub_id(name: str) -> bool:
    """``org/name`` or ``name`` with the characters the hub allows, and not a path."""
    return bool(_HUB_ID.match(name)) and not name.startswith((".", "~")) and ".." not in name


def cache_root() -> Path:
    """Where converted models are kept: ``$FASTRERANK_CACHE``, else ``$HF_HOME/fastrerank``."""
    explicit = os.environ.get("FASTRERANK_CACHE")
    if explicit:
        return Path(explicit)
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(hf_home) / "fastrerank"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "fastrerank"


def converted_cache_dir(source: str, revision: str | None, quantization: str) -> Path:
    """The cache folder of one (source, revision, quantization): readable name plus a short hash."""
    key = f"{source}@{revision or 'default'}#{quantization}"
    readable = re.sub(r"[^\w.-]+", "--", source.strip("/"))[-80:]
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_root() / f"{readable}--{revision or 'default'}--{quantization}--{digest}"


def download_snapshot(repo_id: str, revision: str | None = None, *, allow_pickle: bool = False) -> Path:
    """Download (or find in the cache) the files a reranker needs, and verify them.

    Honours ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``. A snapshot that
    fails verification is downloaded again once (online) or refused (offline).

    Raises:
        ModelNotFoundError: unknown, gated or private repository, unknown revision, or offline
            with nothing cached.
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

    patterns = _PATTERNS + (["pytorch_model.bin"] if allow_pickle else [])
    offline = is_offline()
    where = f"{repo_id!r} (revision {revision or 'main'})"
    for attempt in range(2):
        try:
            folder = Path(snapshot_download(
                repo_id, revision=revision, allow_patterns=patterns, local_files_only=offline,
                force_download=attempt > 0, library_name="fastrerank",
            ))
        except GatedRepoError as err:
            raise ModelNotFoundError(f"{where} is gated: accept its terms and set HF_TOKEN") from err
        except RepositoryNotFoundError as err:
            raise ModelNotFoundError(f"{where} was not found on the hub (if it is private, set HF_TOKEN)") from err
        except RevisionNotFoundError as err:
            raise ModelNotFoundError(f"revision {revision!r} of {repo_id!r} does not exist") from err
        except LocalEntryNotFoundError as err:
            reason = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
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
