"""The REST API's body parser (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

A module of its own: DRF imports it while building ``APIView``, so it must not import views.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

from npc_runtime.bounded_json import INVALID, JsonRefused, read_json


class BoundedJSONParser(parsers.JSONParser):
    """DRF's JSON parser on the one bounded reader (``npc_runtime.bounded_json``), for every REST
    door: a body nested too deep, or holding a number no field can hold, is a 400 in the API's
    error shape (a number's place named in ``fields``), never a ``RecursionError`` 500."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        raw = stream.read()
        try:
            text = raw if encoding.lower().replace("-", "") == "utf8" else raw.decode(encoding)
        except (LookupError, UnicodeDecodeError) as exc:
            raise ParseError(f"the body is not {encoding} text: {exc}") from None
        try:
            return read_json(text)
        except JsonRefused as exc:
            if exc.dotted:
                raise ValidationError({exc.dotted: [exc.message]}) from None
            raise ParseError(
                f"the body is {exc.message}" if exc.reason == INVALID else exc.message
            ) from None
