"""The Admin MCP server, ``/mcp/admin/`` (``admin`` scope).

- ``query_aws_resource`` (read): one allow-listed describe/list/get call through boto3.
- ``generate_admin_report`` (request): queue the weekly operations report as a Bronze job;
  returns where to download it.
- ``request_change`` (request): open a pending change request. It never executes anything.

Tier rule (``bodybroker.mcp``): Silver may call read tools only, Bronze read and request tools,
Gold none. Tools that write are audited with the calling key and tier.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from apps.admin_ops import aws, services
from apps.admin_ops.actors import Actor, actor_context
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


def caller_actor(caller: McpCaller) -> Actor:
    """The audit actor of an MCP call: the key, and the tier it called for."""
    return Actor(key=caller.key, tier=caller.tier or "")


def audit_tool_call(caller: McpCaller, tool: str, arguments: dict[str, Any], outcome: str) -> None:
    """Record a writing tool call (runs in a worker thread: it touches the database)."""
    with actor_context(actor=caller_actor(caller), request_id=caller.request_id):
        services.audit_record(
            action="mcp.tool_call",
            target=f"mcp:{caller.server}/{tool}",
            actor=caller_actor(caller),
            before=arguments,
            summary=outcome[:500],
        )


def build_admin_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(
        "bodybroker-admin",
        instructions="Operations tools for Body Broker admins: AWS reads, reports, change "
        "requests. Nothing here changes anything without a person's approval.",
    )

    @server.tool(annotations=READ_ONLY)
    async def query_aws_resource(
        service: str, operation: str, params: dict[str, Any] | None = None, *, ctx: Context
    ) -> dict[str, Any]:
        """Read-only AWS call: service (sagemaker, s3, cloudwatch) and an allow-listed
        describe/list/get operation in snake_case, with its boto3 parameters."""
        require_tool_access(mcp_caller(ctx), "read")
        try:
            aws.check_query(service, operation)
            return await in_db_thread(aws.aws_query, service, operation, params)
        except (ValueError, aws.AwsError) as exc:
            raise ToolError(str(exc)) from exc

    @server.tool(annotations=REQUESTS)
    async def generate_admin_report(days: int = 7, *, ctx: Context) -> dict[str, Any]:
        """Queue the operations report for the last ``days`` days (1–31) as a Bronze job.
        Returns the report id, the job id and the download path (ready once the job is done)."""
        caller = require_tool_access(mcp_caller(ctx), "request")
        if not 1 <= days <= 31:
            raise ToolError("days is from 1 to 31")

        def run() -> dict[str, Any]:
            with actor_context(actor=caller_actor(caller), request_id=caller.request_id):
                report = services.admin_report_request(actor=caller_actor(caller), days=days)
                result = {
                    "report_id": str(report.id),
                    "job_id": str(report.job_id),
                    "status": report.job.status,
                    "download": reverse("api-admin-report-download", args=[report.id]),
                }
                audit_tool_call(
                    caller, "generate_admin_report", {"days": days}, f"report {report.id}"
                )
                return result

        return await in_db_thread(run)

    @server.tool(annotations=REQUESTS)
    async def request_change(
        kind: str, target: str, payload: dict[str, Any], reason: str, *, ctx: Context
    ) -> dict[str, Any]:
        """Ask for a change (lore.publish, game_state.write, npc.update, admin.aws_action,
        security.write, adapter.deploy). Creates a pending change request with its diff;
        a person must approve it before anything happens."""
        caller = require_tool_access(mcp_caller(ctx), "request")
        return await in_db_thread(
            open_change_request, caller, "request_change", kind, target, payload, reason
        )

    return server


def open_change_request(
    caller: McpCaller, tool: str, kind: str, target: str, payload: dict[str, Any], reason: str
) -> dict[str, Any]:
    """Create the change request for a tool call and audit the call (worker thread)."""
    with actor_context(actor=caller_actor(caller), request_id=caller.request_id):
        try:
            change_request = services.change_request_create(
                kind=kind,
                target=target,
                payload=payload,
                reason=reason,
                actor=caller_actor(caller),
                scopes=caller.scopes,
            )
        except services.ChangeRequestError as exc:
            field = f"{exc.field}: " if exc.field else ""
            raise ToolError(f"{field}{exc.message}") from exc
        audit_tool_call(
            caller,
            tool,
            {"kind": kind, "target": target, "payload": payload},
            f"change request {change_request.id} opened",
        )
        return {
            "change_request_id": str(change_request.id),
            "status": change_request.status,
            "required_approvals": change_request.required_approvals,
            "expires_at": change_request.expires_at.isoformat(),
            "diff": change_request.diff,
            "page": reverse("approval-detail", args=[change_request.id]),
        }


register_mcp_server("/mcp/admin/", build_admin_server, ADMIN)
