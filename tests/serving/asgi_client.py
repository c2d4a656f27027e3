"""Calling an ASGI app in-process from synchronous tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def run_with_client(app: Any, work: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run ``work(client)`` against ``app`` on a fresh event loop."""

    async def main() -> T:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fastrerank.test") as client:
            return await work(client)

    return asyncio.run(main())


def request(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to ``app``."""

    async def work(client: httpx.AsyncClient) -> httpx.Response:
        return await client.request(method, path, **kwargs)

    return run_with_client(app, work)
