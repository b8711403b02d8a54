"""AWS through boto3: read-only queries for the admin MCP, and the ``admin.aws_action`` kind.

Queries are limited to an allow-list of describe/list/get operations. Actions (for now: scaling
a SageMaker endpoint variant) only ever run as approved change requests. Region and endpoint
come from settings (``BODYBROKER_AWS_REGION``, ``BODYBROKER_AWS_ENDPOINT_URL``); credentials
from boto3's own chain. Tests run against moto.
"""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from django.conf import settings

# service → operations a query may call: read-only by construction.
READ_OPERATIONS: dict[str, frozenset[str]] = {
    "sagemaker": frozenset(
        {
            "describe_endpoint",
            "describe_endpoint_config",
            "describe_model",
            "list_endpoints",
            "list_endpoint_configs",
            "list_models",
        }
    ),
    "s3": frozenset(
        {"list_buckets", "list_objects_v2", "get_bucket_location", "get_bucket_tagging"}
    ),
    "cloudwatch": frozenset({"describe_alarms", "list_metrics", "get_metric_statistics"}),
}
ENDPOINT_TARGET = re.compile(r"^sagemaker:endpoint/([A-Za-z0-9](?:-*[A-Za-z0-9]){0,62})$")
MAX_INSTANCES = 20


class AwsError(Exception):
    """An AWS call that failed, with the service's own message."""


def aws_client(service: str) -> Any:
    """A boto3 client with bounded timeouts and retries, in the configured region."""
    return boto3.session.Session().client(
        service,
        region_name=settings.BODYBROKER_AWS_REGION,
        endpoint_url=settings.BODYBROKER_AWS_ENDPOINT_URL,
        config=Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3}),
    )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def check_query(service: str, operation: str) -> None:
    """Raise ValueError unless ``service.operation`` is on the read-only allow-list."""
    if service not in READ_OPERATIONS:
        raise ValueError(f"service must be one of {', '.join(sorted(READ_OPERATIONS))}")
    if operation not in READ_OPERATIONS[service]:
        allowed = ", ".join(sorted(READ_OPERATIONS[service]))
        raise ValueError(f"{service} operations allowed (read-only): {allowed}")


def aws_query(service: str, operation: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call one read-only operation and return its response as JSON-able data."""
    check_query(service, operation)
    client = aws_client(service)
    try:
        response = getattr(client, operation)(**(params or {}))
    except ParamValidationError as exc:
        raise ValueError(str(exc)) from exc
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(str(exc)) from exc
    response.pop("ResponseMetadata", None)
    return dict(_jsonable(response))


# --- admin.aws_action -------------------------------------------------------------------------


def _endpoint_name(target: str) -> str:
    match = ENDPOINT_TARGET.match(target)
    if match is None:
        raise ValueError("the target is sagemaker:endpoint/<endpoint name>")
    return match.group(1)


def validate_action(target: str, payload: dict[str, Any]) -> None:
    """``{"action": "scale_endpoint", "variant": str, "desired_instance_count": 0..20}``."""
    _endpoint_name(target)
    if payload.get("action") != "scale_endpoint":
        raise ValueError("action must be 'scale_endpoint'")
    unknown = sorted(set(payload) - {"action", "variant", "desired_instance_count"})
    if unknown:
        raise ValueError(f"unknown payload fields: {', '.join(unknown)}")
    if not isinstance(payload.get("variant"), str) or not payload["variant"]:
        raise ValueError("variant names the production variant to scale")
    count = payload.get("desired_instance_count")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_INSTANCES:
        raise ValueError(f"desired_instance_count is an integer from 0 to {MAX_INSTANCES}")


def read_endpoint(target: str) -> dict[str, Any]:
    """What approvals are tied to: each variant's desired instance count and weight."""
    name = _endpoint_name(target)
    try:
        described = aws_client("sagemaker").describe_endpoint(EndpointName=name)
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(str(exc)) from exc
    variants = {
        v["VariantName"]: {
            "desired_instance_count": v.get("DesiredInstanceCount"),
            "desired_weight": v.get("DesiredWeight"),
        }
        for v in described.get("ProductionVariants", [])
    }
    return {"endpoint": name, "variants": _jsonable(variants)}


def preview_action(target: str, payload: dict[str, Any], current: Any) -> dict[str, Any]:
    proposed = json.loads(json.dumps(current or {"variants": {}}))
    variant = proposed.setdefault("variants", {}).setdefault(payload["variant"], {})
    variant["desired_instance_count"] = payload["desired_instance_count"]
    return dict(proposed)


def execute_action(
    *, target: str, payload: dict[str, Any], on_behalf_of: Any, change_request_id: Any
) -> dict[str, Any]:
    """Scale the endpoint variant; returns the endpoint ARN and the new desired count."""
    name = _endpoint_name(target)
    variants = read_endpoint(target)["variants"]
    if payload["variant"] not in variants:
        raise AwsError(f"endpoint {name} has no variant {payload['variant']!r}")
    try:
        response = aws_client("sagemaker").update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[
                {
                    "VariantName": payload["variant"],
                    "DesiredInstanceCount": payload["desired_instance_count"],
                }
            ],
        )
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(str(exc)) from exc
    return {
        "endpoint_arn": response.get("EndpointArn"),
        "variant": payload["variant"],
        "desired_instance_count": payload["desired_instance_count"],
    }


def register() -> None:
    from apps.admin_ops.kinds import register_executor

    register_executor(
        "admin.aws_action",
        execute_action,
        read_target=read_endpoint,
        preview=preview_action,
        validate=validate_action,
    )
