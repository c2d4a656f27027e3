"""What the framework components share: the Reranker they rank with, given or taken from the process-wide cache."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from .._api import with_cached_reranker
from .._reranker import Reranker
from .._validation import DEFAULT_CACHE_OPTIONS, RankOptions, check_cache_options, check_int, check_rank_options
from ..errors import InvalidInputError, InvalidTypeError, MissingDependencyError
from ..results import Ranking

__all__ = ["RerankerSource", "check_settings", "check_top", "missing_framework"]


def missing_framework(err: ModuleNotFoundError, *, module: str, package: str, extra: str) -> ImportError:
    """The error to raise when importing ``module`` failed: a :class:`MissingDependencyError` when it is absent.

    Any other missing module (a framework's own broken dependency) is left as it was.
    """
    if err.name is not None and err.name.split(".")[0] == module:
        return MissingDependencyError(f"this integration needs {package}, which is not installed: "
                                      f"pip install 'fastrerank[{extra}]'")
    return err


def check_settings(*, top_name: str, top: object, overlap_tokens: object, max_chunks_per_doc: object,
                   raw: object) -> tuple[int | None, RankOptions]:
    """A component's documents to keep (``None``: all) and rank options, checked once when it is made."""
    options = check_rank_options(top_n=None, overlap_tokens=overlap_tokens, max_chunks_per_doc=max_chunks_per_doc,
                                 return_documents=False, raw=raw)
    return check_top(top_name, top), options


def check_top(name: str, value: object) -> int | None:
    """How many documents to keep: ``None`` (all) or an int >= 1."""
    return None if value is None else check_int(name, value, minimum=1)


class RerankerSource:
    """A :class:`Reranker` given by the caller, or a model looked up in fastrerank's process-wide cache at each call.

    A model path or hub id is not loaded when the component is made, only on first use or
    :meth:`load`; then every component and :func:`fastrerank.rank` call for the same model and
    options share one loaded model.
    """

    def __init__(self, model: str | os.PathLike[str] | Reranker, *, device: str, compute_type: str,
                 max_length: int | None, cache_dir: str | os.PathLike[str] | None = None,
                 local_files_only: bool = False) -> None:
        self.cache = check_cache_options(cache_dir, local_files_only)
        if isinstance(model, Reranker):
            if (device, compute_type, max_length, self.cache) != ("auto", "default", None, DEFAULT_CACHE_OPTIONS):
                raise InvalidInputError("device, compute_type, max_length, cache_dir and local_files_only apply to a "
                                        "model path or hub id; a Reranker passed as model keeps its own")
            self.reranker: Reranker | None = model
            self.model = str(model.model_path)
        elif isinstance(model, (str, os.PathLike)):
            self.reranker = None
            self.model = os.fspath(model)
        else:
            raise InvalidTypeError(f"model must be a path, a hub id or a fastrerank.Reranker, got {type(model).__name__}")
        self.device, self.compute_type, self.max_length = device, compute_type, max_length

    def rank(self, query: str, texts: Sequence[str], top_n: int | None, options: RankOptions) -> Ranking:
        """:meth:`Reranker.rank` of ``texts`` with these options."""
        def call(reranker: Reranker) -> Ranking:
            return reranker.rank(query, texts, top_n, overlap_tokens=options.overlap_tokens,
                                 max_chunks_per_doc=options.max_chunks_per_doc, raw=options.raw)

        if self.reranker is not None:
            return call(self.reranker)
        return with_cached_reranker(call, model=self.model, device=self.device, compute_type=self.compute_type,
                                    max_length=self.max_length, cache_dir=self.cache.cache_dir,
                                    local_files_only=self.cache.local_files_only)

    async def arank(self, query: str, texts: Sequence[str], top_n: int | None, options: RankOptions) -> Ranking:
        """:meth:`rank` in a worker thread, so that the event loop keeps running (the model loads there too)."""
        return await asyncio.to_thread(self.rank, query, texts, top_n, options)

    def load(self) -> Reranker:
        """The Reranker, loading the model into the cache now if it is not loaded yet."""
        if self.reranker is not None:
            return self.reranker
        return with_cached_reranker(lambda reranker: reranker, model=self.model, device=self.device,
                                    compute_type=self.compute_type, max_length=self.max_length,
                                    cache_dir=self.cache.cache_dir, local_files_only=self.cache.local_files_only)

    def settings(self) -> dict[str, object]:
        """What makes the same source again (for serialisation): a given Reranker is named by its folder."""
        if self.reranker is not None:
            # The folder it loaded (converted already) with the compute type it was asked for.
            compute_type = self.reranker._init_args[1]["compute_type"]
            return {"model": self.model, "device": self.reranker.device, "compute_type": compute_type,
                    "max_length": self.reranker.max_length, "cache_dir": None, "local_files_only": False}
        return {"model": self.model, "device": self.device, "compute_type": self.compute_type, "max_length": self.max_length,
                "cache_dir": None if self.cache.cache_dir is None else str(self.cache.cache_dir),
                "local_files_only": self.cache.local_files_only}
