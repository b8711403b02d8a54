"""Where each tier's engines are, from settings (used by Bronze jobs and the health check)."""

from __future__ import annotations

from django.conf import settings

from apps.router.policy import Tier
from apps.router.pools import EngineHealth, engine_health, engine_timeouts

__all__ = ["EngineHealth", "engine_health", "engine_timeouts", "tier_endpoint", "tier_urls"]


def tier_endpoint(tier: Tier) -> tuple[str, str]:
    """(base URL, model name) of the tier's first endpoint."""
    conf = settings.BODYBROKER_TIERS[tier]
    return str(conf["urls"][0]), str(conf["model"])


def tier_urls(tier: Tier) -> list[str]:
    return [str(url) for url in settings.BODYBROKER_TIERS[tier]["urls"]]
