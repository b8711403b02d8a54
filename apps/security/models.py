"""API keys for integrations and game clients."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiKey(models.Model):
    """A revocable credential with scopes. Only a SHA-256 digest of the secret is stored.

    The key as handed out is ``bb_<prefix>_<secret>``; ``prefix`` (public, unique) finds the row
    and the digest of the whole key is compared in constant time. Keys carry 190+ bits of
    randomness, so a fast digest is safe and keeps authentication off the hot path's budget.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="api_keys",
        help_text="The person accountable for the key, when there is one.",
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: BODYBROKER_DEFAULT_RPM (0 there = no limit)."
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: BODYBROKER_DEFAULT_TPM (0 there = no limit)."
    )
    daily_budget_usd = models.FloatField(
        null=True,
        blank=True,
        help_text="Cost per UTC day at the tier price table. Empty: "
        "BODYBROKER_DEFAULT_DAILY_BUDGET_USD (0 there = none).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.name} (bb_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
