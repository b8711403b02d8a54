"""The OpenAPI schema's shared parts (``GET /api/schema/``): how a caller authenticates, the API's
one error shape, and the 4xx answers every REST operation can give.

Every operation needs a key (or a signed-in person), so each documents 401 and 403; one that
takes a body also documents 400 (invalid fields), 413 (over the body limit) and 415 (not JSON);
one with query parameters 400; one with path parameters 404. Answers particular to one operation
(409 on an edit conflict, 429 over a key's limits) are declared where the view is, with
:func:`error_response`. Every 4xx answer carries the ``Error`` component.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from apps.security.scopes import ALL_SCOPES

_STANDARD_ERRORS = {
    400: "invalid request: `error.fields` names each offending field",
    401: "no API key or session, or the key is invalid or revoked",
    403: "the caller lacks the scope (or role) this operation needs",
    404: "no such object",
    413: "the body is over the size limit",
    415: "the body is not JSON",
}


class ErrorDetailSerializer(serializers.Serializer[Any]):
    type = serializers.CharField(
        help_text="invalid_request, authentication_required, permission_denied, not_found, "
        "conflict, rate_limited, request_too_large, unsupported_media_type, …"
    )
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]  # a field, not Serializer.fields
        required=False,
        help_text="each offending field (unknown ones included) and what is wrong with it",
    )
    current = serializers.DictField(
        required=False, help_text="edit conflicts: the revision the entry is at now"
    )
    yours = serializers.DictField(required=False, help_text="edit conflicts: the change you sent")
    merge = serializers.DictField(
        required=False, help_text="edit conflicts: the three-way merge, field by field"
    )


class ErrorSerializer(serializers.Serializer[Any]):
    """The one error shape of the REST API."""

    error = ErrorDetailSerializer()


def error_response(description: str) -> OpenApiResponse:
    """A documented 4xx answer with the API's error shape."""
    return OpenApiResponse(response=ErrorSerializer, description=description)


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """``apps.security.authentication.ApiKeyAuthentication``: a key in ``Authorization: Bearer``
    or in ``X-API-Key`` (either one)."""

    target_class = "apps.security.authentication.ApiKeyAuthentication"
    name = ["bearerKey", "apiKeyHeader"]

    def get_security_requirement(self, auto_schema: AutoSchema) -> list[dict[str, list[Any]]]:
        # Alternatives, not both at once.
        return [{"bearerKey": []}, {"apiKeyHeader": []}]

    def get_security_definition(self, auto_schema: AutoSchema) -> list[dict[str, str]]:
        about = (
            "An API key (`bb_…`, minted with `manage.py create_api_key`) whose scopes include "
            f"the operation's (of {', '.join(ALL_SCOPES)})."
        )
        return [
            {"type": "http", "scheme": "bearer", "description": about},
            {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": about},
        ]


class BodyBrokerAutoSchema(AutoSchema):
    """drf-spectacular's schema, with every operation's error answers documented."""

    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        codes = [401, 403]
        places = {parameter["in"] for parameter in operation.get("parameters", [])}
        if "requestBody" in operation:
            codes += [400, 413, 415]
        if "query" in places:
            codes.append(400)
        if "path" in places:
            codes.append(404)
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        responses: dict[str, Any] = operation["responses"]
        for code in codes:
            responses.setdefault(str(code), {"description": _STANDARD_ERRORS[code]})
        for status, response in responses.items():
            if status.startswith("4") and "content" not in response:
                response["content"] = {"application/json": {"schema": error}}
        operation["responses"] = dict(sorted(responses.items()))
        return operation
