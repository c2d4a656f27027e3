"""docs/reliability.md, goal G14: a real ``fastrerank serve`` process with a real (tiny) model under steady load on loopback.

8 concurrent clients send 10-document requests for a bounded time; every answer must be a 200
with the ranking a direct call gives, p99 latency under 100 ms, and the server's memory flat
after warm-up. Throughput is printed (run with -s), not asserted.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from .server_process import rss_bytes, running_server

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")]

CLIENTS = 8
DURATION_S = 30.0
WARM_UP_S = 5.0
DOCS = [f"document {i} about apple fruit and machine learning model search {i * 7}" for i in range(10)]


def _same_ranking(got: list[dict[str, float]], expected: list[dict[str, float]]) -> bool:
    return [row["index"] for row in got] == [row["index"] for row in expected] and bool(np.allclose(
        [row["relevance_score"] for row in got], [row["relevance_score"] for row in expected], atol=1e-6, rtol=0))


def test_steady_load_on_a_real_model(converted) -> None:  # type: ignore[no-untyped-def]
    from fastrerank import Reranker

    folder = str(converted("tiny", "int8"))
    expected = [{"index": item.index, "relevance_score": item.score} for item in Reranker(folder).rank("apple fruit", DOCS)]
    body = {"model": "BAAI/bge-reranker-v2-m3", "query": "apple fruit", "documents": DOCS}
    program = (sys.executable, "-m", "fastrerank", "serve", "--model", folder)
    with running_server(program=program) as server:
        # Drain the access log: a full pipe would block the server, not the test.
        log: list[str] = []
        assert server.process.stdout is not None
        drain = threading.Thread(target=lambda: log.extend(server.process.stdout), daemon=True)  # type: ignore[arg-type]
        drain.start()
        start = time.monotonic()
        deadline = start + DURATION_S
        latencies: list[tuple[float, float]] = []
        failures: list[str] = []
        lock = threading.Lock()
        rss_after_warm_up: list[int] = []

        def client(_: int) -> None:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                for _ in range(100_000):  # bounded in count as well as in time
                    if time.monotonic() > deadline:
                        return
                    sent = time.monotonic()
                    response = http.post("/v1/rerank", json=body)
                    elapsed = time.monotonic() - sent
                    with lock:
                        latencies.append((sent - start, elapsed))
                        # The command may run another CPU ISA (AVX-512): equal up to float32 rounding.
                        if response.status_code != 200 or not _same_ranking(response.json()["results"], expected):
                            failures.append(f"{response.status_code}: {response.text[:200]}")

        def sample_memory() -> None:
            time.sleep(WARM_UP_S)
            rss_after_warm_up.append(rss_bytes(server.process.pid))

        sampler = threading.Thread(target=sample_memory)
        sampler.start()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(client, range(CLIENTS)))
        sampler.join()
        rss_end = rss_bytes(server.process.pid)
        assert server.stop() == 0
        drain.join(timeout=10)
    assert not any("Traceback" in line for line in log)

    steady = np.array([elapsed for at, elapsed in latencies if at >= WARM_UP_S])
    p50, p99 = np.percentile(steady, [50, 99]) * 1000
    drift = rss_end / rss_after_warm_up[0] - 1
    print(f"\nG14: {len(latencies)} requests in {DURATION_S:.0f} s ({len(latencies) / DURATION_S:.0f} req/s), "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, RSS {rss_after_warm_up[0] / 2**20:.0f} -> {rss_end / 2**20:.0f} MiB "
          f"({drift:+.1%}), failures {len(failures)}")
    assert failures == []
    assert p99 < 100, f"p99 {p99:.1f} ms"
    assert drift < 0.10, f"RSS grew {drift:.1%}"
