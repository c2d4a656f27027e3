"""The ASGI app in-process: routes, auth, limits, model choice, errors in each API's shape."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from fastrerank.errors import InferenceError, InvalidInputError, ModelClosedError
from fastrerank.schemas import RerankerLike
from fastrerank.server import create_app

from .asgi_client import request, run_with_client
from .fake_reranker import FakeReranker
from .server_cases import BODIES, CF, CF_REST, DOCS, THIRD, error_message


def strip_id(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "id"}


@pytest.fixture
def app() -> Any:
    return create_app({"m": FakeReranker()})


def test_every_route_answers(app: Any) -> None:
    expected = [(0, 2 / 3), (1, THIRD), (2, THIRD)]
    response = request(app, "POST", "/v1/rerank", json=BODIES["/v1/rerank"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "model", "results", "tokens", "usage", "meta"}
    assert body["model"] == "m"  # Jina clients (haystack's JinaRanker) read it
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == expected
    assert body["tokens"] == {"input_tokens": 18, "output_tokens": 0}
    assert body["usage"] == {"prompt_tokens": 18, "completion_tokens": 0, "total_tokens": 18}
    v2 = request(app, "POST", "/v2/rerank", json=BODIES["/v2/rerank"]).json()
    assert v2["model"] == "rerank-v3.5"  # the name the request gave
    assert {**strip_id(v2), "model": "m"} == strip_id(body)
    assert request(app, "POST", "/rerank", json=BODIES["/rerank"]).json() == [
        {"index": i, "score": s} for i, s in expected
    ]
    assert request(app, "POST", "/api/v1/rerank", json=BODIES["/api/v1/rerank"]).json() == {
        "success": True,
        "code": "200",
        "message": "successful",
        "data": {"results": [{"index": i, "relevance_score": s} for i, s in expected]},
    }
    for path in (CF, CF_REST):
        assert request(app, "POST", path, json=BODIES[path]).json() == {
            "result": {"response": [{"id": i, "score": s} for i, s in expected]},
            "success": True,
            "errors": [],
            "messages": [],
        }


def test_health_and_openapi(app: Any) -> None:
    assert request(app, "GET", "/health").json() == {"status": "ok", "models": ["m"]}
    doc = request(app, "GET", "/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/health",
        "/v1/rerank",
        "/v2/rerank",
        "/rerank",
        "/api/v1/rerank",
        CF,
        "/client/v4/accounts/{account}/ai/run/{model}",
    }
    schemas = doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        if path == "/health":
            continue
        ref = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.removeprefix("#/components/schemas/") in schemas
    assert set(schemas["CombinedRequest"]["required"]) == {"query", "documents"}
    assert schemas["CombinedRequest"]["properties"]["overlap_tokens"]["maximum"] == 80


def test_form_urlencoded_body_is_read_as_json(app: Any) -> None:
    # Cloudflare's curl example: `-d '{...}'` with no Content-Type.
    content = json.dumps(BODIES[CF]).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = request(app, "POST", CF, content=content, headers=headers)
    assert response.status_code == 200
    assert response.json()["result"]["response"][0] == {"id": 0, "score": 2 / 3}


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize(
    ("content", "status", "needle"),
    [
        (b"{", 400, "body is not valid JSON"),
        (b"[1, 2]", 400, "body must be a JSON object, got array"),
        (b'{"query": NaN}', 400, "query: NaN is not a valid JSON value"),
        (b"", 400, "body is not valid JSON"),
    ],
)
def test_bad_bodies_in_each_shape(app: Any, path: str, content: bytes, status: int, needle: str) -> None:
    response = request(app, "POST", path, content=content)
    assert response.status_code == status
    assert needle in error_message(path, response.json())
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", list(BODIES))
def test_api_key(path: str) -> None:
    app = create_app({"m": FakeReranker()}, api_key="s3cret-ключ".encode().hex())
    key = "s3cret-ключ".encode().hex()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer"}, {"Authorization": b"Bearer \xc3\xa9"}):
        response = request(app, "POST", path, json=BODIES[path], headers=headers)
        assert response.status_code == 401, headers
        assert error_message(path, response.json()) == "missing or invalid API key"
    for header in (f"Bearer {key}", f"bearer  {key}", key):
        assert request(app, "POST", path, json=BODIES[path], headers={"Authorization": header}).status_code == 200
    assert request(app, "GET", "/health").status_code == 200


def test_non_ascii_api_key_is_compared_as_bytes() -> None:
    app = create_app({"m": FakeReranker()}, api_key="clé")
    ok = request(app, "POST", "/rerank", json=BODIES["/rerank"], headers={"Authorization": "Bearer clé".encode()})
    assert ok.status_code == 200
    bad = request(app, "POST", "/rerank", json=BODIES["/rerank"], headers={"Authorization": "Bearer cle"})
    assert bad.status_code == 401


@pytest.mark.parametrize("path", list(BODIES))
def test_body_over_the_limit_is_413(path: str) -> None:
    app = create_app({"m": FakeReranker()}, max_body_bytes=100)
    big = {**BODIES[path]}
    big["query"] = "x" * 200
    response = request(app, "POST", path, json=big)
    assert response.status_code == 413
    assert "request body too large: at most 100 bytes" in error_message(path, response.json())

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 20

    chunked = request(app, "POST", path, content=chunks())
    assert chunked.status_code == 413
    assert error_message(path, chunked.json()) == "request body too large: at most 100 bytes"


def test_bad_content_length_is_400(app: Any) -> None:
    async def work(client: httpx.AsyncClient) -> httpx.Response:
        req = client.build_request("POST", "/v1/rerank", content=b"{}")
        req.headers["Content-Length"] = "-1"
        return await client.send(req)

    response = run_with_client(app, work)
    assert response.status_code == 400
    assert error_message("/v1/rerank", response.json()) == "invalid Content-Length '-1'"


@pytest.mark.parametrize(("path", "field"), [("/v1/rerank", "documents"), ("/rerank", "texts"), (CF, "contexts")])
def test_document_cap_is_413(path: str, field: str) -> None:
    app = create_app({"m": FakeReranker()}, max_documents=2)
    response = request(app, "POST", path, json=BODIES[path])
    assert response.status_code == 413
    assert error_message(path, response.json()) == f"{field}: at most 2 documents per request, got 3"


def test_engine_rejections_are_400(app: Any) -> None:
    short = create_app({"m": FakeReranker(max_length=40)})
    response = request(short, "POST", "/v1/rerank", json={**BODIES["/v1/rerank"], "overlap_tokens": 50})
    assert response.status_code == 400
    message = "overlap_tokens must be < the window W=35, got 50"
    assert response.json() == {"code": 20015, "message": message, "detail": message, "data": None}
    blank = request(app, "POST", "/rerank", json={"query": " ", "texts": ["a"]})
    assert blank.status_code == 400
    assert blank.json()["error"].startswith("query must be a non-empty string")


def test_one_model_accepts_any_name(app: Any) -> None:
    body = {**BODIES["/v1/rerank"], "model": "BAAI/bge-reranker-v2-m3"}
    assert request(app, "POST", "/v1/rerank", json=body).status_code == 200
    assert request(app, "POST", "/client/v4/accounts/a/ai/run/@cf/other", json=BODIES[CF]).status_code == 200


class Tagged(FakeReranker):
    """A fake whose scores say which model answered."""

    def __init__(self, tag: float) -> None:
        super().__init__()
        self.tag = tag

    def rank(self, query: str, documents: Any, top_n: int | None = None, **options: Any) -> Any:
        from fastrerank.results import RankedDocument, Ranking

        super().rank(query, documents, top_n, **options)
        return Ranking(tuple(RankedDocument(i, self.tag) for i in range(len(documents))), tokens=1)


def test_several_models_pick_by_name() -> None:
    app = create_app({"small": Tagged(0.25), "@cf/baai/bge-reranker-base": Tagged(0.5), "big": Tagged(0.75)})

    def score(path: str, body: dict[str, Any]) -> Any:
        response = request(app, "POST", path, json=body)
        return response.status_code, response.json()

    assert score("/v1/rerank", {**BODIES["/v1/rerank"], "model": "big"})[1]["results"][0]["relevance_score"] == 0.75
    assert score("/api/v1/rerank", {**BODIES["/api/v1/rerank"], "model": "small"})[1]["data"]["results"][0]["relevance_score"] == 0.25
    assert score(CF, BODIES[CF])[1]["result"]["response"][0]["score"] == 0.5
    assert score("/client/v4/accounts/a/ai/run/big", BODIES[CF])[1]["result"]["response"][0]["score"] == 0.75
    assert score("/rerank", BODIES["/rerank"])[1][0]["score"] == 0.25  # TEI names no model: the first

    status, body = score("/v1/rerank", {**BODIES["/v1/rerank"], "model": "nope"})
    accepted = "accepted: small, @cf/baai/bge-reranker-base, big"
    message = f"model 'nope' is not served here ({accepted})"
    assert (status, body) == (400, {"code": 20012, "message": message, "detail": message, "data": None})
    no_model = {k: v for k, v in BODIES["/v1/rerank"].items() if k != "model"}
    status, body = score("/v1/rerank", no_model)
    assert (status, body["message"]) == (400, f"model is required: this server has several ({accepted})")
    status, body = score("/client/v4/accounts/a/ai/run/@cf/nope", BODIES[CF])
    assert status == 400 and body["errors"] == [{"code": 5007, "message": f"model '@cf/nope' is not served here ({accepted})"}]
    status, body = score("/api/v1/rerank", {**BODIES["/api/v1/rerank"], "model": "nope"})
    assert (status, body["code"]) == (400, "400")


class Failing(FakeReranker):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def rank(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


def test_closed_model_is_503_and_inference_failure_500_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    closed = create_app({"m": Failing(ModelClosedError("Reranker was closed"))})
    response = request(closed, "POST", "/v1/rerank", json=BODIES["/v1/rerank"])
    assert response.status_code == 503
    assert response.json()["message"] == "the model is closed; the server is shutting down"
    broken = create_app({"m": Failing(InferenceError("NaN score for documents[1] (compute_type float16)"))})
    response = request(broken, "POST", "/rerank", json=BODIES["/rerank"])
    assert response.status_code == 500
    assert response.json() == {"error": "internal error while ranking", "error_type": "backend"}
    assert "ranking failed" in caplog.text
    buggy = create_app({"m": Failing(RuntimeError("a bug"))})
    response = request(buggy, "POST", "/api/v1/rerank", json=BODIES["/api/v1/rerank"])
    assert (response.status_code, response.json()["message"]) == (500, "internal error while ranking")


def test_over_the_limit_is_429_at_once() -> None:
    fake = FakeReranker(delay=0.3)
    app = create_app({"m": fake}, max_concurrency=1, max_queue=1, queue_timeout=5)

    async def work(client: httpx.AsyncClient) -> list[httpx.Response]:
        return list(await asyncio.gather(*(client.post("/rerank", json=BODIES["/rerank"]) for _ in range(4))))

    statuses = sorted(r.status_code for r in run_with_client(app, work))
    assert statuses == [200, 200, 429, 429]
    assert fake.calls == 2


def test_queue_timeout_is_503_and_the_work_never_starts() -> None:
    fake = FakeReranker(delay=0.6)
    app = create_app({"m": fake}, max_concurrency=1, max_queue=4, queue_timeout=0.1)

    async def work(client: httpx.AsyncClient) -> list[httpx.Response]:
        first = asyncio.ensure_future(client.post("/api/v1/rerank", json=BODIES["/api/v1/rerank"]))
        await asyncio.sleep(0.05)
        later = asyncio.gather(*(client.post("/api/v1/rerank", json=BODIES["/api/v1/rerank"]) for _ in range(3)))
        first_response, later_responses = await asyncio.gather(first, later)
        return [first_response, *later_responses]

    responses = run_with_client(app, work)
    assert [r.status_code for r in responses] == [200, 503, 503, 503]
    assert responses[1].json() == {
        "success": False,
        "code": "503",
        "message": "server busy: waited more than 0.1 s for a free slot; retry later",
    }
    assert fake.calls == 1


def test_queued_requests_run_in_order_once_slots_free() -> None:
    fake = FakeReranker(delay=0.05)
    app = create_app({"m": fake}, max_concurrency=2, max_queue=10, queue_timeout=5)

    async def work(client: httpx.AsyncClient) -> list[httpx.Response]:
        return list(await asyncio.gather(*(client.post("/v1/rerank", json=BODIES["/v1/rerank"]) for _ in range(12))))

    assert [r.status_code for r in run_with_client(app, work)] == [200] * 12
    assert fake.calls == 12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be an int >= 1, got 0"),
        ({"max_body_bytes": True}, "max_body_bytes must be an int >= 1, got True"),
        ({"max_documents": 1.5}, "max_documents must be an int >= 1, got 1.5"),
        ({"max_queue": -1}, "max_queue must be an int >= 0, got -1"),
        ({"queue_timeout": 0}, "queue_timeout must be > 0 seconds, got 0"),
    ],
)
def test_create_app_checks_its_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        create_app({"m": FakeReranker()}, **kwargs)
    assert str(caught.value) == message
    with pytest.raises(InvalidInputError, match="at least one reranker"):
        create_app({})


def test_every_route_gives_the_reranker_own_ranking(reranker: RerankerLike) -> None:
    """End to end with the ``reranker`` fixture (the fake, and the real tiny model where present)."""
    app = create_app({"m": reranker})
    direct = reranker.rank("Apple", DOCS)
    expected = [(item.index, item.score) for item in direct]
    raw = [(item.index, item.score) for item in reranker.rank("Apple", DOCS, raw=True)]

    v1 = request(app, "POST", "/v1/rerank", json=BODIES["/v1/rerank"]).json()
    assert [(r["index"], r["relevance_score"]) for r in v1["results"]] == expected
    assert v1["tokens"]["input_tokens"] == v1["usage"]["total_tokens"] == direct.tokens > 0
    tei = request(app, "POST", "/rerank", json={**BODIES["/rerank"], "raw_scores": True}).json()
    assert [(r["index"], r["score"]) for r in tei] == raw
    envelope = request(app, "POST", "/api/v1/rerank", json={**BODIES["/api/v1/rerank"], "top_n": 2}).json()
    assert [(r["index"], r["relevance_score"]) for r in envelope["data"]["results"]] == expected[:2]
    for path in (CF, CF_REST):
        cf = request(app, "POST", path, json={**BODIES[path], "top_k": 1}).json()
        assert cf["result"]["response"] == [{"id": expected[0][0], "score": expected[0][1]}]


def test_jina_clients_find_model_usage_and_detail(app: Any) -> None:
    """haystack's JinaRanker reads ``model`` and ``usage``; llama-index's, haystack's and
    langchain's Jina rankers raise ``RuntimeError(resp["detail"])`` when ``results`` is missing."""
    body = {"query": "Apple", "documents": [{"text": d} for d in DOCS], "top_n": 1, "return_documents": True}
    ok = request(app, "POST", "/v1/rerank", json=body).json()
    assert ok["model"] == "m"  # no model in the request: the one that ranked
    assert ok["usage"]["total_tokens"] == 18
    assert ok["results"] == [{"index": 0, "relevance_score": 2 / 3, "document": {"text": "apple"}}]
    for path in ("/v1/rerank", "/v2/rerank"):
        refused = request(app, "POST", path, json={**body, "top_n": 0}).json()
        assert "results" not in refused
        assert refused["detail"] == "top_n: Input should be greater than or equal to 1, got 0"


def test_cohere_object_documents_come_back_whole(app: Any) -> None:
    documents = [{"text": "banana", "title": "B", "id": 7}, "apple", {"text": "fruit", "meta": {"a": [1]}}]
    body = {"model": "rerank-english-v3.0", "query": "Apple", "documents": documents, "return_documents": True}
    results = request(app, "POST", "/v1/rerank", json=body).json()["results"]
    assert [r["document"] for r in results] == [{"text": "apple"}, {"text": "banana", "title": "B", "id": 7}, {"text": "fruit", "meta": {"a": [1]}}]


@pytest.mark.parametrize("path", [CF, CF_REST])
def test_cloudflare_empty_contexts_is_400(app: Any, path: str) -> None:
    response = request(app, "POST", path, json={"query": "Apple", "contexts": []})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"code": 5006, "message": "contexts: List should have at least 1 item after validation, not 0, got []"}
    ]


@pytest.mark.parametrize("path", list(BODIES))
def test_wrong_method_answers_in_the_route_shape(app: Any, path: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = request(app, method, path)
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert error_message(path, response.json()) == f"method {method} not allowed: use POST"


def test_an_unknown_model_name_is_cut_in_the_message() -> None:
    app = create_app({"a": FakeReranker(), "b": FakeReranker()})
    response = request(app, "POST", "/v1/rerank", json={**BODIES["/v1/rerank"], "model": "x" * 1_000_000})
    assert response.status_code == 400
    message = error_message("/v1/rerank", response.json())
    assert message == "model '" + "x" * 76 + "... is not served here (accepted: a, b)"
    assert len(response.content) < 1000
