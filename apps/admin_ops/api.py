"""REST doors of operations: ``/api/v1/change-requests/`` (list, create, read, approve, reject,
revise), ``/api/v1/audit/`` (read-only, filterable, CSV) and admin report downloads."""

from __future__ import annotations

import csv
from abc import abstractmethod
from typing import Any

from django.http import Http404, HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.admin_ops import selectors, services
from apps.admin_ops.actors import request_actor
from apps.admin_ops.kinds import KINDS
from apps.admin_ops.models import (
    AuditEvent,
    ChangeRequest,
    ChangeRequestDecision,
    ChangeRequestStatus,
)
from apps.security.authentication import caller_scopes, scope_required
from apps.security.errors import error_body
from apps.security.models import ApiKey
from apps.security.scopes import ADMIN
from bodybroker.api import StrictCharField, StrictSerializer

MAX_PAGE = 200
_STATUS_FOR = {"invalid": 400, "forbidden": 403, "not_found": 404, "conflict": 409}
_TYPE_FOR = {
    "invalid": "invalid_request",
    "forbidden": "permission_denied",
    "not_found": "not_found",
    "conflict": "conflict",
}


class _Echo:
    def write(self, value: str) -> str:
        return value


def _key(request: Request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


def _person(request: Request) -> Any:
    """Who decides: the signed-in person, or the owner of the key used."""
    key = _key(request)
    if key is not None:
        return key.owner
    return request.user if getattr(request.user, "pk", None) else None


def change_request_error(exc: services.ChangeRequestError) -> Response:
    """A ChangeRequestError in the API error shape, with the status its code maps to."""
    fields = {exc.field: [exc.message]} if exc.field else None
    return Response(
        error_body(exc.message, type_=_TYPE_FOR.get(exc.code, "error"), fields=fields),
        status=_STATUS_FOR.get(exc.code, 400),
    )


class DecisionSerializer(serializers.ModelSerializer[ChangeRequestDecision]):
    user = serializers.CharField(source="user.get_username")
    counts = serializers.SerializerMethodField()

    class Meta:
        model = ChangeRequestDecision
        fields = ("decision", "user", "comment", "revision", "created_at", "counts")

    def get_counts(self, decision: ChangeRequestDecision) -> bool:
        """Whether it still counts: approvals given on an older revision do not."""
        return decision.revision == decision.change_request.revision


class ChangeRequestSerializer(serializers.ModelSerializer[ChangeRequest]):
    author = serializers.CharField(source="author_label")
    executed_on_behalf_of = serializers.SerializerMethodField()

    class Meta:
        model = ChangeRequest
        fields: tuple[str, ...] = (
            "id",
            "kind",
            "target",
            "status",
            "reason",
            "author",
            "author_tier",
            "required_approvals",
            "revision",
            "base_revision",
            "created_at",
            "expires_at",
            "approved_at",
            "executed_at",
            "executed_on_behalf_of",
            "error",
        )

    def get_executed_on_behalf_of(self, change_request: ChangeRequest) -> str | None:
        user = change_request.executed_on_behalf_of
        return user.get_username() if user is not None else None


class ChangeRequestDetailSerializer(ChangeRequestSerializer):
    decisions = DecisionSerializer(many=True)
    approvals = serializers.SerializerMethodField()

    class Meta(ChangeRequestSerializer.Meta):
        fields = (
            *ChangeRequestSerializer.Meta.fields,
            "payload",
            "diff",
            "result",
            "execution_runs",
            "approvals",
            "decisions",
        )

    def get_approvals(self, change_request: ChangeRequest) -> int:
        return sum(
            1
            for d in change_request.decisions.all()
            if d.decision == "approve" and d.revision == change_request.revision
        )


class ChangeRequestCreateSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=sorted(KINDS))
    target = StrictCharField(max_length=200)
    payload = serializers.JSONField()
    reason = StrictCharField(max_length=services.MAX_REASON_CHARS)


class DecideSerializer(StrictSerializer):
    comment = StrictCharField(
        required=False, allow_blank=True, max_length=services.MAX_COMMENT_CHARS, default=""
    )


class ReviseSerializer(StrictSerializer):
    payload = serializers.JSONField(required=False)


class _AnyScope(BasePermission):
    """Any authenticated caller holding at least one scope; services check the specific one."""

    message = "an API key with a scope, or a signed-in person with a role, is needed"

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return bool(caller_scopes(request))


def _detail(change_request_id: Any, request: Request) -> dict[str, Any]:
    change_request = selectors.change_request_with_history(change_request_id=change_request_id)
    if change_request is None:  # pragma: no cover - callers pass an id they just wrote
        raise Http404("no such change request")
    data = dict(ChangeRequestDetailSerializer(change_request).data)
    person = _person(request)
    data["approval_blockers"] = [
        b.reason for b in services.approval_blockers(change_request, person, caller_scopes(request))
    ]
    return data


class ChangeRequestListView(APIView):
    """Change requests, oldest first (admins see all; others their own). POST opens one."""

    permission_classes = (scope_required(ADMIN),)

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            # Asking needs the kind's own scope (checked in the service), and any scope at all.
            return [_AnyScope()]
        return list(super().get_permissions())

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=ChangeRequestStatus.values),
            OpenApiParameter("kind", str, enum=sorted(KINDS)),
        ],
        responses={200: ChangeRequestSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        status_filter = request.query_params.get("status") or None
        kind = request.query_params.get("kind") or None
        bad: dict[str, list[str]] = {}
        if status_filter and status_filter not in ChangeRequestStatus.values:
            bad["status"] = [f"one of {', '.join(ChangeRequestStatus.values)}"]
        if kind and kind not in KINDS:
            bad["kind"] = [f"one of {', '.join(sorted(KINDS))}"]
        if bad:
            return Response(
                error_body(
                    f"invalid fields: {', '.join(sorted(bad))}",
                    type_="invalid_request",
                    fields=bad,
                ),
                status=400,
            )
        requests = selectors.change_requests(status=status_filter, kind=kind)[:MAX_PAGE]
        return Response(ChangeRequestSerializer(requests, many=True).data)

    @extend_schema(
        request=ChangeRequestCreateSerializer,
        responses={
            201: ChangeRequestDetailSerializer,
            400: OpenApiResponse(description="invalid; error.fields names each field"),
            403: OpenApiResponse(description="the kind needs a scope the caller lacks"),
            409: OpenApiResponse(
                description="the target's current state could not be read, or the request "
                "would change nothing (the target already is as the payload proposes)"
            ),
        },
    )
    def post(self, request: Request) -> Response:
        # The scope before the body: a caller who may ask for no kind at all, or names a kind
        # whose scope it lacks, gets 403 whatever else the body holds.
        scopes = caller_scopes(request)
        if ADMIN not in scopes and not any(k.request_scope in scopes for k in KINDS.values()):
            return Response(
                error_body(
                    "asking for a change needs a kind's scope: "
                    + ", ".join(sorted({k.request_scope for k in KINDS.values()})),
                    type_="permission_denied",
                ),
                status=status.HTTP_403_FORBIDDEN,
            )
        kind = request.data.get("kind") if isinstance(request.data, dict) else None
        if isinstance(kind, str) and kind in KINDS:
            try:
                services.check_may_request(kind=kind, scopes=scopes)
            except services.ChangeRequestError as exc:
                return change_request_error(exc)
        serializer = ChangeRequestCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            change_request = services.change_request_create(
                kind=data["kind"],
                target=data["target"],
                payload=data["payload"],
                reason=data["reason"],
                actor=request_actor(request),
                scopes=caller_scopes(request),
            )
        except services.ChangeRequestError as exc:
            return change_request_error(exc)
        return Response(_detail(change_request.id, request), status=status.HTTP_201_CREATED)


class ChangeRequestDetailView(APIView):
    """One change request: payload, diff, decisions (and whether each still counts), the
    execution record, and why the caller could not approve it now."""

    permission_classes = (_AnyScope,)

    @extend_schema(responses={200: ChangeRequestDetailSerializer})
    def get(self, request: Request, change_request_id: Any) -> Response:
        change_request = selectors.change_request_with_history(change_request_id=change_request_id)
        if change_request is None or not _may_see(request, change_request):
            return Response(error_body("no such change request", type_="not_found"), status=404)
        return Response(_detail(change_request.id, request))


def _may_see(request: Request, change_request: ChangeRequest) -> bool:
    if ADMIN in caller_scopes(request):
        return True
    key = _key(request)
    if key is not None and change_request.author_key_id == key.pk:
        return True
    person = _person(request)
    return person is not None and services.is_author(change_request, person)


class _DecisionView(APIView):
    permission_classes = (scope_required(ADMIN),)
    serializer_class = DecideSerializer

    @abstractmethod
    def decide(self, request: Request, change_request_id: Any) -> ChangeRequest:
        """Apply this view's decision; each subclass is one kind of decision."""

    def check_may_decide(self, request: Request, change_request: ChangeRequest) -> None:
        """Raise ChangeRequestError(forbidden) when the caller may not make this decision
        whatever the body says; runs before the body is read (the service checks again under
        its lock). The permission class already covers views that need one scope."""

    @extend_schema(
        request=DecideSerializer,
        responses={
            200: ChangeRequestDetailSerializer,
            403: OpenApiResponse(description="author, no person behind the key, or no scope"),
            409: OpenApiResponse(description="expired, stale revision, or not pending"),
        },
    )
    def post(self, request: Request, change_request_id: Any) -> Response:
        change_request = selectors.change_request_with_history(change_request_id=change_request_id)
        if change_request is None:
            return Response(error_body("no such change request", type_="not_found"), status=404)
        try:
            self.check_may_decide(request, change_request)
            change_request = self.decide(request, change_request_id)
        except services.ChangeRequestError as exc:
            return change_request_error(exc)
        return Response(_detail(change_request.id, request))


class ApproveView(_DecisionView):
    """Approve the current revision (never one's own request). At quorum it executes."""

    def decide(self, request: Request, change_request_id: Any) -> ChangeRequest:
        serializer = DecideSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return services.change_request_approve(
            change_request_id=change_request_id,
            user=_person(request),
            scopes=caller_scopes(request),
            comment=serializer.validated_data["comment"],
            via_key=_key(request),
        )


class RejectView(_DecisionView):
    """Reject for good, with a comment saying why."""

    permission_classes = (_AnyScope,)  # the author may withdraw; the service checks the rest

    def check_may_decide(self, request: Request, change_request: ChangeRequest) -> None:
        services.check_may_reject(
            change_request, user=_person(request), scopes=caller_scopes(request)
        )

    def decide(self, request: Request, change_request_id: Any) -> ChangeRequest:
        serializer = DecideSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return services.change_request_reject(
            change_request_id=change_request_id,
            user=_person(request),
            scopes=caller_scopes(request),
            comment=serializer.validated_data["comment"],
            via_key=_key(request),
        )


class ReviseView(_DecisionView):
    """Amend the payload (author) or refresh the diff against the target (author or admin).
    A new revision resets approvals."""

    permission_classes = (_AnyScope,)

    @extend_schema(
        request=ReviseSerializer,
        responses={
            200: ChangeRequestDetailSerializer,
            409: OpenApiResponse(description="expired or not pending"),
        },
    )
    def post(self, request: Request, change_request_id: Any) -> Response:
        return super().post(request, change_request_id)

    def check_may_decide(self, request: Request, change_request: ChangeRequest) -> None:
        # Whether the body amends the payload is not known yet: refuse only callers who may
        # neither amend nor refresh.
        services.check_may_revise(
            change_request,
            actor=request_actor(request),
            scopes=caller_scopes(request),
            amending=False,
        )

    def decide(self, request: Request, change_request_id: Any) -> ChangeRequest:
        serializer = ReviseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return services.change_request_revise(
            change_request_id=change_request_id,
            actor=request_actor(request),
            scopes=caller_scopes(request),
            payload=serializer.validated_data.get("payload"),
        )


# --- audit ----------------------------------------------------------------------------------


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "at",
            "actor_type",
            "actor_label",
            "actor_tier",
            "action",
            "target",
            "before",
            "after",
            "summary",
            "request_id",
        )


class AuditFilterSerializer(StrictSerializer):
    action = StrictCharField(required=False, max_length=60, default="")
    actor = StrictCharField(required=False, max_length=200, default="")
    target = StrictCharField(required=False, max_length=200, default="")
    request_id = StrictCharField(required=False, max_length=64, default="")
    since = serializers.DateTimeField(required=False, default=None)
    until = serializers.DateTimeField(required=False, default=None)
    export = serializers.ChoiceField(choices=("json", "csv"), required=False, default="json")
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)


def parse_audit_filters(query: Any) -> dict[str, Any]:
    """Validate audit filters from a query string; raises DRF ValidationError naming fields.

    An empty value is no filter: a form sends every field, filled in or not."""
    given = {k: query.get(k) for k in query}
    serializer = AuditFilterSerializer(data={k: v for k, v in given.items() if v != ""})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def audit_csv_response(events: Any, filename: str = "audit.csv") -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in selectors.audit_csv_rows(events)),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class AuditListView(APIView):
    """The audit log, newest first, filterable; ``export=csv`` exports every matching event.
    Read-only: there is no way to change or remove an event."""

    permission_classes = (scope_required(ADMIN),)

    @extend_schema(
        parameters=[AuditFilterSerializer],
        responses={200: AuditEventSerializer(many=True)},
    )
    def get(self, request: Request) -> Any:
        filters = parse_audit_filters(request.query_params)
        fmt = filters.pop("export")
        limit = filters.pop("limit")
        events = selectors.audit_events(**filters)
        if fmt == "csv":
            return audit_csv_response(events)
        return Response(AuditEventSerializer(events[:limit], many=True).data)


# --- admin reports --------------------------------------------------------------------------


class AdminReportDownloadView(APIView):
    """The weekly operations report as Markdown (narrative once its Bronze job has finished)."""

    permission_classes = (scope_required(ADMIN),)

    @extend_schema(responses={200: OpenApiResponse(description="text/markdown attachment")})
    def get(self, request: Request, report_id: Any) -> Any:
        report = selectors.admin_report(report_id=report_id)
        if report is None:
            return Response(error_body("no such report", type_="not_found"), status=404)
        response = HttpResponse(
            selectors.admin_report_markdown(report), content_type="text/markdown; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="operations-report-{report.period_end:%Y-%m-%d}.md"'
        )
        return response
