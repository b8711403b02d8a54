"""REST doors of the router: ``POST /api/v1/infer`` and ``/api/v1/jobs/``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from adrf.views import APIView as AsyncAPIView
from asgiref.sync import sync_to_async
from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.router import limits, selectors, services
from apps.router.gateway import account_answer
from apps.router.models import Job, JobAttempt
from apps.router.policy import COST_SENSITIVITIES, PRIORITIES, SLAS
from apps.security.authentication import caller_scopes, scope_required
from apps.security.errors import error_body
from apps.security.models import ApiKey
from apps.security.scopes import ADMIN, INFER, JOBS
from bodybroker.api import (
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictSerializer,
)
from bodybroker.openapi import error_response
from inference.errors import EngineHTTPError

ROLES = ("system", "user", "assistant", "tool")


class MessageSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=ROLES)
    content = StrictCharField(allow_blank=True, trim_whitespace=False)
    name = StrictCharField(required=False)


class InferRequestSerializer(StrictSerializer):
    prompt = StrictCharField(required=False, trim_whitespace=False)
    messages = MessageSerializer(many=True, required=False, allow_empty=False)
    sla = serializers.ChoiceField(choices=SLAS, default="interactive")
    max_tokens = StrictIntegerField(min_value=1, max_value=4096, default=256)
    temperature = StrictFloatField(min_value=0.0, max_value=2.0, required=False)
    stop = serializers.ListField(child=StrictCharField(), required=False, max_length=4)
    seed = StrictIntegerField(required=False, min_value=-(2**63), max_value=2**63 - 1)
    needs_tools = StrictBooleanField(default=False)
    requires_expert_reasoning = StrictBooleanField(default=False)
    tools = serializers.ListField(child=serializers.DictField(), required=False, max_length=64)
    tool_choice = serializers.JSONField(required=False)
    response_format = serializers.DictField(required=False)
    cost_sensitivity = serializers.ChoiceField(choices=COST_SENSITIVITIES, default="normal")
    priority = serializers.ChoiceField(choices=PRIORITIES, required=False)
    persona = StrictCharField(required=False, max_length=100)
    npc_id = StrictCharField(required=False, max_length=100)
    deadline_ms = StrictFloatField(required=False, min_value=1.0, max_value=3_600_000.0)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_prompt, has_messages = "prompt" in attrs, "messages" in attrs
        if has_prompt == has_messages:
            raise serializers.ValidationError(
                {"prompt": ["give exactly one of 'prompt' or 'messages'"]}
            )
        messages = attrs.pop("messages", None) or [{"role": "user", "content": attrs.pop("prompt")}]
        attrs.pop("prompt", None)
        size = sum(len(m["content"]) for m in messages)
        if size > settings.BODYBROKER_MAX_PROMPT_CHARS:
            raise serializers.ValidationError(
                {
                    "messages": [
                        f"prompt is {size} characters; the limit is "
                        f"{settings.BODYBROKER_MAX_PROMPT_CHARS}"
                    ]
                }
            )
        attrs["messages"] = messages
        return attrs


class InferAnswerSerializer(serializers.Serializer[Any]):
    text = serializers.CharField()
    tier = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]  # a field, not Field.source
    model = serializers.CharField()
    route_reason = serializers.CharField()
    finish_reason = serializers.CharField(allow_null=True)
    usage = inline_serializer(
        "Usage",
        {
            "prompt_tokens": serializers.IntegerField(),
            "completion_tokens": serializers.IntegerField(),
        },
    )
    latency_ms = serializers.FloatField()
    fallback_reasons = serializers.ListField(child=serializers.CharField())
    tool_calls = serializers.ListField(child=serializers.DictField())


class JobAttemptSerializer(serializers.ModelSerializer[JobAttempt]):
    class Meta:
        model = JobAttempt
        fields = (
            "number",
            "backend",
            "outcome",
            "error",
            "started_at",
            "finished_at",
            "latency_ms",
        )


class JobSerializer(serializers.ModelSerializer[Job]):
    job_id = serializers.UUIDField(source="id")
    usage = serializers.SerializerMethodField()
    duration_ms = serializers.FloatField(allow_null=True)
    truncated = serializers.BooleanField(
        read_only=True, help_text="the answer was cut off at max_tokens (finish_reason length)"
    )

    class Meta:
        model = Job
        fields: tuple[str, ...] = (
            "job_id",
            "kind",
            "tier",
            "status",
            "result_text",
            "finish_reason",
            "truncated",
            "error",
            "attempts",
            "usage",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
        )

    def get_usage(self, job: Job) -> dict[str, int]:
        return {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens}


class JobDetailSerializer(JobSerializer):
    attempt_log = JobAttemptSerializer(source="attempt_rows", many=True)

    class Meta(JobSerializer.Meta):
        fields = (*JobSerializer.Meta.fields, "attempt_log")


def _caller(request: Request) -> tuple[Any, ApiKey | None]:
    key = request.auth if isinstance(request.auth, ApiKey) else None
    return (None if key else request.user), key


def _needs_jobs() -> Response:
    return Response(
        error_body(
            "async requests become jobs and need the 'jobs' scope", type_="permission_denied"
        ),
        status=status.HTTP_403_FORBIDDEN,
    )


class InferView(AsyncAPIView):
    """Answer a prompt on the tier the routing policy picks (Bronze answers with a job)."""

    permission_classes = (scope_required(INFER),)

    @extend_schema(
        request=InferRequestSerializer,
        responses={
            200: InferAnswerSerializer,
            202: OpenApiResponse(description="queued as a Bronze job: {job_id, status}"),
            400: OpenApiResponse(description="invalid request; error.fields names each field"),
            429: error_response("over the key's request, token or budget limits (Retry-After)"),
        },
    )
    async def post(self, request: Request) -> Response:
        started = time.perf_counter()
        # An explicit ``sla: async`` is a job, which needs the jobs scope: refused before the
        # body is validated, like every other scope.
        asked_async = isinstance(request.data, dict) and request.data.get("sla") == "async"
        if asked_async and JOBS not in caller_scopes(request):
            return _needs_jobs()
        serializer = InferRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.auth if isinstance(request.auth, ApiKey) else None
        key_limits = limits.limits_for(key) if key is not None else None
        if key is not None and key_limits is not None:
            refusal = await limits.check(key.pk, key_limits)
            if refusal is not None:
                return Response(
                    error_body(refusal.message, type_="rate_limited"),
                    status=status.HTTP_429_TOO_MANY_REQUESTS,
                    headers={"Retry-After": str(refusal.retry_after_s)},
                )
        inference_request = services.InferenceRequest(**serializer.validated_data)
        decision = inference_request.decide()
        if decision.tier == "bronze":
            if JOBS not in caller_scopes(request):
                return _needs_jobs()
            user, key = _caller(request)
            try:
                job = await sync_to_async(services.job_submit)(
                    request=inference_request, submitted_by_user=user, submitted_by_key=key
                )
            except services.JobRefused as refused:
                field = refused.field
                if field == "prompt" and "messages" in request.data:
                    field = "messages"
                return Response(
                    error_body(
                        refused.message, type_="invalid_request", fields={field: [refused.message]}
                    ),
                    status=status.HTTP_400_BAD_REQUEST,
                )
            return Response(
                {
                    "job_id": str(job.id),
                    "status": job.status,
                    "tier": "bronze",
                    "route_reason": decision.reason,
                },
                status=status.HTTP_202_ACCEPTED,
            )
        try:
            answer = await services.infer(request=inference_request, decision=decision)
        except asyncio.CancelledError:
            # Django cancels an async view whose client disconnected; the engine call went with
            # it (its connection closed, the engine stopped generating).
            services.count_cancelled(decision.tier, "client_disconnect")
            raise
        except EngineHTTPError as exc:
            return Response(
                error_body(
                    f"the {decision.tier} engine rejected the request: {exc}",
                    type_="invalid_request",
                ),
                status=status.HTTP_400_BAD_REQUEST,
            )
        account_answer(key.pk if key else None, key_limits, answer, started)
        return Response(
            {
                "text": answer.text,
                "tier": answer.tier,
                "source": answer.source,
                "model": answer.model,
                "route_reason": answer.route_reason,
                "finish_reason": answer.finish_reason,
                "usage": answer.usage(),
                "latency_ms": round(answer.latency_ms, 2),
                "fallback_reasons": answer.fallback_reasons,
                "tool_calls": answer.tool_calls,
            }
        )


class JobListView(ListAPIView[Job]):
    """The caller's Bronze jobs, newest first (every job for the admin scope)."""

    permission_classes = (scope_required(JOBS),)
    serializer_class = JobSerializer

    def get_queryset(self) -> Any:
        user, key = _caller(self.request)
        return selectors.jobs_visible_to(
            user=user, key=key, sees_all=ADMIN in caller_scopes(self.request)
        )[:100]


class JobDetailView(APIView):
    """One job with its result, timings, usage and every attempt."""

    permission_classes = (scope_required(JOBS),)

    @extend_schema(responses={200: JobDetailSerializer})
    def get(self, request: Request, job_id: Any) -> Response:
        user, key = _caller(request)
        jobs = selectors.jobs_visible_to(
            user=user, key=key, sees_all=ADMIN in caller_scopes(request)
        )
        job = selectors.job_with_attempts(jobs=jobs, job_id=job_id)
        if job is None:
            return Response(
                error_body("no such job", type_="not_found"), status=status.HTTP_404_NOT_FOUND
            )
        return Response(JobDetailSerializer(job).data)
