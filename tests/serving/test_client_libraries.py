"""The real Cohere client (v1 and v2) against a real server process on 127.0.0.1.

Cohere is the lightest of the client libraries people point at ``fastrerank serve``; its
pydantic response models check the shapes it reads. The scores are the fake reranker's.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .fake_reranker import fake_score
from .server_process import Server, running_server

cohere = pytest.importorskip("cohere")

pytestmark = pytest.mark.slow

DOCS = ["apple", "banana", "fruit"]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server("--api-key", "k") as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """The HTTP client the Cohere clients use (theirs are never closed)."""
    with httpx.Client(timeout=10) as client:
        yield client


def test_cohere_v2_rerank(server: Server, http: httpx.Client) -> None:
    client = cohere.ClientV2(api_key="k", base_url=server.url, httpx_client=http)
    response = client.rerank(model="rerank-v3.5", query="Apple", documents=DOCS, top_n=2)
    assert [(r.index, r.relevance_score) for r in response.results] == [(0, fake_score("Apple", "apple")), (1, fake_score("Apple", "banana"))]
    assert response.meta.billed_units.search_units == 1


def test_cohere_v1_rerank_returns_object_documents_whole(server: Server, http: httpx.Client) -> None:
    client = cohere.Client(api_key="k", base_url=server.url, httpx_client=http)
    documents = [{"text": "banana", "title": "B"}, "apple"]
    response = client.rerank(model="rerank-english-v3.0", query="Apple", documents=documents, return_documents=True)
    assert [r.index for r in response.results] == [1, 0]
    assert response.results[0].document.text == "apple"
    assert response.results[1].document.text == "banana"
    assert response.results[1].document.title == "B"  # Cohere keeps a document's other fields


def test_cohere_errors_carry_the_message(server: Server, http: httpx.Client) -> None:
    client = cohere.ClientV2(api_key="k", base_url=server.url, httpx_client=http)
    with pytest.raises(cohere.BadRequestError) as bad:
        client.rerank(model="m", query="Apple", documents=[])
    assert bad.value.body["message"] == "documents: List should have at least 1 item after validation, not 0, got []"
    with pytest.raises(cohere.UnauthorizedError) as unauthorized:
        cohere.ClientV2(api_key="wrong", base_url=server.url, httpx_client=http).rerank(model="m", query="Apple", documents=DOCS)
    assert unauthorized.value.body["message"] == "missing or invalid API key"
