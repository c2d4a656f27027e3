"""Prometheus metrics of one app, in a registry of its own.

Never the process's default registry: the library runs inside other people's processes, which
may have their own metrics (or several apps). ``prometheus_client`` comes with the ``server``
extra; without it the app simply has no ``/metrics`` route and counts nothing.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Metrics", "make_metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """What the app counts (the ``fastrerank_`` prefix names every metric)."""

    def __init__(self, *, queue_depth: Callable[[], float], in_flight: Callable[[], float],
                 body_bytes: Callable[[], float]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fastrerank_requests", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.request_seconds = Histogram(
            "fastrerank_request_duration_seconds", "Time from the request's head to its response",
            ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "fastrerank_inference_duration_seconds", "Time a ranking held a slot (tokenizing and scoring)",
            ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.documents = Counter(
            "fastrerank_documents", "Documents ranked", ["model"], registry=self.registry
        )
        self.tokens = Counter(
            "fastrerank_tokens", "Tokens run through the model", ["model"], registry=self.registry
        )
        gauges: list[tuple[str, str, Callable[[], float]]] = [
            ("fastrerank_queue_depth", "Requests waiting for a ranking slot", queue_depth),
            ("fastrerank_rankings_in_flight", "Rankings holding a slot", in_flight),
            ("fastrerank_request_body_bytes_in_flight", "Bytes of request bodies held", body_bytes),
        ]
        for name, documentation, read in gauges:
            Gauge(name, documentation, registry=self.registry).set_function(read)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def observe_ranking(self, model: str, seconds: float, documents: int, tokens: int) -> None:
        """Count one ranking."""
        self.inference_seconds.labels(model).observe(seconds)
        self.documents.labels(model).inc(documents)
        self.tokens.labels(model).inc(tokens)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _NoMetrics:
    """Counts nothing: ``prometheus_client`` is not installed."""

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        pass

    def observe_ranking(self, model: str, seconds: float, documents: int, tokens: int) -> None:
        pass


def make_metrics(*, queue_depth: Callable[[], float], in_flight: Callable[[], float],
                 body_bytes: Callable[[], float]) -> Metrics | _NoMetrics:
    """:class:`Metrics` when ``prometheus_client`` is installed, else a stand-in counting nothing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return _NoMetrics()
    return Metrics(queue_depth=queue_depth, in_flight=in_flight, body_bytes=body_bytes)
