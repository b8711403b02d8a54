"""Django admin: change requests and the audit log, to read only. Decisions go through the
approvals pages and the API, where the rules are; the audit log cannot be changed at all."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.admin_ops.models import AuditEvent, ChangeRequest


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_label", "action", "target", "summary", "request_id")
    list_filter = ("action", "actor_type")
    search_fields = ("actor_label", "target", "request_id")


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "target", "status", "author_label", "created_at", "expires_at")
    list_filter = ("status", "kind")
    search_fields = ("target", "author_label")
