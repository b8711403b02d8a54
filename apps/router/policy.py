"""The routing policy: which tier answers a request, and why.

The seed's rules, in order, are one readable table (``SEED_RULES``):

1. real-time and at most 8 output tokens → Gold
2. interactive and needs tools → Silver
3. async → Bronze
4. expert reasoning required → Bronze
5. anything else → Silver

Two guards run after the rules, because a tier that cannot hold the prompt cannot answer it:
a context larger than the chosen tier's window moves the request up (Gold → Silver → Bronze),
and a cost-sensitive request that asked for nothing Silver is needed for may drop to Gold when
it fits Gold's budget. A deployment replaces the whole policy with
``BODYBROKER_ROUTING_POLICY = "package.module:callable"`` (same signature as :func:`route`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import Literal

Tier = Literal["gold", "silver", "bronze"]
Sla = Literal["real-time", "interactive", "async"]
CostSensitivity = Literal["low", "normal", "high"]
Priority = Literal["realtime", "background"]
TIERS: tuple[Tier, ...] = ("gold", "silver", "bronze")
SLAS: tuple[Sla, ...] = ("real-time", "interactive", "async")
COST_SENSITIVITIES: tuple[CostSensitivity, ...] = ("low", "normal", "high")
PRIORITIES: tuple[Priority, ...] = ("realtime", "background")
GOLD_MAX_TOKENS = 8
# Context windows of the default models (tokens): Qwen2.5-3B at 4k on Gold (sliding window),
# Llama-3.1-8B at 32k as served on Silver, DeepSeek-V3 at 128k on Bronze.
CONTEXT_WINDOW: dict[Tier, int] = {"gold": 4096, "silver": 32768, "bronze": 131072}


def context_window(tier: Tier, served: int | None = None) -> int:
    """The tokens (prompt and answer together) a tier can hold: its model's window, or the
    smaller window its engine is served with (``served``) where that is known."""
    window = CONTEXT_WINDOW[tier]
    return min(window, served) if served else window


@dataclass(frozen=True, slots=True)
class RoutingFacts:
    """What the policy looks at; everything else about a request is irrelevant to routing."""

    sla: Sla
    max_tokens: int
    needs_tools: bool = False
    requires_expert_reasoning: bool = False
    context_tokens: int = 0
    cost_sensitivity: CostSensitivity = "normal"


@dataclass(frozen=True, slots=True)
class RouteDecision:
    tier: Tier
    reason: str


@dataclass(frozen=True, slots=True)
class Rule:
    """``when`` the facts match, the request goes to ``tier``; ``why`` explains it."""

    tier: Tier
    why: str
    when: Callable[[RoutingFacts], bool]


SEED_RULES: tuple[Rule, ...] = (
    Rule(
        "gold",
        f"real-time with max_tokens ≤ {GOLD_MAX_TOKENS}",
        lambda f: f.sla == "real-time" and f.max_tokens <= GOLD_MAX_TOKENS,
    ),
    Rule(
        "silver", "interactive and needs tools", lambda f: f.sla == "interactive" and f.needs_tools
    ),
    Rule("bronze", "async SLA", lambda f: f.sla == "async"),
    Rule("bronze", "requires expert reasoning", lambda f: f.requires_expert_reasoning),
)
DEFAULT_RULE = Rule("silver", "default tier", lambda f: True)
_ORDER: tuple[Tier, ...] = ("gold", "silver", "bronze")


def route(facts: RoutingFacts) -> RouteDecision:
    """The seed's policy with the context-window and cost guards."""
    rule = next((r for r in SEED_RULES if r.when(facts)), DEFAULT_RULE)
    tier, reason = rule.tier, rule.why
    if rule is DEFAULT_RULE:
        reason = f"default tier for {facts.sla} SLA"
    if (
        tier == "silver"
        and facts.cost_sensitivity == "high"
        and not facts.needs_tools
        and facts.sla != "async"
        and facts.max_tokens <= GOLD_MAX_TOKENS
        and facts.context_tokens <= CONTEXT_WINDOW["gold"]
    ):
        tier, reason = "gold", f"cost-sensitive and fits Gold (max_tokens ≤ {GOLD_MAX_TOKENS})"
    while facts.context_tokens > CONTEXT_WINDOW[tier] and tier != "bronze":
        bigger = _ORDER[_ORDER.index(tier) + 1]
        reason = (
            f"context of {facts.context_tokens} tokens exceeds {tier}'s "
            f"{CONTEXT_WINDOW[tier]}; moved to {bigger} ({reason})"
        )
        tier = bigger
    return RouteDecision(tier, reason)


@cache
def load_policy(path: str) -> Callable[[RoutingFacts], RouteDecision]:
    """The policy callable named by ``package.module:callable`` (cached)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"routing policy {path!r} must look like 'package.module:callable'")
    policy = getattr(import_module(module_name), attr)
    if not callable(policy):
        raise TypeError(f"routing policy {path!r} is not callable")
    return policy  # type: ignore[no-any-return]
