"""API keys in Django's admin: revoked, never deleted; every change audited.

A key is history (the audit log and change requests point at it), so the admin offers no delete:
a key that must stop working is revoked (the action below). Its settings (name, scopes, owner,
limits) change only through ``api_key_change``, which audits them; a revoked key is read-only.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.admin_ops.actors import actor_for
from apps.security.models import ApiKey
from apps.security.scopes import ALL_SCOPES
from apps.security.services import KEY_SETTINGS, api_key_change, api_key_revoke
from apps.security.views import AdminSignInForm

# The admin's own sign-in page counts and refuses failed sign-ins like /accounts/login/ does.
admin.site.login_form = AdminSignInForm


class ApiKeyForm(forms.ModelForm[ApiKey]):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in ALL_SCOPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = KEY_SETTINGS


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    form = ApiKeyForm
    list_display = (
        "name",
        "prefix",
        "scope_names",
        "owner",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    fields = (*KEY_SETTINGS, "prefix", "created_at", "last_used_at", "revoked_at")
    # Revoking goes through the action below (audited, and the key's open sockets are closed),
    # never through editing the timestamp.
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    search_fields = ("name", "prefix")
    actions = ("revoke",)

    @admin.display(description="scopes")
    def scope_names(self, key: ApiKey) -> str:
        return ", ".join(key.scopes)

    @admin.action(description="Revoke the selected keys (closes their open websockets)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = [key for key in queryset if key.revoked_at is None]
        for key in keys:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        """Only the changed settings, through the audited service (never ``obj.save()``)."""
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        api_key_change(key_id=obj.pk, changes=changes, actor=actor_for(user=request.user))

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Keys are minted on the keys page (/keys/) or by `manage.py create_api_key`, which
        # show the secret once.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead: the audit log and change requests keep pointing at it

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        if obj is not None and obj.revoked_at is not None:
            return False  # a revoked key stays as it was when it was revoked
        return super().has_change_permission(request, obj)
