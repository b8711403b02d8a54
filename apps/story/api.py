"""REST doors of the lore workspace under ``/api/v1/lore/`` (``lore`` scope)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiResponse, extend_schema
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
from apps.story.models import LoreEntry, LoreKind, LoreRevision, LoreStatus, StoryJob
from bodybroker.api import StrictCharField, StrictIntegerField, StrictSerializer

LoreScope = scope_required(LORE)


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
    revision = StrictIntegerField(min_value=1, help_text="the revision the editor reviewed")


class RestoreSerializer(StrictSerializer):
    revision = StrictIntegerField(min_value=1)
    base_revision = StrictIntegerField(min_value=1)


class ListParamsSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=LoreKind.values, required=False)
    status = serializers.ChoiceField(choices=LoreStatus.values, required=False)
    tag = serializers.CharField(required=False, max_length=40)
    q = serializers.CharField(required=False, max_length=200, allow_blank=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)
    offset = serializers.IntegerField(required=False, min_value=0, default=0)


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


def conflict_response(exc: services.LoreConflictError, yours: dict[str, Any]) -> Response:
    body = error_body(
        str(exc),
        type_="conflict",
        fields={"base_revision": [f"the entry is at revision {exc.current.number}"]},
    )
    body["error"]["current"] = revision_data(exc.current)
    body["error"]["yours"] = yours
    return Response(body, status=status.HTTP_409_CONFLICT)


def story_job_data(story_job: StoryJob) -> dict[str, Any]:
    return {
        "story_job_id": str(story_job.pk),
        "job_id": str(story_job.job_id) if story_job.job_id else None,
        "kind": story_job.kind,
        "state": story_job.state,
        "job_status": story_job.job.status if story_job.job else None,
        "draft": story_job.draft.slug if story_job.draft else None,
        "report": story_job.report_text or None,
        "error": story_job.error or None,
    }


# --- views ---------------------------------------------------------------------------------------


class LoreListView(LoreAPIView):
    """List entries (filters: kind, status, tag, q) or create a draft."""

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

    @extend_schema(request=LoreCreateSerializer, responses={201: OpenApiResponse()})
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


class LoreDetailView(LoreAPIView):
    """Read an entry, or save an edit of it based on the revision it started from."""

    def get(self, request: Request, slug: str) -> Response:
        entry = selectors.lore_entry(slug=slug)
        if entry is None:
            return _not_found(f"no lore entry '{slug}'")
        return Response(entry_detail(entry))

    @extend_schema(
        request=LoreUpdateSerializer,
        responses={200: OpenApiResponse(), 409: OpenApiResponse(description="edit conflict")},
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
        return Response(entry_detail(result.entry, result.warnings))

    put = patch


class LoreHistoryView(LoreAPIView):
    """Every revision of an entry, newest first."""

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


class LoreRevisionView(LoreAPIView):
    """One revision's full content."""

    def get(self, request: Request, slug: str, number: int) -> Response:
        entry = selectors.lore_entry(slug=slug)
        revision = selectors.lore_revision(entry=entry, number=number) if entry else None
        if revision is None:
            return _not_found(f"no revision {number} of '{slug}'")
        return Response(revision_data(revision))


class LoreRestoreView(LoreAPIView):
    """Restore an old revision as a new one."""

    @extend_schema(request=RestoreSerializer, responses={200: OpenApiResponse()})
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


class LorePublishView(LoreAPIView):
    """Publish the revision an editor reviewed (editors and admin keys only)."""

    @extend_schema(request=PublishSerializer, responses={200: OpenApiResponse()})
    def post(self, request: Request, slug: str) -> Response:
        if selectors.lore_entry(slug=slug) is None:
            return _not_found(f"no lore entry '{slug}'")
        serializer = PublishSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, key = _caller(request)
        try:
            entry = services.lore_entry_publish(
                slug=slug,
                revision_number=serializer.validated_data["revision"],
                published_by=user,
                published_by_key=key,
            )
        except services.LorePermissionError as exc:
            return Response(
                error_body(str(exc), type_="permission_denied"), status=status.HTTP_403_FORBIDDEN
            )
        except services.LoreConflictError as exc:
            return conflict_response(exc, yours={"revision": serializer.validated_data["revision"]})
        return Response(entry_detail(entry))


class LoreSearchView(LoreAPIView):
    """Hybrid (lexical + vector) search of published lore, filtered by a persona's knowledge."""

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

    @extend_schema(request=ArcSerializer, responses={202: OpenApiResponse()})
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


class StoryExpandView(LoreAPIView):
    """Queue a Bronze job that expands an entry into a new draft."""

    @extend_schema(request=ExpandSerializer, responses={202: OpenApiResponse()})
    def post(self, request: Request, slug: str) -> Response:
        if selectors.lore_entry(slug=slug) is None:
            return _not_found(f"no lore entry '{slug}'")
        serializer = ExpandSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, key = _caller(request)
        story_job = services.storyteller_expand_request(
            slug=slug,
            instructions=serializer.validated_data.get("instructions", ""),
            requested_by=user,
            requested_by_key=key,
        )
        return Response(story_job_data(story_job), status=status.HTTP_202_ACCEPTED)


class StoryJobView(LoreAPIView):
    """A storyteller job's progress and outcome (its draft's slug once done)."""

    def get(self, request: Request, story_job_id: Any) -> Response:
        story_job = selectors.story_job(story_job_id=story_job_id)
        if story_job is None:
            return _not_found("no such storyteller job")
        return Response(story_job_data(story_job))
