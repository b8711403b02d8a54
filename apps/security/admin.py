from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.security.models import ApiKey
from apps.security.services import api_key_revoke


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = ("name", "prefix", "scopes", "owner", "created_at", "last_used_at", "revoked_at")
    # Revoking goes through the action below (audited, and the key's open sockets are closed),
    # never through editing the timestamp.
    readonly_fields = ("prefix", "digest", "created_at", "last_used_at", "revoked_at")
    search_fields = ("name", "prefix")
    actions = ("revoke",)

    @admin.action(description="Revoke the selected keys (closes their open websockets)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = [key for key in queryset if key.revoked_at is None]
        for key in keys:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are minted by `manage.py create_api_key`, which shows the secret once
