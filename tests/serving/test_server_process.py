"""A real server process (``serve`` under uvicorn, fake rerankers) on 127.0.0.1, real HTTP.

Every request loop here is bounded in count and in time.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .server_cases import BODIES, error_message
from .server_process import HOST, rss_bytes, running_server

pytestmark = pytest.mark.slow


def strip_ids(body: Any) -> Any:
    return {k: v for k, v in body.items() if k != "id"} if isinstance(body, dict) else body


def test_every_route_and_error_over_http() -> None:
    with running_server("--api-key", "k3y", "--max-body-bytes", "4000", "--max-documents", "5") as server:
        auth = {"Authorization": "Bearer k3y"}
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/health").json() == {"status": "ok", "models": ["fake"]}
            assert "/v1/rerank" in client.get("/openapi.json").json()["paths"]
            for path, body in BODIES.items():
                ok = client.post(path, json=body, headers=auth)
                assert ok.status_code == 200, (path, ok.text)
                form = client.post(path, content=json.dumps(body), headers={**auth, "Content-Type": "application/x-www-form-urlencoded"})
                assert strip_ids(form.json()) == strip_ids(ok.json())
                cases = [
                    (client.post(path, json=body), 401, "missing or invalid API key"),
                    (client.post(path, content=b"{", headers=auth), 400, "body is not valid JSON"),
                    (client.post(path, content=b'{"query": Infinity}', headers=auth), 400, "query: Infinity is not a valid JSON value"),
                    (client.post(path, content=b"[]", headers=auth), 400, "body must be a JSON object, got array"),
                    (client.post(path, content=b"x" * 5000, headers=auth), 413, "request body too large: at most 4000 bytes"),
                ]
                many = json.loads(json.dumps(body).replace('"Apple"', '"Apple pie"'))
                for key in ("documents", "texts", "contexts"):
                    if key in many:
                        many[key] = many[key] * 2
                        cases.append((client.post(path, json=many, headers=auth), 413, "at most 5 documents per request, got 6"))
                for response, status, needle in cases:
                    assert response.status_code == status, (path, response.text)
                    assert needle in error_message(path, response.json()), (path, response.text)
                    assert "Traceback" not in response.text
            assert client.get("/nope").status_code == 404
            assert client.get("/v1/rerank").status_code == 405
        assert server.stop() == 0
        assert server.process.stdout is not None
        assert "Traceback" not in server.process.stdout.read()


def test_32_concurrent_requests_equal_sequential_ones() -> None:
    bodies = [
        {"model": "m", "query": f"word{i % 5} fast", "documents": [f"word{j} fast" * (j % 3 + 1) for j in range(8)], "top_n": 1 + i % 8}
        for i in range(32)
    ]
    with running_server("--max-concurrency", "4", "--max-queue", "64", "--delay", "0.01") as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            sequential = [strip_ids(client.post("/v1/rerank", json=b).json()) for b in bodies]

        def post(body: dict[str, Any]) -> Any:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                response = client.post("/v1/rerank", json=body)
                assert response.status_code == 200, response.text
                return strip_ids(response.json())

        with ThreadPoolExecutor(32) as pool:
            concurrent = list(pool.map(post, bodies))
    assert concurrent == sequential
    assert len({json.dumps(r) for r in sequential}) > 1


def raw_request(port: int, path: str, headers: list[str]) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    head = [f"POST {path} HTTP/1.1", f"Host: {HOST}", *headers, "", ""]
    sock.sendall("\r\n".join(head).encode())
    return sock


def send_until_answered(sock: socket.socket, chunks: list[bytes]) -> tuple[int, bytes]:
    """Send ``chunks`` until the server answers; how many bytes went, and the answer."""
    sent = 0
    for chunk in chunks:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
    sock.settimeout(10)
    answer = b""
    while b"\r\n\r\n" not in answer:
        part = sock.recv(65536)
        if not part:
            break
        answer += part
    return sent, answer


@pytest.mark.parametrize("mode", ["content-length", "chunked"])
def test_body_limit_answers_413_before_reading_it_all(mode: str) -> None:
    limit, total, piece = 100_000, 20_000_000, 50_000
    with running_server("--max-body-bytes", str(limit)) as server:
        if mode == "content-length":
            sock = raw_request(server.port, "/v1/rerank", [f"Content-Length: {total}"])
            chunks = [b" " * piece] * (total // piece)
        else:
            sock = raw_request(server.port, "/v1/rerank", ["Transfer-Encoding: chunked"])
            chunks = [f"{piece:x}\r\n".encode() + b" " * piece + b"\r\n"] * (total // piece)
        with sock:
            started = time.monotonic()
            sent, answer = send_until_answered(sock, chunks)
            elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < total // 4, sent  # answered long before the body was all sent
        assert elapsed < 10
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_ten_50_mb_bodies_leave_the_server_rss_flat() -> None:
    limit, total, piece = 2_000_000, 50_000_000, 256_000
    with running_server() as server:
        before = rss_bytes(server.process.pid)
        for i in range(10):
            if i % 2:
                sock = raw_request(server.port, "/rerank", [f"Content-Length: {total}"])
                chunks = [b" " * piece] * (total // piece)
            else:
                sock = raw_request(server.port, "/rerank", ["Transfer-Encoding: chunked"])
                chunks = [f"{piece:x}\r\n".encode() + b" " * piece + b"\r\n"] * (total // piece)
            with sock:
                sent, answer = send_until_answered(sock, chunks)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
            assert sent < total // 4
        growth = rss_bytes(server.process.pid) - before
    assert growth < 4 * limit, growth


def test_backpressure_64_clients_on_4_slots() -> None:
    with running_server("--max-concurrency", "4", "--max-queue", "4", "--queue-timeout", "0.3", "--delay", "2.0") as server:
        barrier = threading.Barrier(64, timeout=30)

        def post(i: int) -> tuple[int, float, Any]:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                client.get("/health")  # connect first, so the barrier releases requests, not handshakes
                barrier.wait()
                started = time.monotonic()
                response = client.post("/rerank", json={"query": "fast", "texts": ["fast", "slow"]})
                return response.status_code, time.monotonic() - started, response.json()

        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(post, range(64)))
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 4, statuses
    assert statuses.count(503) == 4, statuses  # queued, then waited over 0.3 s
    assert statuses.count(429) == 56, statuses
    refused = sorted(elapsed for status, elapsed, _ in results if status == 429)
    assert refused[len(refused) // 2] < 0.5, refused  # at once, not after a ranking (2 s)
    for status, _, body in results:
        if status == 200:
            assert body == [{"index": 0, "score": 2 / 3}, {"index": 1, "score": 1 / 3}]
        elif status == 429:
            assert body["error_type"] == "overloaded"
        else:
            assert body["error_type"] == "unhealthy"


def test_client_gone_while_queued_drops_the_work(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    with running_server("--max-concurrency", "1", "--delay", "0.6", "--calls-file", str(calls)) as server:
        def post(query: str) -> int:
            body = {"query": query, "texts": ["a"]}
            return httpx.post(f"{server.url}/rerank", json=body, timeout=10).status_code

        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, "first")
            wait_for_calls(calls, 1)
            payload = json.dumps({"query": "gone", "texts": ["a"]}).encode()
            sock = raw_request(server.port, "/rerank", [f"Content-Length: {len(payload)}"])
            sock.sendall(payload)
            time.sleep(0.1)
            sock.close()  # while it waits for the slot
            assert first.result(timeout=10) == 200
        assert post("after") == 200
        assert server.stop() == 0
    assert calls.read_text().split() == ["first", "after", "<closed>"]


def wait_for_calls(calls: Path, count: int, timeout: float = 15) -> None:
    """Until the fake server has started ``count`` rankings (bounded in time)."""
    deadline = time.monotonic() + timeout
    while not (calls.exists() and len(calls.read_text().split()) >= count):
        assert time.monotonic() < deadline, f"fewer than {count} rankings started"
        time.sleep(0.02)


def test_sigterm_finishes_requests_in_flight(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    with running_server("--max-concurrency", "32", "--delay", "2.0", "--calls-file", str(calls)) as server:
        def post(i: int) -> tuple[int, Any]:
            body = {"model": "m", "query": f"q{i}", "documents": ["a", f"q{i}"]}
            response = httpx.post(f"{server.url}/v1/rerank", json=body, timeout=30)
            return response.status_code, response.json()

        with ThreadPoolExecutor(32) as pool:
            futures = [pool.submit(post, i) for i in range(32)]
            wait_for_calls(calls, 32)  # every request is in flight (each ranking takes 2 s)
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{server.url}/health", timeout=2)  # no new connections
            results = [future.result(timeout=30) for future in futures]
        code = server.process.wait(timeout=30)
        elapsed = time.monotonic() - started
    assert [status for status, _ in results] == [200] * 32
    assert all(body["results"][0]["index"] == 1 for _, body in results)
    assert code == 0
    assert elapsed < 10
    assert calls.read_text().split()[-1] == "<closed>"  # serve() closed the model on the way out


def test_random_bodies_over_real_http() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from .test_server_fuzz import bodies

    with running_server("--max-documents", "50") as server, httpx.Client(base_url=server.url, timeout=10) as client:

        @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            path = data.draw(st.sampled_from(list(BODIES)))
            response = client.post(path, content=data.draw(bodies(path)))
            assert response.status_code < 500, response.text
            assert "Traceback" not in response.text
            if response.status_code >= 400:
                assert error_message(path, response.json())

        check()
        assert server.stop() == 0
