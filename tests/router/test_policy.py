"""The routing policy as a decision table: facts in, tier and reason out."""

from __future__ import annotations

import pytest

from apps.router.contracts import InferenceRequest
from apps.router.policy import RouteDecision, RoutingFacts, load_policy, route

# sla, max_tokens, needs_tools, expert, context_tokens, cost → tier, words in the reason
TABLE = [
    ("real-time", 8, False, False, 50, "normal", "gold", "real-time"),
    ("real-time", 1, True, False, 50, "normal", "gold", "real-time"),
    ("real-time", 9, False, False, 50, "normal", "silver", "default tier for real-time"),
    ("interactive", 64, True, False, 50, "normal", "silver", "needs tools"),
    ("interactive", 64, False, False, 50, "normal", "silver", "default tier for interactive"),
    ("interactive", 64, False, True, 50, "normal", "bronze", "expert reasoning"),
    ("async", 4, False, False, 50, "normal", "bronze", "async"),
    ("async", 2000, True, True, 50, "normal", "bronze", "async"),
    ("real-time", 8, False, True, 50, "normal", "gold", "real-time"),
    # guards: a context too big for the tier moves the request up
    ("real-time", 8, False, False, 5_000, "normal", "silver", "exceeds gold"),
    ("interactive", 64, False, False, 40_000, "normal", "bronze", "exceeds silver"),
    ("real-time", 4, False, False, 40_000, "normal", "bronze", "exceeds silver"),
    # cost-sensitive short requests that need nothing Silver has drop to Gold
    ("interactive", 8, False, False, 50, "high", "gold", "cost-sensitive"),
    ("interactive", 8, True, False, 50, "high", "silver", "needs tools"),
    ("interactive", 64, False, False, 50, "high", "silver", "default tier"),
    ("async", 8, False, False, 50, "high", "bronze", "async"),
]


@pytest.mark.parametrize(
    ("sla", "max_tokens", "tools", "expert", "context", "cost", "tier", "why"), TABLE
)
def test_decision_table(
    sla: str,
    max_tokens: int,
    tools: bool,
    expert: bool,
    context: int,
    cost: str,
    tier: str,
    why: str,
) -> None:
    decision = route(
        RoutingFacts(
            sla=sla,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            needs_tools=tools,
            requires_expert_reasoning=expert,
            context_tokens=context,
            cost_sensitivity=cost,  # type: ignore[arg-type]
        )
    )
    assert decision.tier == tier
    assert why in decision.reason


def test_a_request_with_tools_counts_as_needing_tools() -> None:
    request = InferenceRequest(
        messages=[{"role": "user", "content": "what's in the morgue?"}],
        max_tokens=64,
        tools=[{"type": "function", "function": {"name": "search_lore", "parameters": {}}}],
    )
    assert request.decide() == RouteDecision("silver", "interactive and needs tools")


def test_context_size_is_estimated_from_the_messages() -> None:
    request = InferenceRequest(
        messages=[{"role": "user", "content": "x" * 40_000}], sla="real-time", max_tokens=8
    )
    assert request.context_tokens == 10_004
    assert request.decide().tier == "silver"


def always_bronze(facts: RoutingFacts) -> RouteDecision:
    return RouteDecision("bronze", "this deployment sends everything to Bronze")


def test_a_deployment_can_replace_the_policy(settings: object) -> None:
    settings.BODYBROKER_ROUTING_POLICY = "tests.router.test_policy:always_bronze"  # type: ignore[attr-defined]
    request = InferenceRequest(
        messages=[{"role": "user", "content": "hi"}], sla="real-time", max_tokens=2
    )
    assert request.decide() == RouteDecision("bronze", "this deployment sends everything to Bronze")


@pytest.mark.parametrize("path", ["nodots", "apps.router.policy:", "apps.router.policy:SLAS"])
def test_a_bad_policy_path_is_a_clear_error(path: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        load_policy(path)
