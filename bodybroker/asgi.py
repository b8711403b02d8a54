"""ASGI entry point: HTTP to Django, websockets to the Channels routes (authenticated).

The event loop thread runs at a real-time priority where the OS allows (``bodybroker.realtime``).

``/v1/`` (the OpenAI-compatible door) is answered by ``apps.router.gateway`` before Django.

``/mcp/<name>/`` goes to the MCP servers and the ``lifespan`` protocol starts them
(``bodybroker.mcp.McpRouter`` wraps everything).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bodybroker.settings.base")
# Django must be set up before anything imports models (the websocket routes do).
django_asgi_app = get_asgi_application()

from asgiref.sync import sync_to_async  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import re_path  # noqa: E402

from apps.admin_ops.routing import websocket_urlpatterns as ops_websocket_urlpatterns  # noqa: E402
from apps.npcs.routing import websocket_urlpatterns  # noqa: E402
from apps.router.gateway import OpenAIGateway  # noqa: E402
from apps.router.routing import websocket_urlpatterns as job_websocket_urlpatterns  # noqa: E402
from apps.security.errors import error_body  # noqa: E402
from apps.security.websocket import ApiKeyOrSessionAuthStack  # noqa: E402
from bodybroker.mcp import McpRouter  # noqa: E402
from bodybroker.realtime import raise_event_loop_priority  # noqa: E402


async def unknown_socket(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """A websocket handshake to a path with no route: refused, not a server error. A 404 in
    the API's error shape where the server can answer a handshake with HTTP (the ASGI
    websocket denial-response extension), else a close before accepting (HTTP 403)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close"})
        return
    body = json.dumps(
        error_body(f"no websocket at {scope.get('path', '')!r}", type_="not_found")
    ).encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


def preload_models() -> Awaitable[None] | None:
    """Start-up hook: load the lore embedder and passages in a worker thread (the event loop
    stays free) before the server accepts its first connection, so no game socket, search or
    storyteller request waits for a model (``BODYBROKER_PRELOAD_MODELS``)."""
    if not settings.BODYBROKER_PRELOAD_MODELS:
        return None
    from apps.story.services import retrieval_preload

    return sync_to_async(retrieval_preload, thread_sensitive=False)()


# Outermost first: the OpenAI-compatible gateway answers /v1/ itself (its hot path skips every
# other layer), McpRouter answers /mcp/<name>/ and the lifespan protocol (whose start-up also
# raises the event loop thread's priority), and the rest is Django (HTTP) or Channels
# (websockets).
application = OpenAIGateway(
    McpRouter(
        ProtocolTypeRouter(
            {
                "http": django_asgi_app,
                "websocket": ApiKeyOrSessionAuthStack(
                    URLRouter(
                        [
                            *websocket_urlpatterns,
                            *ops_websocket_urlpatterns,
                            *job_websocket_urlpatterns,
                            # Last, for every other path. An ASGI app, as Channels routes
                            # to (Django's stubs know only HTTP views).
                            re_path(r"^", unknown_socket),  # type: ignore[arg-type]
                        ]
                    )
                ),
            }
        ),
        on_startup=[raise_event_loop_priority, preload_models],
    )
)

# Everything imported so far lives as long as the process. Moving it out of the collector's
# generations keeps full collections short, which keeps the gateway's tail latency down.
# (The lore embedder, loaded at start-up, is frozen the same way once loaded.)
gc.freeze()
# Game sockets allocate a few dicts per NPC per frame: with the default 700, the young
# generation was collected many times a second under `make bench-npcs` (docs/npcs.md).
gc.set_threshold(20_000, 20, 20)
# Worker threads (database reads, lore retrieval, the lore embedder's load where start-up
# does not preload it) hold the GIL for the interpreter's switch interval, 5 ms by
# default, each time the event loop wants it back. A shorter interval hands it back sooner,
# which shortens game sockets' round trips while the embedder loads (docs/npcs.md).
GIL_SWITCH_INTERVAL_S = 0.001
sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
