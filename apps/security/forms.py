"""Forms of the API keys page: a key's settings, scopes as checkboxes and limits as numbers."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model

from apps.security.models import ApiKey
from apps.security.scopes import ALL_SCOPES

SCOPE_HELP = {
    "infer": "REST and OpenAI-compatible inference",
    "game": "the game-client websocket",
    "lore": "lore and story APIs, storyteller and RAG MCP",
    "jobs": "submit and read Bronze jobs",
    "npc": "create NPCs and ask for changes to them",
    "admin": "approvals, audit, admin MCP, metrics",
}


def _default_help(setting: str, unit: str) -> str:
    value = getattr(settings, setting)
    default = f"{value:g} {unit}" if value else "no limit"
    return f"Empty: the deployment's default ({default}, {setting}); 0 = no limit."


class ApiKeySettingsForm(forms.Form):
    """Name, scopes, owner and limits of a key: what ``api_key_create`` takes and what
    ``api_key_change`` changes."""

    name = forms.CharField(max_length=100, help_text="Who or what uses the key.")
    scopes = forms.MultipleChoiceField(
        choices=[(scope, f"{scope} — {SCOPE_HELP[scope]}") for scope in ALL_SCOPES],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        empty_label="(nobody)",
        help_text="The person accountable for the key.",
    )
    requests_per_minute = forms.IntegerField(min_value=0, required=False)
    tokens_per_minute = forms.IntegerField(min_value=0, required=False)
    daily_budget_usd = forms.FloatField(min_value=0, required=False, label="Daily budget (USD)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["requests_per_minute"].help_text = _default_help(
            "BODYBROKER_DEFAULT_RPM", "per minute"
        )
        self.fields["tokens_per_minute"].help_text = _default_help(
            "BODYBROKER_DEFAULT_TPM", "per minute"
        )
        self.fields["daily_budget_usd"].help_text = _default_help(
            "BODYBROKER_DEFAULT_DAILY_BUDGET_USD", "USD"
        )

    @classmethod
    def for_key(cls, key: ApiKey, data: Any = None) -> ApiKeySettingsForm:
        """The form filled in with ``key``'s settings (to edit it)."""
        return cls(
            data,
            initial={
                "name": key.name,
                "scopes": list(key.scopes),
                "owner": key.owner_id,
                "requests_per_minute": key.requests_per_minute,
                "tokens_per_minute": key.tokens_per_minute,
                "daily_budget_usd": key.daily_budget_usd,
            },
        )
