"""REST doors of NPC definitions under ``/api/v1/npcs/``.

Reading needs the ``lore``, ``game`` or ``npc`` scope (writers read NPCs; game clients load
them); writing needs ``npc`` or ``admin``. Creating and re-tuning apply at once; any other change
to an existing NPC answers 202 with the ``npc.update`` change request it became (an admin
approves it; ``services.npc_change``).
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.admin_ops.actors import request_actor
from apps.admin_ops.services import ChangeRequestError
from apps.npcs import archetypes, selectors, services
from apps.npcs.models import MicroPolicy, Npc
from apps.security.authentication import caller_scopes
from apps.security.errors import error_body
from apps.security.scopes import ADMIN, GAME, LORE, NPC
from bodybroker.api import (
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictSerializer,
)

READ_SCOPES = frozenset({LORE, GAME, NPC, ADMIN})
WRITE_SCOPES = frozenset({NPC, ADMIN})


class NpcScope(BasePermission):
    """Read with ``lore``/``game``/``npc``/``admin``; write with ``npc``/``admin``."""

    message = "reading NPCs needs the 'lore' or 'game' scope; changing them 'npc' or 'admin'"

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        needed = READ_SCOPES if request.method in SAFE_METHODS else WRITE_SCOPES
        return bool(needed & caller_scopes(request))


# --- serializers ---------------------------------------------------------------------------------


class IntentSerializer(StrictSerializer):
    name = StrictCharField(max_length=40)
    args = serializers.ListField(child=StrictCharField(max_length=40), required=False, max_length=4)


class NpcFieldsSerializer(StrictSerializer):
    name = StrictCharField(required=False, max_length=120)
    role = StrictCharField(required=False, allow_blank=True, max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=2000)
    motivation = StrictCharField(required=False, allow_blank=True, max_length=1000)
    speaking_style = StrictCharField(required=False, allow_blank=True, max_length=300)
    archetype = StrictCharField(
        required=False, max_length=40, help_text=", ".join(archetypes.archetype_names())
    )
    allowed_intents = IntentSerializer(many=True, required=False)
    default_intent = StrictCharField(required=False, max_length=40)
    knowledge_scope = serializers.ListField(
        child=StrictCharField(max_length=80),
        required=False,
        help_text="lore persona (character entry) slugs whose restricted lore this NPC knows",
    )
    safety_lines = serializers.ListField(child=StrictCharField(max_length=300), required=False)
    intent_hz = StrictFloatField(required=False, min_value=0.5, max_value=2.0)
    intent_max_tokens = StrictIntegerField(required=False, min_value=1, max_value=8)
    dialogue_max_tokens = StrictIntegerField(required=False, min_value=1, max_value=512)
    micro_policy = serializers.ChoiceField(choices=MicroPolicy.values, required=False)
    active = StrictBooleanField(required=False)


class NpcChangeSerializer(NpcFieldsSerializer):
    reason = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="why: required when the change becomes an npc.update change request",
    )


# Named apart from NpcChangeSerializer's request component, which the schema calls
# "NpcChangeRequest".
@extend_schema_serializer(component_name="NpcChangeAwaitingApproval")
class NpcChangeRequestSerializer(serializers.Serializer[Any]):
    """The answer when a change waits for approval (202)."""

    change_request = serializers.DictField(
        help_text="id, kind, status, required_approvals, url (REST) and page (approvals)"
    )
    changed = serializers.ListField(child=serializers.CharField())
    npc = NpcFieldsSerializer(help_text="the NPC as it is until the change is approved")


class NpcCreateSerializer(NpcFieldsSerializer):
    slug = StrictCharField(max_length=100, help_text="the NPC id the game uses")


class NpcSerializer(NpcCreateSerializer):
    """The shape of an NPC in answers (documentation only: answers are built by ``npc_data``)."""

    prompt = serializers.CharField(help_text="the persona system prompt the tiers get")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class NpcListSerializer(serializers.Serializer[Any]):
    results = NpcSerializer(many=True)


class ListParamsSerializer(StrictSerializer):
    active = serializers.BooleanField(required=False, allow_null=True, default=None)
    archetype = serializers.CharField(required=False, max_length=40)


# --- shapes --------------------------------------------------------------------------------------


def npc_data(npc: Npc) -> dict[str, Any]:
    return {
        "slug": npc.slug,
        "name": npc.name,
        "role": npc.role,
        "description": npc.description,
        "motivation": npc.motivation,
        "speaking_style": npc.speaking_style,
        "archetype": npc.archetype,
        "allowed_intents": npc.allowed_intents,
        "default_intent": npc.default_intent,
        "knowledge_scope": npc.knowledge_scope,
        "safety_lines": npc.safety_lines,
        "intent_hz": npc.intent_hz,
        "intent_max_tokens": npc.intent_max_tokens,
        "dialogue_max_tokens": npc.dialogue_max_tokens,
        "micro_policy": npc.micro_policy,
        "active": npc.active,
        "prompt": selectors.npc_prompt(npc),
        "created_at": npc.created_at.isoformat(),
        "updated_at": npc.updated_at.isoformat(),
    }


def _not_found(slug: str) -> Response:
    return Response(error_body(f"no NPC '{slug}'", type_="not_found"), status=404)


# --- views ---------------------------------------------------------------------------------------


class NpcListView(APIView):
    """List NPC definitions (filters: active, archetype) or create one."""

    permission_classes = (NpcScope,)

    @extend_schema(
        operation_id="npcs_list", parameters=[ListParamsSerializer], responses=NpcListSerializer
    )
    def get(self, request: Request) -> Response:
        params = ListParamsSerializer(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        npcs = selectors.npcs_list(
            active=params.validated_data["active"],
            archetype=params.validated_data.get("archetype", ""),
        )
        return Response({"results": [npc_data(npc) for npc in npcs]})

    @extend_schema(
        operation_id="npcs_create", request=NpcCreateSerializer, responses={201: NpcSerializer}
    )
    def post(self, request: Request) -> Response:
        serializer = NpcCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        slug = data.pop("slug")
        try:
            npc = services.npc_create(slug=slug, fields=data, actor=request_actor(request))
        except services.NpcValidationError as exc:
            raise ValidationError(exc.fields) from exc
        return Response(npc_data(npc), status=status.HTTP_201_CREATED)


class NpcDetailView(APIView):
    """Read an NPC definition, or change some of its fields (PATCH and PUT both merge)."""

    permission_classes = (NpcScope,)

    @extend_schema(operation_id="npcs_read", responses={200: NpcSerializer, 404: OpenApiResponse()})
    def get(self, request: Request, slug: str) -> Response:
        npc = selectors.npc_get(slug=slug)
        if npc is None:
            return _not_found(slug)
        return Response(npc_data(npc))

    @extend_schema(
        request=NpcChangeSerializer,
        responses={
            200: NpcSerializer,
            202: NpcChangeRequestSerializer,
            404: OpenApiResponse(),
        },
    )
    def patch(self, request: Request, slug: str) -> Response:
        """Re-tuning (intent_hz, intent_max_tokens, dialogue_max_tokens) applies at once (200);
        any other change becomes an ``npc.update`` change request (202; give a ``reason``)."""
        if selectors.npc_get(slug=slug) is None:
            return _not_found(slug)
        serializer = NpcChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        reason = changes.pop("reason", "")
        try:
            outcome = services.npc_change(
                slug=slug,
                changes=changes,
                reason=reason,
                actor=request_actor(request),
                scopes=caller_scopes(request),
            )
        except services.NpcNotFoundError:
            return _not_found(slug)
        except services.NpcValidationError as exc:
            raise ValidationError(exc.fields) from exc
        except ChangeRequestError as exc:  # the request could not be opened
            if exc.code == "forbidden":
                raise PermissionDenied(exc.message) from exc
            raise ValidationError({exc.field or "non_field_errors": [exc.message]}) from exc
        if outcome.change_request is None:
            return Response(npc_data(outcome.npc))
        change_request = outcome.change_request
        return Response(
            {
                "change_request": {
                    "id": str(change_request.id),
                    "kind": change_request.kind,
                    "status": change_request.status,
                    "required_approvals": change_request.required_approvals,
                    "url": reverse("api-change-request", args=[change_request.id]),
                    "page": reverse("approval-detail", args=[change_request.id]),
                },
                "changed": list(outcome.changed),
                "npc": npc_data(outcome.npc),
            },
            status=status.HTTP_202_ACCEPTED,
        )

    put = patch
