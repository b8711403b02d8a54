"""The real ASGI application served by a real uvicorn in a thread, lifespan on, and a helper
that talks to its MCP servers through the SDK's own streamable-HTTP client.

Tests that use it need ``@pytest.mark.django_db(transaction=True)`` so the server's threads
see the rows a test writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from inference.process import free_port


@contextmanager
def serve_asgi() -> Iterator[str]:
    """Serve ``bodybroker.asgi:application`` on a free port; yields its base URL."""
    from bodybroker.asgi import application

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start (see the log above)")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def mcp_session(url: str, raw_key: str | None, tier: str | None = None) -> Client:
    headers = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}
    if tier:
        headers["X-Bodybroker-Tier"] = tier
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0))
    return Client(streamable_http_client(url, http_client=http))


def call_tools(
    url: str, raw_key: str, calls: list[tuple[str, dict[str, Any]]], tier: str | None = None
) -> list[Any]:
    """Open one MCP client, call each ``(tool, arguments)`` in turn, return the results."""

    async def run() -> list[Any]:
        results = []
        async with mcp_session(url, raw_key, tier) as client:
            for name, arguments in calls:
                results.append(await client.call_tool(name, arguments))
        return results

    return anyio.run(run)


def list_tools(url: str, raw_key: str, tier: str | None = None) -> list[str]:
    async def run() -> list[str]:
        async with mcp_session(url, raw_key, tier) as client:
            return [tool.name for tool in (await client.list_tools()).tools]

    return anyio.run(run)
