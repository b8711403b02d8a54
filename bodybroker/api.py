"""Shared pieces for the REST API: strict serializers that reject unknown fields and wrong types.

DRF is lenient by default (``"12"`` passes an IntegerField, unknown keys are dropped silently);
an integration that misspells ``max_tokens`` deserves a 400 naming the field instead.

Importing this module also lets DRF's generic classes be subscripted at run time
(``ListAPIView[Job]``), as the type stubs want; every ``api.py`` imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_stubs_ext
from rest_framework import generics, serializers

django_stubs_ext.monkeypatch(
    extra_classes=[
        serializers.BaseSerializer,
        serializers.Serializer,
        serializers.ModelSerializer,
        serializers.ListSerializer,
        generics.GenericAPIView,
        generics.ListAPIView,
        generics.RetrieveAPIView,
    ]
)


class StrictSerializer(serializers.Serializer[Any]):
    """Rejects keys the serializer does not declare, naming each of them."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": [f"expected a JSON object, got {type(data).__name__}"]}
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An integer that must be a JSON number without a fraction (no strings, no booleans)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        if isinstance(data, float) and not data.is_integer():
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictFloatField(serializers.FloatField):
    """A JSON number (no strings, no booleans)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return float(super().to_internal_value(data))


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false``, nothing else."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictCharField(serializers.CharField):
    """A JSON string (no numbers turned into strings)."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))
