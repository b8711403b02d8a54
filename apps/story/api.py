"""REST doors of the lore workspace under ``/api/v1/lore/`` (``lore`` scope)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.security.authentication import scope_required
from apps.security.errors import error_body
from apps.security.models import ApiKey
from apps.security.scopes import LORE
from apps.story import selectors, services
from apps.story.merge import LoreMerge
from apps.story.models import LoreEntry, LoreKind, LoreRevision, LoreStatus, StoryJob
from bodybroker.api import StrictCharField, StrictIntegerField, StrictSerializer
from bodybroker.openapi import error_response

LoreScope = scope_required(LORE)

# An entry's slug in a path: never a reserved word, some of which name other doors here
# (``lore/search``), so the schema says so and a fuzzer does not mistake one door for another.
_lore_slug = extend_schema(
    parameters=[
        OpenApiParameter(
            "slug",
            str,
            OpenApiParameter.PATH,
            description="a lore entry's slug",
            pattern=rf"^(?!(?:{'|'.join(sorted(services.RESERVED_SLUGS))})$)[-a-zA-Z0-9_]+$",
        )
    ]
)


class LoreAPIView(APIView):
    """An API view of the lore workspace: needs the lore scope; an over-size body is a 413 in
    the API's error shape (Django raises it while DRF parses, outside DRF's handler)."""

    permission_classes = (LoreScope,)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, RequestDataTooBig):
            return Response(
                error_body(
                    f"the request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes",
                    type_="request_too_large",
                ),
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        return super().handle_exception(exc)


def _caller(request: Request) -> tuple[Any, ApiKey | None]:
    key = request.auth if isinstance(request.auth, ApiKey) else None
    return (None if key else request.user), key


def _invalid(exc: services.LoreValidationError) -> ValidationError:
    return ValidationError(exc.fields)


def _not_found(what: str) -> Response:
    return Response(error_body(what, type_="not_found"), status=status.HTTP_404_NOT_FOUND)


# --- serializers ---------------------------------------------------------------------------------


class LoreContentSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=LoreKind.values, required=False)
    title = StrictCharField(required=False, trim_whitespace=False, allow_blank=True)
    summary = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    body = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    tags = serializers.ListField(child=StrictCharField(), required=False)
    knowledge_scope = serializers.ListField(child=StrictCharField(), required=False)
    spoiler_level = StrictIntegerField(min_value=0, max_value=3, required=False)
    message = StrictCharField(required=False, allow_blank=True, max_length=300)


class LoreCreateSerializer(LoreContentSerializer):
    slug = StrictCharField(required=False, max_length=80)


class LoreUpdateSerializer(LoreContentSerializer):
    base_revision = StrictIntegerField(min_value=1, help_text="the revision this edit started from")


class PublishSerializer(StrictSerializer):
    revision = StrictIntegerField(min_value=1, help_text="the revision the asker reviewed")
    reason = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="why it should be published (the approver reads this)",
    )


class RestoreSerializer(StrictSerializer):
    revision = StrictIntegerField(min_value=1)
    base_revision = StrictIntegerField(min_value=1)


class ListParamsSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=LoreKind.values, required=False)
    status = serializers.ChoiceField(choices=LoreStatus.values, required=False)
    tag = serializers.CharField(required=False, max_length=40)
    q = serializers.CharField(required=False, max_length=200, allow_blank=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)
    # Bounded so the database never sees an OFFSET past its integer range.
    offset = serializers.IntegerField(required=False, min_value=0, max_value=1_000_000, default=0)


class SearchParamsSerializer(StrictSerializer):
    q = serializers.CharField(max_length=500)
    persona = serializers.SlugField(required=False, max_length=80)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=50, default=5)
    max_spoiler = serializers.IntegerField(required=False, min_value=0, max_value=3)

    def validate_persona(self, value: str) -> str:
        if not selectors.lore_personas().filter(slug=value).exists():
            raise serializers.ValidationError(f"no persona (character entry) '{value}'")
        return value


class ArcSerializer(StrictSerializer):
    theme = StrictCharField(max_length=500)
    parts = StrictIntegerField(min_value=1, max_value=12, default=3)


class ExpandSerializer(StrictSerializer):
    instructions = StrictCharField(required=False, allow_blank=True, max_length=1000)


# Answer shapes, for the schema only: answers are built by the functions under "shapes" below.


class LoreEntrySummarySerializer(serializers.Serializer[Any]):
    slug = serializers.SlugField()
    kind = serializers.ChoiceField(choices=LoreKind.values)
    title = serializers.CharField()
    summary = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    knowledge_scope = serializers.ListField(child=serializers.CharField())
    spoiler_level = serializers.IntegerField()
    status = serializers.ChoiceField(choices=LoreStatus.values)
    revision = serializers.IntegerField()
    published_revision = serializers.IntegerField(allow_null=True)
    updated_at = serializers.DateTimeField()


class LoreListAnswerSerializer(serializers.Serializer[Any]):
    results = LoreEntrySummarySerializer(many=True)
    next_offset = serializers.IntegerField(allow_null=True)


class LoreEntryAnswerSerializer(LoreEntrySummarySerializer):
    body = serializers.CharField()
    has_unpublished_changes = serializers.BooleanField()
    links = serializers.ListField(child=serializers.DictField(), help_text="slug, label, exists")
    backlinks = serializers.ListField(child=serializers.DictField(), help_text="slug, title")
    warnings = serializers.ListField(child=serializers.CharField())


class LoreRevisionSummarySerializer(serializers.Serializer[Any]):
    revision = serializers.IntegerField()
    author = serializers.CharField()
    message = serializers.CharField()
    created_at = serializers.DateTimeField()
    restored_from = serializers.IntegerField(allow_null=True)


class LoreRevisionAnswerSerializer(LoreRevisionSummarySerializer):
    kind = serializers.ChoiceField(choices=LoreKind.values)
    title = serializers.CharField()
    summary = serializers.CharField()
    body = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    knowledge_scope = serializers.ListField(child=serializers.CharField())
    spoiler_level = serializers.IntegerField()


class LoreHistoryAnswerSerializer(serializers.Serializer[Any]):
    slug = serializers.SlugField()
    revisions = LoreRevisionSummarySerializer(many=True)


class LoreSearchHitSerializer(serializers.Serializer[Any]):
    slug = serializers.SlugField()
    title = serializers.CharField()
    kind = serializers.CharField()
    heading = serializers.CharField()
    text = serializers.CharField()
    score = serializers.FloatField()


class LoreSearchAnswerSerializer(serializers.Serializer[Any]):
    query = serializers.CharField()
    persona = serializers.CharField(allow_null=True)
    backend = serializers.CharField()
    took_ms = serializers.FloatField()
    results = LoreSearchHitSerializer(many=True)


class StoryJobAnswerSerializer(serializers.Serializer[Any]):
    story_job_id = serializers.UUIDField()
    job_id = serializers.UUIDField(allow_null=True)
    kind = serializers.CharField()
    state = serializers.CharField()
    job_status = serializers.CharField(allow_null=True)
    draft = serializers.SlugField(allow_null=True, help_text="the draft entry once it landed")
    report = serializers.CharField(allow_null=True)
    cut_off = serializers.BooleanField(
        help_text="the model's answer stopped at the length limit, so the draft ends mid-way"
    )
    reused = serializers.BooleanField(
        help_text="the same request was still running, so this is that job, not a new one"
    )
    error = serializers.CharField(allow_null=True)


def _params(serializer_class: type[StrictSerializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- shapes --------------------------------------------------------------------------------------


def entry_summary(entry: LoreEntry) -> dict[str, Any]:
    return {
        "slug": entry.slug,
        "kind": entry.kind,
        "title": entry.title,
        "summary": entry.summary,
        "tags": entry.tags,
        "knowledge_scope": entry.knowledge_scope,
        "spoiler_level": entry.spoiler_level,
        "status": entry.status,
        "revision": entry.head_number,
        "published_revision": entry.published_number,
        "updated_at": entry.updated_at.isoformat(),
    }


def entry_detail(entry: LoreEntry, warnings: list[str] | None = None) -> dict[str, Any]:
    links = selectors.lore_links(entry=entry)
    return {
        **entry_summary(entry),
        "body": entry.body,
        "has_unpublished_changes": entry.has_unpublished_changes,
        "links": [
            {"slug": link.target_slug, "label": link.label, "exists": link.target_id is not None}
            for link in links["outgoing"]
        ],
        "backlinks": [
            {"slug": link.source.slug, "title": link.source.title} for link in links["backlinks"]
        ],
        "warnings": warnings or [],
    }


def revision_data(revision: LoreRevision, *, with_content: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "revision": revision.number,
        "author": revision.author_name,
        "message": revision.message,
        "created_at": revision.created_at.isoformat(),
        "restored_from": revision.restored_from,
    }
    if with_content:
        for name in ("kind", "title", "summary", "body", "tags", "knowledge_scope"):
            data[name] = getattr(revision, name)
        data["spoiler_level"] = revision.spoiler_level
    return data


def merge_data(merge: LoreMerge) -> dict[str, Any]:
    """A three-way merge, field by field: which fields conflict (with their base, theirs and
    yours), which merged from either side, and the merged content to start a resolution from
    (yours where they conflict)."""
    return {
        "base_revision": merge.base_revision,
        "theirs_revision": merge.theirs_revision,
        "conflicts": [
            {"field": f.name, "base": f.base, "theirs": f.theirs, "yours": f.mine}
            for f in merge.conflicts
        ],
        "merged_from_theirs": merge.taken_from_theirs,
        "merged_from_yours": merge.taken_from_mine,
        "merged": merge.content,
    }


def conflict_response(exc: services.LoreConflictError, yours: dict[str, Any]) -> Response:
    fields = {"base_revision": [f"the entry is at revision {exc.current.number}"]}
    for conflict in exc.merge.conflicts if exc.merge else ():
        fields[conflict.name] = [
            f"changed in revision {exc.current.number} by {exc.current.author_name} and by you"
        ]
    body = error_body(str(exc), type_="conflict", fields=fields)
    body["error"]["current"] = revision_data(exc.current)
    body["error"]["yours"] = yours
    if exc.merge is not None:
        body["error"]["merge"] = merge_data(exc.merge)
    return Response(body, status=status.HTTP_409_CONFLICT)


def publish_request_data(change_request: Any) -> dict[str, Any]:
    return {
        "id": str(change_request.pk),
        "kind": change_request.kind,
        "target": change_request.target,
        "revision": change_request.payload.get("revision"),
        "status": change_request.status,
        "requested_by": change_request.author_label,
        "expires_at": change_request.expires_at.isoformat(),
        "url": f"/api/v1/change-requests/{change_request.pk}",
    }


def story_job_data(story_job: StoryJob) -> dict[str, Any]:
    return {
        "story_job_id": str(story_job.pk),
        "job_id": str(story_job.job_id) if story_job.job_id else None,
        "kind": story_job.kind,
        "state": story_job.state,
        "job_status": story_job.job.status if story_job.job else None,
        "draft": story_job.draft.slug if story_job.draft else None,
        "report": story_job.report_text or None,
        "cut_off": story_job.cut_off,
        "reused": story_job.reused,
        "error": story_job.error or None,
    }


# --- views ---------------------------------------------------------------------------------------


class LoreListView(LoreAPIView):
    """List entries (filters: kind, status, tag, q) or create a draft."""

    @extend_schema(
        operation_id="v1_lore_list",
        parameters=[ListParamsSerializer],
        responses={200: LoreListAnswerSerializer},
    )
    def get(self, request: Request) -> Response:
        params = _params(ListParamsSerializer, request)
        entries = selectors.lore_entries(
            kind=params.get("kind", ""),
            status=params.get("status", ""),
            tag=params.get("tag", ""),
            q=params.get("q", ""),
        )
        offset, limit = params["offset"], params["limit"]
        page = list(entries[offset : offset + limit + 1])
        return Response(
            {
                "results": [entry_summary(e) for e in page[:limit]],
                "next_offset": offset + limit if len(page) > limit else None,
            }
        )

    @extend_schema(request=LoreCreateSerializer, responses={201: LoreEntryAnswerSerializer})
    def post(self, request: Request) -> Response:
        serializer = LoreCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        message = data.pop("message", "")
        slug = data.pop("slug", None)
        user, key = _caller(request)
        try:
            result = services.lore_entry_create(
                fields=data, slug=slug, message=message, author=user, author_key=key
            )
        except services.LoreValidationError as exc:
            raise _invalid(exc) from exc
        return Response(entry_detail(result.entry, result.warnings), status=status.HTTP_201_CREATED)


@_lore_slug
class LoreDetailView(LoreAPIView):
    """Read an entry, or save an edit of it based on the revision it started from."""

    @extend_schema(responses={200: LoreEntryAnswerSerializer})
    def get(self, request: Request, slug: str) -> Response:
        entry = selectors.lore_entry(slug=slug)
        if entry is None:
            return _not_found(f"no lore entry '{slug}'")
        return Response(entry_detail(entry))

    @extend_schema(
        request=LoreUpdateSerializer,
        responses={
            200: LoreEntryAnswerSerializer,
            409: error_response("edit conflict: `error.merge` shows the three-way merge"),
        },
    )
    def patch(self, request: Request, slug: str) -> Response:
        if selectors.lore_entry(slug=slug) is None:
            return _not_found(f"no lore entry '{slug}'")
        serializer = LoreUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        base = data.pop("base_revision")
        message = data.pop("message", "")
        user, key = _caller(request)
        try:
            result = services.lore_entry_update(
                slug=slug,
                base_revision=base,
                changes=data,
                message=message,
                author=user,
                author_key=key,
            )
        except services.LoreValidationError as exc:
            raise _invalid(exc) from exc
        except services.LoreConflictError as exc:
            return conflict_response(exc, yours=data)
        detail = entry_detail(result.entry, result.warnings)
        if result.merged is not None:
            detail["merge"] = merge_data(result.merged)
        return Response(detail)

    put = patch


@_lore_slug
class LoreHistoryView(LoreAPIView):
    """Every revision of an entry, newest first."""

    @extend_schema(responses={200: LoreHistoryAnswerSerializer})
    def get(self, request: Request, slug: str) -> Response:
        entry = selectors.lore_entry(slug=slug)
        if entry is None:
            return _not_found(f"no lore entry '{slug}'")
        return Response(
            {
                "slug": slug,
                "revisions": [
                    revision_data(r, with_content=False)
                    for r in selectors.lore_history(entry=entry)
                ],
            }
        )


@_lore_slug
class LoreRevisionView(LoreAPIView):
    """One revision's full content."""

    @extend_schema(responses={200: LoreRevisionAnswerSerializer})
    def get(self, request: Request, slug: str, number: int) -> Response:
        entry = selectors.lore_entry(slug=slug)
        revision = selectors.lore_revision(entry=entry, number=number) if entry else None
        if revision is None:
            return _not_found(f"no revision {number} of '{slug}'")
        return Response(revision_data(revision))


@_lore_slug
class LoreRestoreView(LoreAPIView):
    """Restore an old revision as a new one."""

    @extend_schema(
        request=RestoreSerializer,
        responses={200: LoreEntryAnswerSerializer, 409: error_response("edit conflict")},
    )
    def post(self, request: Request, slug: str) -> Response:
        if selectors.lore_entry(slug=slug) is None:
            return _not_found(f"no lore entry '{slug}'")
        serializer = RestoreSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, key = _caller(request)
        try:
            result = services.lore_entry_restore(
                slug=slug,
                number=serializer.validated_data["revision"],
                base_revision=serializer.validated_data["base_revision"],
                author=user,
                author_key=key,
            )
        except services.LoreValidationError as exc:
            raise _invalid(exc) from exc
        except services.LoreConflictError as exc:
            return conflict_response(exc, yours={"restore": serializer.validated_data["revision"]})
        return Response(entry_detail(result.entry, result.warnings))


@_lore_slug
class LorePublishView(LoreAPIView):
    """Ask to publish the revision the caller reviewed: a ``lore.publish`` change request an
    approver who is not the asker decides (202), or, where the studio opted out of approvals
    (``BODYBROKER_LORE_PUBLISH=editors``), an editor's or admin key's ask publishes (200)."""

    @extend_schema(
        request=PublishSerializer,
        responses={
            200: OpenApiResponse(description="published (studios that opted out)"),
            202: OpenApiResponse(description="a lore.publish change request waits for approval"),
            409: error_response("the revision is not the entry's latest"),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        if selectors.lore_entry(slug=slug) is None:
            return _not_found(f"no lore entry '{slug}'")
        serializer = PublishSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, key = _caller(request)
        try:
            outcome = services.lore_publish_request(
                slug=slug,
                revision_number=serializer.validated_data["revision"],
                reason=serializer.validated_data.get("reason", ""),
                requested_by=user,
                requested_by_key=key,
            )
        except services.LorePermissionError as exc:
            return Response(
                error_body(str(exc), type_="permission_denied"), status=status.HTTP_403_FORBIDDEN
            )
        except services.LoreConflictError as exc:
            return conflict_response(exc, yours={"revision": serializer.validated_data["revision"]})
        except services.LoreValidationError as exc:
            raise _invalid(exc) from exc
        if outcome.change_request is None:
            return Response(entry_detail(outcome.entry))
        return Response(
            {
                "status": "pending_approval",
                "change_request": publish_request_data(outcome.change_request),
                "already_requested": outcome.already_open,
                "entry": entry_detail(outcome.entry),
            },
            status=status.HTTP_202_ACCEPTED,
        )


class LoreSearchView(LoreAPIView):
    """Hybrid (lexical + vector) search of published lore, filtered by a persona's knowledge."""

    @extend_schema(parameters=[SearchParamsSerializer], responses={200: LoreSearchAnswerSerializer})
    def get(self, request: Request) -> Response:
        params = _params(SearchParamsSerializer, request)
        query = params["q"].strip()
        if not query:
            raise ValidationError({"q": ["give some words to search for"]})
        started = time.perf_counter()
        hits = selectors.lore_search(
            query=query,
            persona=params.get("persona"),
            limit=params["limit"],
            max_spoiler=params.get("max_spoiler"),
        )
        return Response(
            {
                "query": query,
                "persona": params.get("persona"),
                "backend": settings.BODYBROKER_LORE_INDEX,
                "took_ms": round((time.perf_counter() - started) * 1000, 2),
                "results": [
                    {
                        "slug": h.entry_slug,
                        "title": h.entry_title,
                        "kind": h.kind,
                        "heading": h.heading,
                        "text": h.text,
                        "score": h.score,
                    }
                    for h in hits
                ],
            }
        )


class StoryArcView(LoreAPIView):
    """Queue a Bronze job that outlines a story arc; it lands as a draft entry."""

    @extend_schema(request=ArcSerializer, responses={202: StoryJobAnswerSerializer})
    def post(self, request: Request) -> Response:
        serializer = ArcSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, key = _caller(request)
        try:
            story_job = services.storyteller_arc_request(
                theme=serializer.validated_data["theme"],
                parts=serializer.validated_data["parts"],
                requested_by=user,
                requested_by_key=key,
            )
        except services.LoreValidationError as exc:
            raise _invalid(exc) from exc
        return Response(story_job_data(story_job), status=status.HTTP_202_ACCEPTED)


@_lore_slug
class StoryExpandView(LoreAPIView):
    """Queue a Bronze job that expands an entry into a new draft."""

    @extend_schema(request=ExpandSerializer, responses={202: StoryJobAnswerSerializer})
    def post(self, request: Request, slug: str) -> Response:
        if selectors.lore_entry(slug=slug) is None:
            return _not_found(f"no lore entry '{slug}'")
        serializer = ExpandSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, key = _caller(request)
        try:
            story_job = services.storyteller_expand_request(
                slug=slug,
                instructions=serializer.validated_data.get("instructions", ""),
                requested_by=user,
                requested_by_key=key,
            )
        except services.LoreValidationError as exc:
            raise _invalid(exc) from exc
        return Response(story_job_data(story_job), status=status.HTTP_202_ACCEPTED)


class StoryJobView(LoreAPIView):
    """A storyteller job's progress and outcome (its draft's slug once done)."""

    @extend_schema(responses={200: StoryJobAnswerSerializer})
    def get(self, request: Request, story_job_id: Any) -> Response:
        story_job = selectors.story_job(story_job_id=story_job_id)
        if story_job is None:
            return _not_found("no such storyteller job")
        return Response(story_job_data(story_job))


class StoryJobCancelView(LoreAPIView):
    """Cancel a storyteller job that is still waiting or running: its Bronze job stops and no
    draft is made. Whoever asked for it may, and admin keys."""

    @extend_schema(
        request=None,
        responses={
            200: StoryJobAnswerSerializer,
            403: error_response("someone else asked for this job"),
            409: error_response("the job has already finished"),
        },
    )
    def post(self, request: Request, story_job_id: Any) -> Response:
        if selectors.story_job(story_job_id=story_job_id) is None:
            return _not_found("no such storyteller job")
        user, key = _caller(request)
        try:
            story_job = services.storyteller_job_cancel(
                story_job_id=story_job_id, user=user, key=key
            )
        except services.LorePermissionError as exc:
            return Response(
                error_body(str(exc), type_="permission_denied"), status=status.HTTP_403_FORBIDDEN
            )
        except services.LoreValidationError as exc:
            message = "; ".join(m for ms in exc.fields.values() for m in ms)
            return Response(error_body(message, type_="conflict"), status=status.HTTP_409_CONFLICT)
        return Response(story_job_data(story_job))
