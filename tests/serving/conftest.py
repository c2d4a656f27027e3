from __future__ import annotations

import pytest

from fastrerank.schemas import RerankerLike

from .fake_reranker import FakeReranker


@pytest.fixture
def fake() -> FakeReranker:
    """The deterministic fake, for tests that compare exact scores."""
    return FakeReranker()


@pytest.fixture(params=["fake", "real"])
def reranker(request: pytest.FixtureRequest) -> RerankerLike:
    """The reranker of the shape tests that hold for any model (seed examples, the same
    ranking through every shape): the fake, and the suite's real tiny model (the session
    fixture ``tiny_reranker``) where the checkout has one."""
    if request.param == "fake":
        return FakeReranker()
    try:
        real: RerankerLike = request.getfixturevalue("tiny_reranker")
    except pytest.FixtureLookupError:
        pytest.skip("no tiny_reranker fixture in this checkout")
    return real
