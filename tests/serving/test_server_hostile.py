"""Hostile clients against a real server process (``serve`` under uvicorn, fake rerankers) on
127.0.0.1: idle and half-sent connections, slow and parallel uploads, bad JSON, clients that
leave, a shutdown past its grace period, and a mixed load. Every loop is bounded in count and
in time.
"""

from __future__ import annotations

import json
import signal
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .server_cases import BODIES, error_message
from .server_process import HOST, rss_bytes, running_server
from .test_server_process import raw_request, wait_for_calls

pytestmark = pytest.mark.slow


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` seconds (reading what it sends)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def answer(sock: socket.socket, timeout: float = 10) -> tuple[int, Any]:
    """The status and JSON body of the server's answer on ``sock``."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, data
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        part = sock.recv(65536)
        assert part
        body += part
    return int(head.split()[1]), json.loads(body)


def test_idle_connections_and_half_sent_heads_are_closed() -> None:
    with running_server("--header-timeout", "0.5") as server:
        idle = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(20)]
        half = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(20)]
        for sock in half:
            sock.sendall(f"POST /v1/rerank HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n".encode())
        # A kept-alive connection that starts its next head and stops.
        kept = socket.create_connection((HOST, server.port), timeout=5)
        kept.sendall(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        kept.recv(65536)
        kept.sendall(b"GET /health HTTP/1.1\r\n")
        started = time.monotonic()
        try:
            assert all(closed_by_server(sock, 5) for sock in [*idle, *half, kept])
            assert time.monotonic() - started < 5
        finally:
            for sock in [*idle, *half, kept]:
                sock.close()
        assert httpx.post(f"{server.url}/v1/rerank", json=BODIES["/v1/rerank"], timeout=5).status_code == 200


def test_connections_over_the_cap_are_closed_at_once() -> None:
    with running_server("--max-connections", "8", "--header-timeout", "30") as server:
        held = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(8)]
        try:
            time.sleep(0.3)  # accepted by the server
            extra = socket.create_connection((HOST, server.port), timeout=5)
            with extra:
                assert closed_by_server(extra, 2)
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 5
        while True:  # the server sees the held connections go
            try:
                response = httpx.post(f"{server.url}/v1/rerank", json=BODIES["/v1/rerank"], timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert response.status_code == 200


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank"])
def test_a_body_that_does_not_arrive_in_time_is_408(path: str) -> None:
    with running_server("--body-timeout", "0.5") as server:
        socks = [raw_request(server.port, path, ["Content-Length: 1000"]) for _ in range(10)]
        started = time.monotonic()
        try:
            for sock in socks:
                sock.sendall(b" " * 999)  # all but the last byte
            for sock in socks:
                status, body = answer(sock)
                assert status == 408
                assert error_message(path, body) == "request body not received within 0.5 s"
                assert closed_by_server(sock, 5)
        finally:
            for sock in socks:
                sock.close()
        assert time.monotonic() - started < 5


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_bodies_in_flight_are_bounded_in_total() -> None:
    """40 clients each send all but the last byte of a 1 MB body: 8 MB are held, the rest
    refused at once, and the server's memory grows by the budget, not by 40 MB."""
    size = 1_000_000
    args = ("--max-body-bytes", str(size), "--max-body-bytes-in-flight", str(8 * size), "--body-timeout", "30")
    with running_server(*args) as server:
        before = rss_bytes(server.process.pid)
        socks = [raw_request(server.port, "/rerank", [f"Content-Length: {size}"]) for _ in range(40)]
        try:
            refused: list[Any] = []
            for sock in socks:
                sock.setblocking(True)
                sock.settimeout(10)
                try:
                    sock.sendall(b" " * (size - 1))
                except (BrokenPipeError, ConnectionResetError):
                    pass
            for sock in socks:
                sock.settimeout(0.5)
                try:
                    refused.append(answer(sock, timeout=0.5))
                except TimeoutError:
                    pass  # held: its body is in flight
            grown = rss_bytes(server.process.pid) - before
            assert len(refused) == 32, len(refused)
            for status, body in refused:
                assert (status, body["error_type"]) == (429, "overloaded")
                assert body["error"] == f"server busy: {8 * size} bytes of request bodies already in flight; retry later"
            chunked = raw_request(server.port, "/rerank", ["Transfer-Encoding: chunked"])
            with chunked:
                chunked.sendall(b"a\r\n" + b" " * 10 + b"\r\n")
                assert answer(chunked)[0] == 429
        finally:
            for sock in socks:
                sock.close()
        assert grown < 24 * 2**20, grown  # 8 MB of bodies (and socket buffers), not 40
        time.sleep(0.3)  # the held requests see their clients go and give their bytes back
        assert httpx.post(f"{server.url}/rerank", json=BODIES["/rerank"], timeout=5).status_code == 200


def test_bad_json_bodies_do_not_block_the_event_loop() -> None:
    """Explaining a refused 2 MB body took 1.25 s on the event loop: /health waited behind it."""
    body = ('{"query": "q", "documents": [' + ", ".join(['"a b"'] * 280_000) + ", NaN]}").encode()
    assert 1_900_000 < len(body) < 2_000_000
    stop = threading.Event()
    with running_server() as server:

        def hammer(_: int) -> list[int]:
            statuses = []
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for _ in range(50):
                    if stop.is_set():
                        break
                    statuses.append(client.post("/v1/rerank", content=body).status_code)
            return statuses

        with ThreadPoolExecutor(4) as pool:
            hammers = [pool.submit(hammer, i) for i in range(4)]
            time.sleep(0.5)
            latencies = []
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for _ in range(20):
                    started = time.monotonic()
                    assert client.get("/health").status_code == 200
                    latencies.append(time.monotonic() - started)
                    time.sleep(0.05)
            stop.set()
            statuses = [status for future in hammers for status in future.result(timeout=60)]
    assert statuses and set(statuses) == {400}
    assert statuses.count(400) >= 4
    assert statuses  # the hammers ran while /health was timed
    assert statistics.median(latencies) < 0.25, latencies


def test_a_client_gone_from_the_queue_frees_its_place_at_once(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    args = ("--max-concurrency", "1", "--max-queue", "1", "--delay", "1.5", "--calls-file", str(calls))
    with running_server(*args) as server:

        def post(query: str) -> int:
            return httpx.post(f"{server.url}/rerank", json={"query": query, "texts": ["a"]}, timeout=10).status_code

        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, "first")
            wait_for_calls(calls, 1)
            payload = json.dumps({"query": "gone", "texts": ["a"]}).encode()
            sock = raw_request(server.port, "/rerank", [f"Content-Length: {len(payload)}"])
            sock.sendall(payload)
            time.sleep(0.2)  # queued: the one queue place is taken
            assert post("refused") == 429
            sock.close()
            time.sleep(0.2)
            third = pool.submit(post, "third")  # the place is free again, before the slot is
            assert first.result(timeout=10) == 200
            assert third.result(timeout=10) == 200
    assert calls.read_text().split() == ["first", "third"]


def test_shutdown_past_the_grace_period_answers_503_in_the_route_shape(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    args = ("--graceful-timeout", "1", "--delay", "4", "--calls-file", str(calls))
    with running_server(*args) as server:
        with ThreadPoolExecutor(2) as pool:
            tei = pool.submit(httpx.post, f"{server.url}/rerank", json=BODIES["/rerank"], timeout=30)
            cf_path = "/ai/run/@cf/baai/bge-reranker-base"
            cf = pool.submit(httpx.post, f"{server.url}{cf_path}", json=BODIES[cf_path], timeout=30)
            wait_for_calls(calls, 2)
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            tei_response, cf_response = tei.result(timeout=30), cf.result(timeout=30)
            answered = time.monotonic() - started
        code = server.process.wait(timeout=30)
        assert server.process.stdout is not None
        output = server.process.stdout.read()
    message = "the server is shutting down; the ranking did not finish"
    assert (tei_response.status_code, tei_response.json()) == (503, {"error": message, "error_type": "unhealthy"})
    assert cf_response.status_code == 503
    assert error_message(cf_path, cf_response.json()) == message
    assert answered < 3.5  # at the grace period, not when the ranking ends
    assert code == 0
    assert "Traceback" not in output and "CancelledError" not in output, output


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_mixed_load_with_bad_and_leaving_clients() -> None:
    """32 clients for a bounded time: good requests, bad JSON, wrong methods, oversized bodies,
    clients that leave mid-body or while queued. No 500, every answer in the route's shape, and
    the server's memory flat after warm-up."""
    duration, warm_up = 8.0, 2.0
    args = ("--max-concurrency", "2", "--max-queue", "8", "--delay", "0.01", "--max-body-bytes", "200000",
            "--body-timeout", "1", "--queue-timeout", "5")
    with running_server(*args) as server:
        start = time.monotonic()
        failures: list[str] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        rss: list[int] = []

        def client(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                for n in range(10_000):
                    if time.monotonic() - start > duration:
                        return
                    path = list(BODIES)[(i + n) % len(BODIES)]
                    kind = (i * 7 + n) % 6
                    if kind == 4:  # leaves mid-body
                        with raw_request(server.port, path, ["Content-Length: 1000"]) as sock:
                            sock.sendall(b"{" * 10)
                        continue
                    if kind == 5:  # leaves while its request waits or runs
                        payload = json.dumps(BODIES[path]).encode()
                        with raw_request(server.port, path, [f"Content-Length: {len(payload)}"]) as sock:
                            sock.sendall(payload)
                        continue
                    if kind == 1:
                        response = http.post(path, content=b'{"query": NaN}' + b" " * 100_000)
                    elif kind == 2:
                        response = http.get(path)
                    elif kind == 3:
                        response = http.post(path, content=b" " * 300_000)
                    else:
                        response = http.post(path, json=BODIES[path])
                    with lock:
                        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                        if response.status_code >= 500 and response.status_code != 503:
                            failures.append(f"{path} {response.status_code} {response.text[:200]}")
                        elif response.status_code >= 400:
                            try:
                                error_message(path, response.json())
                            except (AssertionError, ValueError) as err:
                                failures.append(f"{path} {response.status_code} {response.text[:200]} {err!r}")

        def sample() -> None:
            time.sleep(warm_up)
            rss.append(rss_bytes(server.process.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(client, range(32)))
        sampler.join()
        rss.append(rss_bytes(server.process.pid))
        assert server.stop() == 0
        assert server.process.stdout is not None
        output = server.process.stdout.read()
    print(f"\nmixed load: {statuses}, RSS {rss[0] / 2**20:.0f} -> {rss[1] / 2**20:.0f} MiB")
    assert failures == []
    assert statuses.get(200, 0) > 50 and statuses.get(400, 0) > 50 and statuses.get(405, 0) > 50
    assert statuses.get(413, 0) > 50
    assert 500 not in statuses
    assert rss[1] - rss[0] < 16 * 2**20, rss
    assert "Traceback" not in output, output[-2000:]
