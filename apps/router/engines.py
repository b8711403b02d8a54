"""Where each tier's engines are, from settings (used by Bronze jobs and the health check)."""

from __future__ import annotations

from django.conf import settings

from apps.router.policy import Tier
from apps.router.pools import EngineHealth, engine_health, engine_timeouts

__all__ = [
    "EngineHealth",
    "engine_health",
    "engine_timeouts",
    "served_context",
    "tier_endpoint",
    "tier_urls",
]


def tier_endpoint(tier: Tier) -> tuple[str, str]:
    """(base URL, model name) of the tier's first endpoint."""
    conf = settings.BODYBROKER_TIERS[tier]
    return str(conf["urls"][0]), str(conf["model"])


def tier_urls(tier: Tier) -> list[str]:
    return [str(url) for url in settings.BODYBROKER_TIERS[tier]["urls"]]


def served_context(tier: Tier) -> int | None:
    """The context window the tier's engine is launched with (``inference/profiles.toml``):
    the profile of the tier's engine kind serving the tier's model name, or None when no
    profile matches (an engine this project does not launch)."""
    from inference.errors import ProfileError
    from inference.profiles import load_profiles

    conf = settings.BODYBROKER_TIERS[tier]
    try:
        profiles = list(load_profiles())
    except ProfileError:
        return None
    for profile in profiles:
        if profile.engine == conf.get("engine") and profile.served_model_name == conf["model"]:
            return profile.served_context
    return None
