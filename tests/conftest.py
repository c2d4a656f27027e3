from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fake_reranker import FakeReranker

from fastrerank.schemas import RerankerLike

TESTS = Path(__file__).parent
DATA = TESTS / "data"
SRC = TESTS.parent / "src"


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python that imports fastrerank and the test helpers."""
    paths = [str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def load_data(name: str) -> Any:
    """A JSON file under tests/data."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture
def fake() -> FakeReranker:
    """The deterministic fake, for tests that compare exact scores."""
    return FakeReranker()


@pytest.fixture
def reranker() -> RerankerLike:
    """The reranker of the shape tests that hold for any model (seed examples, the same
    ranking through every shape). The fake here; an end-to-end suite can override this fixture
    with a real :class:`fastrerank.Reranker` on a generated model."""
    return FakeReranker()
