"""The Game State MCP server, ``/mcp/game_state/`` (``admin`` scope).

- ``get_npc_state`` / ``get_world_state`` (read, cached for a few seconds).
- ``queue_state_change`` (request): publishes the change as an event on the ``game_state``
  group and keeps it; a ``write`` also opens a ``game_state.write`` change request, applied
  only once a person approves it. Never a direct write.

Tier rule (``bodybroker.mcp``): Silver may read, Bronze may also queue changes, Gold nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from django.db import transaction
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from apps.npcs import selectors, services
from apps.security.scopes import ADMIN
from bodybroker.mcp import (
    McpCaller,
    in_db_thread,
    mcp_caller,
    register_mcp_server,
    require_tool_access,
)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
REQUESTS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)


def _snapshot(subject: str) -> dict[str, Any]:
    try:
        return selectors.game_state_snapshot(subject)
    except selectors.BadSubjectError as exc:
        raise ToolError(str(exc)) from exc


def queue_change(
    caller: McpCaller, subject: str, changes: dict[str, Any], kind: str, reason: str
) -> dict[str, Any]:
    """Persist and publish the event; for a write, open its change request (worker thread)."""
    from apps.admin_ops.mcp import audit_tool_call, caller_actor, open_change_request

    with transaction.atomic():
        try:
            event = services.game_state_event_queue(
                subject=subject,
                kind=kind,
                changes=changes,
                reason=reason,
                source=caller_actor(caller).label,
            )
        except ValueError as exc:
            raise ToolError(str(exc)) from exc
        result: dict[str, Any] = {"event_id": str(event.id), "status": event.status}
        if kind == "write":
            opened = open_change_request(
                caller, "queue_state_change", "game_state.write", subject, event.changes, reason
            )
            services.game_state_event_link(
                event=event, change_request_id=opened["change_request_id"]
            )
            result.update(opened)
        else:
            audit_tool_call(
                caller,
                "queue_state_change",
                {"subject": subject, "changes": changes, "kind": kind},
                f"hint event {event.id} published",
            )
    return result


def build_game_state_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(
        "bodybroker-game-state",
        instructions="Read NPC and world state; queue state changes. Writes wait for a "
        "person's approval and are never applied directly.",
    )

    @server.tool(annotations=READ_ONLY)
    async def get_npc_state(npc_id: str, *, ctx: Context) -> dict[str, Any]:
        """The latest state snapshot of one NPC (``{}`` and ``exists: false`` if none yet)."""
        require_tool_access(mcp_caller(ctx), "read")
        return await in_db_thread(_snapshot, f"npc:{npc_id}")

    @server.tool(annotations=READ_ONLY)
    async def get_world_state(region: str, *, ctx: Context) -> dict[str, Any]:
        """The state of one world region."""
        require_tool_access(mcp_caller(ctx), "read")
        return await in_db_thread(_snapshot, f"world:{region}")

    @server.tool(annotations=REQUESTS)
    async def queue_state_change(
        subject: str,
        changes: dict[str, Any],
        reason: str,
        kind: Literal["write", "hint"] = "write",
        *,
        ctx: Context,
    ) -> dict[str, Any]:
        """Queue a change to ``npc:<id>`` or ``world:<region>``: ``changes`` is
        ``{"set": {...}, "unset": [...]}``. A ``write`` becomes a change request that a person
        approves; a ``hint`` is only published to game clients."""
        caller = require_tool_access(mcp_caller(ctx), "request")
        if not reason.strip():
            raise ToolError("say why the state should change")
        return await in_db_thread(queue_change, caller, subject, changes, kind, reason)

    return server


register_mcp_server("/mcp/game_state/", build_game_state_server, ADMIN)
