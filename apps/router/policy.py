"""The routing policy: which tier answers a request, and why.

The seed's rules, in order:
1. real-time and at most 8 output tokens → Gold
2. interactive and needs tools → Silver
3. async, or expert reasoning required → Bronze
4. anything else → Silver
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Tier = Literal["gold", "silver", "bronze"]
Sla = Literal["real-time", "interactive", "async"]
TIERS: tuple[Tier, ...] = ("gold", "silver", "bronze")
SLAS: tuple[Sla, ...] = ("real-time", "interactive", "async")
GOLD_MAX_TOKENS = 8


@dataclass(frozen=True, slots=True)
class RouteDecision:
    tier: Tier
    reason: str


def route(
    *,
    sla: Sla,
    max_tokens: int,
    needs_tools: bool = False,
    requires_expert_reasoning: bool = False,
) -> RouteDecision:
    if sla == "real-time" and max_tokens <= GOLD_MAX_TOKENS:
        return RouteDecision("gold", f"real-time with max_tokens {max_tokens} ≤ {GOLD_MAX_TOKENS}")
    if sla == "interactive" and needs_tools:
        return RouteDecision("silver", "interactive and needs tools")
    if sla == "async":
        return RouteDecision("bronze", "async SLA")
    if requires_expert_reasoning:
        return RouteDecision("bronze", "requires expert reasoning")
    return RouteDecision("silver", f"default tier for {sla} SLA")
