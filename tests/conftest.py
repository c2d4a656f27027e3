"""Fixture models written by the suite itself: never downloaded, cached for the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from fastrerank.testing import ModelShape, make_reranker_folder, make_tokenizer

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHAPES = {"tiny": ModelShape.tiny(), "short": ModelShape.short(), "wide": ModelShape.wide()}


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def hf_models(fixture_root: Path) -> dict[str, Path]:
    """Hugging Face folders of random-weight XLM-R rerankers, by shape name."""
    tokenizer = make_tokenizer()
    return {name: make_reranker_folder(fixture_root / "hf" / name, shape, seed=7, tokenizer=tokenizer)
            for name, shape in SHAPES.items()}


@pytest.fixture(scope="session")
def converted(fixture_root: Path, hf_models: dict[str, Path]):  # type: ignore[no-untyped-def]
    """``converted(name, quantization)`` -> a converted folder, made once per session."""
    from fastrerank import convert

    made: dict[tuple[str, str], Path] = {}

    def get(name: str, quantization: str = "float32") -> Path:
        key = (name, quantization)
        if key not in made:
            made[key] = convert(hf_models[name], fixture_root / "ct2" / f"{name}-{quantization}", quantization=quantization)
        return made[key]

    return get


@pytest.fixture(scope="session")
def tiny_reranker(converted):  # type: ignore[no-untyped-def]
    """A float32 Reranker over the tiny fixture, shared by read-only tests."""
    from fastrerank import Reranker

    with Reranker(converted("tiny"), threads=1) as reranker:
        yield reranker


@pytest.fixture(scope="session")
def short_reranker(converted):  # type: ignore[no-untyped-def]
    """A float32 Reranker over the 64-position fixture, where chunking happens on short texts."""
    from fastrerank import Reranker

    with Reranker(converted("short"), threads=1) as reranker:
        yield reranker


SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep conversions into the cache out of the user's home; let subprocesses import this checkout."""
    monkeypatch.setenv("FASTRERANK_CACHE", str(tmp_path_factory.getbasetemp() / "fastrerank-cache"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))
