"""What operators read: /metrics (Prometheus text, parsed by prometheus_client's own parser),
/info, /v1/models, /health, X-Request-Id and the access log."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

import fastrerank
from fastrerank.server import create_app

from .asgi_client import request
from .fake_reranker import FakeReranker
from .server_cases import BODIES

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_rankings_documents_and_tokens() -> None:
    app = create_app({"m": FakeReranker()})
    for _ in range(2):
        assert request(app, "POST", "/v1/rerank", json=BODIES["/v1/rerank"]).status_code == 200
    assert request(app, "POST", "/rerank", content=b"{").status_code == 400
    assert request(app, "GET", "/rerank").status_code == 405
    response = request(app, "GET", "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    requests = "fastrerank_requests_total"
    assert got[(requests, (("method", "POST"), ("route", "/v1/rerank"), ("status", "200")))] == 2
    assert got[(requests, (("method", "POST"), ("route", "/rerank"), ("status", "400")))] == 1
    assert got[(requests, (("method", "GET"), ("route", "/rerank"), ("status", "405")))] == 1
    assert got[("fastrerank_request_duration_seconds_count", (("route", "/v1/rerank"),))] == 2
    assert got[("fastrerank_inference_duration_seconds_count", (("model", "m"),))] == 2
    assert got[("fastrerank_documents_total", (("model", "m"),))] == 6
    assert got[("fastrerank_tokens_total", (("model", "m"),))] == 36  # 18 per request (the fake's count)
    assert got[("fastrerank_queue_depth", ())] == 0
    assert got[("fastrerank_rankings_in_flight", ())] == 0
    assert got[("fastrerank_request_body_bytes_in_flight", ())] == 0


def test_metrics_live_in_the_app_registry_not_the_process_default() -> None:
    first, second = create_app({"m": FakeReranker()}), create_app({"m": FakeReranker()})
    request(first, "POST", "/rerank", json=BODIES["/rerank"])
    assert not [name for name in prometheus_client.REGISTRY._names_to_collectors if name.startswith("fastrerank")]
    count = ("fastrerank_requests_total", (("method", "POST"), ("route", "/rerank"), ("status", "200")))
    assert samples(request(first, "GET", "/metrics").text)[count] == 1
    assert count not in samples(request(second, "GET", "/metrics").text)


def test_operator_routes_need_the_key_when_one_is_set() -> None:
    app = create_app({"bge": FakeReranker(max_length=512)}, api_key="k", max_documents=50, max_concurrency=2)
    auth = {"Authorization": "Bearer k"}
    for path in ("/info", "/v1/models", "/metrics"):
        assert request(app, "GET", path).status_code == 401
        assert request(app, "GET", path, headers=auth).status_code == 200
    info = request(app, "GET", "/info", headers=auth).json()
    assert info["models"] == [{"name": "bge", "max_length": 512}]
    assert info["limits"] == {
        "max_body_bytes": 2_000_000, "max_body_bytes_in_flight": 64_000_000, "body_timeout": 30.0,
        "max_documents": 50, "max_concurrency": 2, "max_queue": 2, "queue_timeout": 30.0,
    }
    assert info["version"] == fastrerank.__version__  # also from a source tree, where there is no installed metadata
    assert request(app, "GET", "/v1/models", headers=auth).json() == {
        "object": "list", "data": [{"id": "bge", "object": "model", "owned_by": "fastrerank"}]
    }
    # /health is for load balancers (no key): the status and the served names, nothing else.
    assert request(app, "GET", "/health").json() == {"status": "ok", "models": ["bge"]}


def test_request_id_in_and_out_and_in_the_access_log(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app({"m": FakeReranker()})
    with caplog.at_level(logging.INFO, logger="fastrerank.server.access"):
        given = request(app, "POST", "/v1/rerank", json=BODIES["/v1/rerank"], headers={"X-Request-Id": "req-42"})
        fresh = request(app, "POST", "/rerank", json=BODIES["/rerank"])
        hostile = request(app, "POST", "/rerank", json=BODIES["/rerank"], headers={"X-Request-Id": "a b" + "x" * 200})
        refused = request(app, "POST", "/api/v1/rerank", content=b"[]", headers={"X-Request-Id": "req-43"})
    assert given.headers["x-request-id"] == "req-42"
    assert given.json()["id"] == "req-42"  # the Cohere/SiliconFlow id is the request id
    uuid.UUID(fresh.headers["x-request-id"])
    uuid.UUID(hostile.headers["x-request-id"])  # not a short printable token: replaced
    assert refused.headers["x-request-id"] == "req-43"
    records = [r for r in caplog.records if r.name == "fastrerank.server.access"]
    assert len(records) == 4
    first: Any = records[0]
    assert first.fastrerank["request_id"] == "req-42"
    assert first.fastrerank["status"] == 200
    assert first.fastrerank["documents"] == 3 and first.fastrerank["tokens"] == 18 and first.fastrerank["model"] == "m"
    line = first.getMessage()
    assert line.startswith("request_id=req-42 method=POST path=/v1/rerank status=200 duration_ms=")
    assert line.endswith("model=m documents=3 tokens=18")
    assert "request_id=req-43" in records[3].getMessage() and "status=400" in records[3].getMessage()
