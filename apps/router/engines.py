"""The router's view of the engines: one pooled client per tier endpoint, built from settings.

Everything that talks to a model server goes through ``inference.client``; this module only
turns the ``BODYBROKER_TIERS`` setting into clients.
"""

from __future__ import annotations

from django.conf import settings

from apps.router.policy import Tier
from inference.client import EngineClient, Timeouts, get_client


def tier_endpoint(tier: Tier) -> tuple[str, str]:
    """(base URL, model name) of the tier's first endpoint."""
    conf = settings.BODYBROKER_TIERS[tier]
    return str(conf["urls"][0]), str(conf["model"])


def engine_timeouts() -> Timeouts:
    return Timeouts(**settings.BODYBROKER_ENGINE_TIMEOUTS)


def tier_client(tier: Tier) -> EngineClient:
    """The pooled client for ``tier`` on the running event loop (shared by its requests)."""
    url, model = tier_endpoint(tier)
    return get_client(url, model, engine_timeouts())


def tier_urls(tier: Tier) -> list[str]:
    return list(settings.BODYBROKER_TIERS[tier]["urls"])
