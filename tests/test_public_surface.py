"""The public surface: the names in ``fastrerank.__all__`` and the modules without a leading underscore."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import fastrerank

# Everything else in the package is private (a leading underscore in its dotted name).
PUBLIC_MODULES = {
    "fastrerank",
    "fastrerank.errors",
    "fastrerank.results",
    "fastrerank.testing",
    "fastrerank.schemas",
    *(f"fastrerank.schemas.{api}" for api in ("cloudflare", "cohere", "combined", "dmxapi", "envelope", "siliconflow", "tei")),
    "fastrerank.server",
    "fastrerank.integrations",
    *(f"fastrerank.integrations.{name}" for name in ("haystack", "langchain", "llama_index", "ray")),
}


def _modules() -> set[str]:
    found = {"fastrerank"}
    for module in pkgutil.walk_packages(fastrerank.__path__, "fastrerank."):
        found.add(module.name)
    return found


def test_public_modules_are_exactly_the_documented_ones() -> None:
    public = {name for name in _modules() if not any(part.startswith("_") for part in name.split("."))}
    assert public == PUBLIC_MODULES


def test_no_module_is_left_under_its_old_public_name() -> None:
    old = ["api", "cli", "conversion", "engine", "hub", "loading", "model_format", "reranker", "tuning", "validation",
           "integrations.batches", "integrations.parquet_output", "integrations.ray_pool"]
    assert {f"fastrerank.{name}" for name in old} & _modules() == set()


def test_public_api_is_exactly_all() -> None:
    public = {name for name in dir(fastrerank) if not name.startswith("_")}
    submodules = {"errors", "results", "testing", "schemas", "server", "integrations"}
    assert public - submodules == set(fastrerank.__all__)
    heavy = ["ctranslate2", "torch", "langchain_core", "llama_index", "haystack"]
    fresh = subprocess.run([sys.executable, "-c", f"import fastrerank, sys; print(*[m in sys.modules for m in {heavy!r}])"],
                           capture_output=True, text=True)
    assert fresh.stdout.split() == ["False"] * len(heavy)


def test_the_documents_argument_is_called_documents_everywhere() -> None:
    import dataclasses
    import inspect

    from fastrerank.schemas import RankArgs, RerankerLike

    callables = [fastrerank.rank, fastrerank.arank, fastrerank.Reranker.rank, fastrerank.Reranker.score,
                 fastrerank.Reranker.arank, fastrerank.Reranker.ascore, RerankerLike.rank]
    for function in callables:
        parameters = list(inspect.signature(function).parameters)
        assert "documents" in parameters and "docs" not in parameters, function.__qualname__
    assert [field.name for field in dataclasses.fields(RankArgs)][:2] == ["query", "documents"]


def test_documents_by_keyword_ranks_as_by_position(tiny_reranker: fastrerank.Reranker) -> None:
    import asyncio

    texts = ["apple pie", "car engine", "fruit salad"]
    expected = tiny_reranker.rank("apple fruit", texts)
    assert tiny_reranker.rank("apple fruit", documents=texts) == expected
    assert asyncio.run(tiny_reranker.arank("apple fruit", documents=texts)) == expected
    assert list(tiny_reranker.score("apple fruit", documents=texts)) == list(asyncio.run(
        tiny_reranker.ascore("apple fruit", documents=texts)))
    shared = fastrerank.rank("apple fruit", documents=texts, model=tiny_reranker.model_path)
    fastrerank.clear_cache()
    assert [item.index for item in shared] == [item.index for item in expected]
    assert [item.score for item in shared] == pytest.approx([item.score for item in expected], abs=1e-5)  # other threads
