"""Applying the deployment's routing policy to a request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from apps.router.policy import RouteDecision, load_policy

if TYPE_CHECKING:
    from apps.router.contracts import InferenceRequest


def decide(request: InferenceRequest) -> RouteDecision:
    """Route with ``BODYBROKER_ROUTING_POLICY`` (default: the seed's rules, ``policy.route``)."""
    return load_policy(settings.BODYBROKER_ROUTING_POLICY)(request.facts())
