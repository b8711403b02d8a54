"""MCP servers mounted inside the ASGI application (official ``mcp`` SDK, streamable HTTP).

Interface (what an app needs)
-----------------------------
``register_mcp_server(path, build, scope)``
    ``path`` is where the server answers, ``"/mcp/<name>/"`` (``"<name>"`` alone is accepted and
    means the same). ``build`` is a zero-argument callable returning an
    ``mcp.server.mcpserver.MCPServer``; it is called once, when the web process starts. ``scope``
    is the API-key scope a caller needs (``apps.security.scopes``), e.g. ``ADMIN`` or ``LORE``.
    Register from the app's own ``mcp.py`` module: every installed app's ``mcp`` module is
    imported at start-up (like ``admin.py``), so ``apps/story/mcp.py`` calling
    ``register_mcp_server("/mcp/storyteller/", build_storyteller, LORE)`` at import is enough.
    Calling it from ``AppConfig.ready()`` works too. Registering a path again replaces it.

``mcp_caller(ctx)`` inside a tool (``ctx: Context`` parameter) → :class:`McpCaller`
    Who is calling: the API key, the person accountable for it (the key's owner), its scopes,
    the model tier the call is made for (``None`` for a person's or an integration's own call),
    and the HTTP request id. ``current_mcp_caller()`` gives the same without a ``ctx``.

``await in_db_thread(fn, *args)``
    Run ORM code from an (async) tool in Django's database thread.

``require_tool_access(caller, access)`` → the caller, or raises ``ToolError``
    The tier rule: Gold calls no tool, Silver only ``"read"`` tools, Bronze ``"read"`` and
    ``"request"`` tools (ones that *ask* for a change: change requests, queued events, jobs).
    Callers with no tier (people, integrations) may call every tool their scope opens.

A tool, end to end::

    def build_storyteller() -> MCPServer[Any]:
        server: MCPServer[Any] = MCPServer("bodybroker-storyteller")

        @server.tool()
        async def search_lore(query: str, *, ctx: Context) -> dict[str, Any]:
            caller = require_tool_access(mcp_caller(ctx), "read")
            return await in_db_thread(selectors.search, query, actor=caller.label)

        return server

    register_mcp_server("/mcp/storyteller/", build_storyteller, LORE)

Tests: ``tests/support/live_asgi.py`` has ``call_tools(url, raw_key, [(tool, args)], tier=…)``
and ``list_tools`` (the SDK's streamable-HTTP client) to use against the suite's
``live_server_url``.

How a call arrives
------------------
``McpRouter`` wraps the Django/Channels application in ``bodybroker/asgi.py``: an HTTP request
to ``/mcp/<name>`` or ``/mcp/<name>/...`` goes to that server's streamable-HTTP session manager,
everything else to Django. Before a server sees a request: the ``Host`` must be one of
``ALLOWED_HOSTS``; ``Authorization: Bearer <api key>`` (or ``X-API-Key``) must be an active key
(401 otherwise); the key must hold the server's scope (403). Errors use the API's one JSON shape
(``{"error": {"type", "message"}}``). A call made for a model tier says so with the
``X-Bodybroker-Tier: gold|silver|bronze`` header, which the router sets when it relays a
model's tool calls (models never hold keys, so they cannot leave it out); it can only narrow
what a key may do, never widen it.

Servers run stateless with JSON responses: every request stands alone, so any web replica
behind a load balancer can answer it. The SDK's session managers need a running task group,
which the ASGI ``lifespan`` provides: ``McpRouter`` answers ``lifespan`` itself (Channels'
``ProtocolTypeRouter`` does not), so serve with lifespan on (uvicorn's default; ``make run``
passes ``--lifespan on``). Without it, ``/mcp/`` answers 503 and says why.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.module_loading import autodiscover_modules
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TIERS = ("gold", "silver", "bronze")
TIER_HEADER = "x-bodybroker-tier"
REQUEST_ID_HEADER = "x-request-id"
SCOPE_KEY = "bodybroker.mcp_caller"

P = ParamSpec("P")
R = TypeVar("R")

ToolAccess = Literal["read", "request"]
# What each model tier may call. A caller with no tier (a person, an integration) is not limited.
TIER_TOOL_ACCESS: dict[str, frozenset[str]] = {
    "gold": frozenset(),
    "silver": frozenset({"read"}),
    "bronze": frozenset({"read", "request"}),
}


@dataclass(frozen=True)
class McpCaller:
    """Who is calling an MCP tool: the key, its owner, its scopes, and the tier it calls for."""

    key: Any  # apps.security.models.ApiKey (typed loosely: no model import at module load)
    owner: Any  # the key's owner (a User) or None
    scopes: frozenset[str]
    tier: str | None
    request_id: str
    server: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        name = f"key:{self.key.name}" if self.key is not None else "anonymous"
        return f"{self.tier} via {name}" if self.tier else name


@dataclass
class _Registration:
    name: str
    build: Callable[[], MCPServer[Any]]
    scope: str
    server: MCPServer[Any] | None = None
    manager: StreamableHTTPSessionManager | None = None


_registry: dict[str, _Registration] = {}
_current_caller: contextvars.ContextVar[McpCaller | None] = contextvars.ContextVar(
    "bodybroker_mcp_caller", default=None
)


def _server_name(path: str) -> str:
    name = path.strip("/")
    if name.startswith("mcp/"):
        name = name[4:]
    if not name or "/" in name:
        raise ValueError(f"an MCP server path is '/mcp/<name>/', got {path!r}")
    return name


def register_mcp_server(path: str, build: Callable[[], MCPServer[Any]], scope: str) -> None:
    """Mount the server ``build()`` returns at ``/mcp/<name>/``, open to keys holding ``scope``."""
    from apps.security.scopes import ALL_SCOPES

    if scope not in ALL_SCOPES:
        raise ValueError(f"unknown scope {scope!r} for MCP server {path!r}")
    name = _server_name(path)
    _registry[name] = _Registration(name=name, build=build, scope=scope)


def registered_mcp_servers() -> dict[str, str]:
    """``{name: scope}`` of every registered server (after the apps' ``mcp`` modules load)."""
    autodiscover_modules("mcp")
    return {name: reg.scope for name, reg in _registry.items()}


def mcp_caller(ctx: Context[Any, Any] | None = None) -> McpCaller:
    """The caller of the tool being run. Raises ``ToolError`` outside an authenticated call."""
    caller = None
    if ctx is not None:
        try:
            request = ctx.request_context.request
        except ValueError:
            request = None
        scope = getattr(request, "scope", None)
        if isinstance(scope, dict):
            caller = scope.get(SCOPE_KEY)
    if caller is None:
        caller = _current_caller.get()
    if not isinstance(caller, McpCaller):
        raise ToolError("this tool needs an authenticated caller")
    return caller


def current_mcp_caller() -> McpCaller | None:
    """The caller of the MCP request being served in this context, if any."""
    return _current_caller.get()


def require_tool_access(caller: McpCaller, access: ToolAccess) -> McpCaller:
    """Enforce the tier rule for a tool of kind ``access`` ("read" or "request")."""
    if caller.tier is not None and access not in TIER_TOOL_ACCESS[caller.tier]:
        allowed = sorted(TIER_TOOL_ACCESS[caller.tier]) or ["none"]
        raise ToolError(
            f"the {caller.tier} tier may not call {access} tools (it may call: "
            f"{', '.join(allowed)})"
        )
    return caller


# --- the ASGI side ---------------------------------------------------------------------------


def _headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


async def _send_error(
    send: Send, status: int, type_: str, message: str, extra_headers: list[tuple[bytes, bytes]]
) -> None:
    from apps.security.errors import error_body

    body = json.dumps(error_body(message, type_=type_)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def in_db_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` (which may touch the database) in Django's thread, from a tool or the router.
    Closes stale connections around it, as a request would."""
    result: R = await database_sync_to_async(fn)(*args, **kwargs)
    return result


def _authenticate(raw_key: str) -> tuple[Any, Any]:
    from apps.security.selectors import api_key_authenticate

    key = api_key_authenticate(raw_key)
    if key is None:
        return None, None
    owner = key.owner  # loaded here, in the thread that may touch the database
    return key, owner


class McpRouter:
    """Sends ``/mcp/<name>`` HTTP requests to the registered MCP servers, the rest to ``inner``.

    Also answers the ASGI ``lifespan`` protocol for the whole application: start-up runs each
    of ``on_startup`` on the event loop's thread (once per loop; a hook that returns an
    awaitable is awaited, so it can wait on a worker thread), then builds every registered
    server and runs its session manager; shutdown stops them. The server accepts connections
    only once start-up is complete.
    """

    prefix = "/mcp/"

    def __init__(
        self, inner: ASGIApp, on_startup: Sequence[Callable[[], Awaitable[None] | None]] = ()
    ) -> None:
        self.inner = inner
        self.on_startup = tuple(on_startup)
        self._running: dict[asyncio.AbstractEventLoop, tuple[dict[str, _Registration], Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if scope["type"] == "http" and (path == self.prefix[:-1] or path.startswith(self.prefix)):
            await self._serve_mcp(scope, receive, send)
            return
        await self.inner(scope, receive, send)

    async def startup(self) -> None:
        """Build every registered server and start its session manager on this event loop.

        Each event loop that runs a lifespan gets its own servers (the SDK's session managers
        belong to one loop), so two servers in one process — uvicorns in threads, in tests —
        do not share them.
        """
        loop = asyncio.get_running_loop()
        if loop in self._running:
            return
        for hook in self.on_startup:
            pending = hook()
            if pending is not None:
                await pending
        autodiscover_modules("mcp")
        stack = AsyncExitStack()
        await stack.__aenter__()
        servers: dict[str, _Registration] = {}
        try:
            for name, reg in _registry.items():
                server = reg.build()
                # Host checks happen here against ALLOWED_HOSTS (the SDK's own list cannot say
                # ".example.com"), so the SDK's DNS-rebinding check is off.
                server.streamable_http_app(
                    stateless_http=True,
                    json_response=True,
                    transport_security=TransportSecuritySettings(
                        enable_dns_rebinding_protection=False
                    ),
                )
                manager = server.session_manager
                await stack.enter_async_context(manager.run())
                servers[name] = _Registration(
                    name=name, build=reg.build, scope=reg.scope, server=server, manager=manager
                )
        except BaseException:
            await stack.aclose()
            raise
        self._running[loop] = (servers, stack)
        logger.info("MCP servers running: %s", ", ".join(sorted(servers)) or "none")

    async def shutdown(self) -> None:
        running = self._running.pop(asyncio.get_running_loop(), None)
        if running is not None:
            await running[1].aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("MCP servers failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _serve_mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        send = _counting_errors(send)
        headers = _headers(scope)
        request_id = headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        echo = [(b"x-request-id", request_id.encode("latin-1"))]
        domain, _port = split_domain_port(headers.get("host", ""))
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            await _send_error(send, 400, "invalid_request", "host not allowed", echo)
            return
        name = scope["path"][len(self.prefix) :].split("/", 1)[0]
        if name not in _registry:
            await _send_error(send, 404, "not_found", f"no MCP server at /mcp/{name}/", echo)
            return
        running = self._running.get(asyncio.get_running_loop())
        reg = running[0].get(name) if running is not None else None
        if reg is None or reg.manager is None:
            await _send_error(
                send,
                503,
                "unavailable",
                "MCP servers start with the ASGI lifespan; serve with lifespan on",
                echo,
            )
            return
        from apps.security.selectors import raw_key_from_headers

        raw = raw_key_from_headers(headers)
        challenge = [(b"www-authenticate", b'Bearer realm="bodybroker"'), *echo]
        if not raw:
            await _send_error(
                send, 401, "authentication_required", "send Authorization: Bearer <key>", challenge
            )
            return
        key, owner = await in_db_thread(_authenticate, raw)
        if key is None:
            await _send_error(
                send, 401, "authentication_required", "invalid or revoked API key", challenge
            )
            return
        if reg.scope not in key.scopes:
            await _send_error(
                send,
                403,
                "permission_denied",
                f"the /mcp/{name}/ server needs the '{reg.scope}' scope",
                echo,
            )
            return
        tier = headers.get(TIER_HEADER, "").strip().lower() or None
        if tier is not None and tier not in TIERS:
            await _send_error(
                send,
                400,
                "invalid_request",
                f"X-Bodybroker-Tier must be one of {', '.join(TIERS)}",
                echo,
            )
            return
        caller = McpCaller(
            key=key,
            owner=owner,
            scopes=frozenset(key.scopes),
            tier=tier,
            request_id=request_id,
            server=name,
        )
        scope = dict(scope, **{SCOPE_KEY: caller})
        token = _current_caller.set(caller)
        try:
            await reg.manager.handle_request(scope, receive, _with_headers(send, echo))
        finally:
            _current_caller.reset(token)


def _counting_errors(send: Send) -> Send:
    """``send``, counting an error answer in the error metric as the other doors do (whether
    this module refused the request or the MCP server did)."""
    from apps.router import metrics

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and message.get("status", 200) >= 400:
            metrics.ERRORS.labels("none", f"http_{message['status']}").inc()
        await send(message)

    return wrapped


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message, headers=[*message.get("headers", []), *extra])
        await send(message)

    return wrapped
