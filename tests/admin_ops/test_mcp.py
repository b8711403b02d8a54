"""The Admin and Game State MCP servers, through the SDK's own streamable-HTTP client against a
real uvicorn serving the whole application (lifespan on)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from django.contrib.auth.models import User
from moto import mock_aws

from apps.admin_ops.models import AdminReport, AuditEvent, ChangeRequest
from apps.npcs.models import GameStateEvent, NpcState
from apps.npcs.services import game_state_apply
from apps.router.models import Job
from apps.security.scopes import ADMIN, LORE
from apps.security.services import api_key_create
from tests.support.live_asgi import call_tools, list_tools

pytestmark = pytest.mark.django_db(transaction=True)


def text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


@pytest.fixture
def game_state(live_server_url: str) -> str:
    return f"{live_server_url}/mcp/game_state/"


@pytest.fixture
def admin_mcp(live_server_url: str) -> str:
    return f"{live_server_url}/mcp/admin/"


# --- the door --------------------------------------------------------------------------------


def test_both_servers_list_their_tools(
    game_state: str, admin_mcp: str, make_key: Callable[..., str]
) -> None:
    key = make_key(ADMIN)
    assert sorted(list_tools(game_state, key)) == [
        "get_npc_state",
        "get_world_state",
        "queue_state_change",
    ]
    assert sorted(list_tools(admin_mcp, key)) == [
        "generate_admin_report",
        "query_aws_resource",
        "request_change",
    ]


def test_no_key_a_bad_key_or_a_missing_scope_is_refused_in_json(
    game_state: str, live_server_url: str, make_key: Callable[..., str]
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    missing = httpx.post(game_state, json=body, headers=headers)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["type"] == "authentication_required"
    wrong = httpx.post(game_state, json=body, headers={**headers, "Authorization": "Bearer bb_x_y"})
    assert wrong.status_code == 401
    lore_only = httpx.post(
        game_state, json=body, headers={**headers, "Authorization": f"Bearer {make_key(LORE)}"}
    )
    assert lore_only.status_code == 403
    assert lore_only.json()["error"] == {
        "type": "permission_denied",
        "message": "the /mcp/game_state/ server needs the 'admin' scope",
    }
    unknown = httpx.post(f"{live_server_url}/mcp/nothing/", json=body, headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found"
    bad_tier = httpx.post(
        game_state,
        json=body,
        headers={**headers, "Authorization": f"Bearer {make_key(ADMIN)}", "X-Bodybroker-Tier": "x"},
    )
    assert bad_tier.status_code == 400


def test_a_revoked_key_stops_working_at_once(game_state: str) -> None:
    from apps.security.services import api_key_revoke

    key, raw = api_key_create(name="soon gone", scopes=[ADMIN])
    assert list_tools(game_state, raw)
    api_key_revoke(key=key)
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in its own error
        list_tools(game_state, raw)


def test_django_still_answers_everything_else(live_server_url: str) -> None:
    health = httpx.get(f"{live_server_url}/health/", timeout=30)
    assert health.status_code in (200, 503) and health.headers["content-type"].startswith(
        "application/json"
    )
    assert httpx.get(f"{live_server_url}/approvals/").status_code == 302  # sign-in redirect


# --- game state ------------------------------------------------------------------------------


def test_reading_npc_and_world_state_returns_the_latest_snapshot(
    game_state: str, make_key: Callable[..., str]
) -> None:
    game_state_apply(subject="npc:read-1", changes={"set": {"mood": "wary"}}, by="test")
    game_state_apply(subject="world:read-1", changes={"set": {"fog": "thick"}}, by="test")
    npc, world, nobody = call_tools(
        game_state,
        make_key(ADMIN),
        [
            ("get_npc_state", {"npc_id": "read-1"}),
            ("get_world_state", {"region": "read-1"}),
            ("get_npc_state", {"npc_id": "never-written"}),
        ],
    )
    assert not npc.is_error, text(npc)
    assert npc.structured_content["state"] == {"mood": "wary"}
    assert npc.structured_content["version"] == 1
    assert world.structured_content["state"] == {"fog": "thick"}
    assert nobody.structured_content["exists"] is False


def test_reads_are_cached_briefly_and_dropped_when_a_write_commits(
    game_state: str, make_key: Callable[..., str]
) -> None:
    key = make_key(ADMIN)
    game_state_apply(subject="npc:cache-1", changes={"set": {"mood": "calm"}}, by="test")
    first, second = call_tools(game_state, key, [("get_npc_state", {"npc_id": "cache-1"})] * 2)
    assert first.structured_content["cached"] is False
    assert second.structured_content["cached"] is True
    NpcState.objects.filter(npc_id="cache-1").update(state={"mood": "sneaky"})  # behind its back
    [stale] = call_tools(game_state, key, [("get_npc_state", {"npc_id": "cache-1"})])
    assert stale.structured_content["state"] == {"mood": "calm"}  # still the cached snapshot
    game_state_apply(subject="npc:cache-1", changes={"set": {"mood": "angry"}}, by="test")
    [fresh] = call_tools(game_state, key, [("get_npc_state", {"npc_id": "cache-1"})])
    assert fresh.structured_content["state"] == {"mood": "angry"}


def test_a_bad_npc_id_is_a_tool_error(game_state: str, make_key: Callable[..., str]) -> None:
    [result] = call_tools(game_state, make_key(ADMIN), [("get_npc_state", {"npc_id": "Bad Id"})])
    assert result.is_error and "lower-case slug" in text(result)


def test_queueing_a_write_publishes_an_event_and_opens_a_change_request_but_writes_nothing(
    game_state: str, make_key: Callable[..., str]
) -> None:
    [result] = call_tools(
        game_state,
        make_key(ADMIN),
        [
            (
                "queue_state_change",
                {
                    "subject": "npc:queue-1",
                    "changes": {"set": {"mood": "terrified"}},
                    "reason": "The player lit the pyre.",
                },
            )
        ],
        tier="bronze",
    )
    assert not result.is_error, text(result)
    out = result.structured_content
    change_request = ChangeRequest.objects.get(pk=out["change_request_id"])
    event = GameStateEvent.objects.get(pk=out["event_id"])
    assert change_request.kind == "game_state.write" and change_request.status == "pending"
    assert change_request.author_tier == "bronze"
    assert event.status == "pending" and event.change_request_id == change_request.id
    assert not NpcState.objects.filter(npc_id="queue-1").exists()  # never a direct write
    audit = AuditEvent.objects.get(action="mcp.tool_call")
    assert audit.target == "mcp:game_state/queue_state_change"
    assert audit.actor_tier == "bronze" and audit.actor_label.startswith("bronze via key:")


def test_queueing_a_hint_only_publishes_it(game_state: str, make_key: Callable[..., str]) -> None:
    [result] = call_tools(
        game_state,
        make_key(ADMIN),
        [
            (
                "queue_state_change",
                {
                    "subject": "world:hint-1",
                    "changes": {"set": {"distant_scream": True}},
                    "reason": "ambience",
                    "kind": "hint",
                },
            )
        ],
    )
    assert result.structured_content["status"] == "published"
    assert not ChangeRequest.objects.exists()


def test_bad_changes_are_tool_errors_and_leave_nothing_behind(
    game_state: str, make_key: Callable[..., str]
) -> None:
    [result] = call_tools(
        game_state,
        make_key(ADMIN),
        [("queue_state_change", {"subject": "npc:x", "changes": {"add": 1}, "reason": "r"})],
    )
    assert result.is_error and "unknown change fields: add" in text(result)
    assert not GameStateEvent.objects.exists() and not ChangeRequest.objects.exists()


# --- tier rules ------------------------------------------------------------------------------


def test_silver_may_read_but_not_queue_changes(
    game_state: str, make_key: Callable[..., str]
) -> None:
    read, write = call_tools(
        game_state,
        make_key(ADMIN),
        [
            ("get_world_state", {"region": "tier-1"}),
            (
                "queue_state_change",
                {"subject": "world:tier-1", "changes": {"set": {"a": 1}}, "reason": "r"},
            ),
        ],
        tier="silver",
    )
    assert not read.is_error
    assert write.is_error and "the silver tier may not call request tools" in text(write)
    assert not GameStateEvent.objects.exists()


def test_gold_calls_no_tool(game_state: str, make_key: Callable[..., str]) -> None:
    [result] = call_tools(
        game_state, make_key(ADMIN), [("get_npc_state", {"npc_id": "x"})], tier="gold"
    )
    assert result.is_error and "the gold tier may not call read tools" in text(result)


# --- admin -----------------------------------------------------------------------------------


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        sagemaker.create_model(
            ModelName="bronze-model",
            ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"},
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName="bronze-config",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "bronze-model",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.g4dn.12xlarge",
                }
            ],
        )
        sagemaker.create_endpoint(EndpointName="bronze", EndpointConfigName="bronze-config")
        yield sagemaker


def test_query_aws_resource_reads_through_boto3(
    admin_mcp: str, make_key: Callable[..., str], aws: Any
) -> None:
    described, listed, refused = call_tools(
        admin_mcp,
        make_key(ADMIN),
        [
            (
                "query_aws_resource",
                {
                    "service": "sagemaker",
                    "operation": "describe_endpoint",
                    "params": {"EndpointName": "bronze"},
                },
            ),
            ("query_aws_resource", {"service": "sagemaker", "operation": "list_endpoints"}),
            (
                "query_aws_resource",
                {
                    "service": "sagemaker",
                    "operation": "delete_endpoint",
                    "params": {"EndpointName": "bronze"},
                },
            ),
        ],
        tier="silver",  # a read: Silver may call it
    )
    assert not described.is_error, text(described)
    assert described.structured_content["EndpointName"] == "bronze"
    assert [e["EndpointName"] for e in listed.structured_content["Endpoints"]] == ["bronze"]
    assert refused.is_error and "read-only" in text(refused)
    assert aws.describe_endpoint(EndpointName="bronze")["EndpointName"] == "bronze"


def test_request_change_opens_a_pending_aws_action_that_runs_only_when_approved(
    admin_mcp: str, make_key: Callable[..., str], aws: Any, adam: User
) -> None:
    from apps.admin_ops.services import change_request_approve
    from apps.admin_ops.tasks import execute_change_request
    from apps.security.selectors import user_scopes

    [result] = call_tools(
        admin_mcp,
        make_key(ADMIN),
        [
            (
                "request_change",
                {
                    "kind": "admin.aws_action",
                    "target": "sagemaker:endpoint/bronze",
                    "payload": {
                        "action": "scale_endpoint",
                        "variant": "AllTraffic",
                        "desired_instance_count": 3,
                    },
                    "reason": "Friday night traffic.",
                },
            )
        ],
        tier="bronze",
    )
    assert not result.is_error, text(result)
    out = result.structured_content
    assert out["status"] == "pending"
    assert '-      "desired_instance_count": 1' in out["diff"]
    assert '+      "desired_instance_count": 3' in out["diff"]
    variant = aws.describe_endpoint(EndpointName="bronze")["ProductionVariants"][0]
    assert variant["DesiredInstanceCount"] == 1  # nothing happened yet
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(execute_change_request, "delay", lambda *a: None)
        change_request_approve(
            change_request_id=out["change_request_id"], user=adam, scopes=user_scopes(adam)
        )
    assert execute_change_request(out["change_request_id"]) == "executed"
    variant = aws.describe_endpoint(EndpointName="bronze")["ProductionVariants"][0]
    assert variant["DesiredInstanceCount"] == 3
    assert ChangeRequest.objects.get().executed_on_behalf_of == adam


def test_request_change_reports_bad_input_as_a_tool_error(
    admin_mcp: str, make_key: Callable[..., str]
) -> None:
    [result] = call_tools(
        admin_mcp,
        make_key(ADMIN),
        [
            (
                "request_change",
                {
                    "kind": "admin.aws_action",
                    "target": "sagemaker:endpoint/x",
                    "payload": {},
                    "reason": "r",
                },
            )
        ],
    )
    assert result.is_error and "payload: action must be 'scale_endpoint'" in text(result)


def test_silver_cannot_request_changes(admin_mcp: str, make_key: Callable[..., str]) -> None:
    [result] = call_tools(
        admin_mcp,
        make_key(ADMIN),
        [
            (
                "request_change",
                {"kind": "npc.update", "target": "npc:x", "payload": {}, "reason": "r"},
            )
        ],
        tier="silver",
    )
    assert result.is_error and not ChangeRequest.objects.exists()


def test_generate_admin_report_queues_a_bronze_job_and_the_report_downloads(
    admin_mcp: str, live_server_url: str, make_key: Callable[..., str]
) -> None:
    key = make_key(ADMIN)
    [result] = call_tools(admin_mcp, key, [("generate_admin_report", {"days": 7})], tier="bronze")
    assert not result.is_error, text(result)
    out = result.structured_content
    job = Job.objects.get(pk=out["job_id"])
    # queued, or already picked up by the suite's worker when one is running
    assert job.kind == "admin_report" and job.status in {"queued", "running", "succeeded"}
    assert "weekly operations report" in job.request["messages"][0]["content"]
    report = AdminReport.objects.get(pk=out["report_id"])
    assert report.metrics["change_requests"] == []
    Job.objects.filter(pk=job.pk).update(status="succeeded", result_text="All quiet. Too quiet.")
    download = httpx.get(
        f"{live_server_url}{out['download']}", headers={"Authorization": f"Bearer {key}"}
    )
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment;")
    assert "All quiet. Too quiet." in download.text
    assert AuditEvent.objects.filter(action="admin_report.request").exists()
    assert AuditEvent.objects.filter(action="job.submit", target=f"job:{job.id}").exists()
