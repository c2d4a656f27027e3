"""Request bodies per route and a reader of each route's error shape, for the server tests."""

from __future__ import annotations

from typing import Any

CF = "/ai/run/@cf/baai/bge-reranker-base"
CF_REST = "/client/v4/accounts/acc123/ai/run/@cf/baai/bge-reranker-base"
DOCS = ["apple", "banana", "fruit"]
BODIES: dict[str, dict[str, Any]] = {
    "/v1/rerank": {"model": "m", "query": "Apple", "documents": DOCS},
    "/v2/rerank": {"model": "rerank-v3.5", "query": "Apple", "documents": DOCS},
    "/rerank": {"query": "Apple", "texts": DOCS},
    "/api/v1/rerank": {"model": "m", "query": "Apple", "documents": DOCS},
    CF: {"query": "Apple", "contexts": [{"text": d} for d in DOCS]},
    CF_REST: {"query": "Apple", "contexts": [{"text": d} for d in DOCS]},
}
THIRD = 1 / 3


def error_message(path: str, body: Any) -> str:
    """The message of an error body in the route's shape (asserting the shape's keys)."""
    if path in (CF, CF_REST):
        assert set(body) == {"result", "success", "errors", "messages"}
        assert body["success"] is False and body["result"] is None and body["messages"] == []
        (error,) = body["errors"]
        assert set(error) == {"code", "message"}
        return str(error["message"])
    if path == "/rerank":
        assert set(body) == {"error", "error_type"}
        return str(body["error"])
    if path == "/api/v1/rerank":
        assert set(body) == {"success", "code", "message"} and body["success"] is False
        return str(body["message"])
    # SiliconFlow's code/message/data, and Jina's (FastAPI's) detail that Jina clients raise with
    assert set(body) == {"code", "message", "detail", "data"} and body["data"] is None
    assert body["detail"] == body["message"]
    return str(body["message"])
