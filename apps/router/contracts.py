"""The router's plain data: what a caller asks (``InferenceRequest``) and what it gets back
(``Answer``), whichever door — REST, OpenAI-compatible, websocket, MCP — the request came through.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings

from apps.router.policy import (
    CostSensitivity,
    Priority,
    RouteDecision,
    RoutingFacts,
    Sla,
    Tier,
    load_policy,
)

Source = Literal["model", "fallback_model", "cache", "template", "policy"]
SOURCES: tuple[Source, ...] = ("model", "fallback_model", "cache", "template", "policy")


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """One request for the models. ``messages`` are OpenAI-shaped chat messages."""

    messages: list[dict[str, Any]]
    sla: Sla = "interactive"
    max_tokens: int = 256
    temperature: float | None = None
    stop: list[str] | None = None
    needs_tools: bool = False
    requires_expert_reasoning: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    cost_sensitivity: CostSensitivity = "normal"
    priority: Priority | None = None
    persona: str | None = None
    npc_id: str | None = None
    deadline_ms: float | None = None
    seed: int | None = None
    # What the deterministic-policy link answers for this request (the NPC's micro-policy
    # choice, computed by the caller who knows the NPC's state); None = the registered policy.
    policy_answer: str | None = None

    @property
    def context_tokens(self) -> int:
        """A cheap estimate (4 characters a token, 4 tokens of framing a message)."""
        chars = 0
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):  # text parts, as the OpenAI door accepts them
                chars += sum(
                    len(part["text"])
                    for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
        return chars // 4 + 4 * len(self.messages)

    @property
    def effective_priority(self) -> Priority:
        """Real-time and interactive traffic is ``realtime``; the rest is ``background``."""
        if self.priority is not None:
            return self.priority
        return "realtime" if self.sla in ("real-time", "interactive") else "background"

    @property
    def deterministic(self) -> bool:
        """Greedy decoding: the same request always gets the same answer (cacheable)."""
        return self.temperature == 0

    def facts(self) -> RoutingFacts:
        return RoutingFacts(
            sla=self.sla,
            max_tokens=self.max_tokens,
            needs_tools=self.needs_tools or bool(self.tools),
            requires_expert_reasoning=self.requires_expert_reasoning,
            context_tokens=self.context_tokens,
            cost_sensitivity=self.cost_sensitivity,
        )

    def decide(self) -> RouteDecision:
        """Route with ``BODYBROKER_ROUTING_POLICY`` (default: the seed's rules,
        ``policy.route``)."""
        return load_policy(settings.BODYBROKER_ROUTING_POLICY)(self.facts())

    def replace(self, **changes: Any) -> InferenceRequest:
        return dataclasses.replace(self, **changes)


@dataclass(slots=True)
class Answer:
    """A synchronous answer and which link of which tier's chain produced it."""

    text: str
    tier: Tier
    source: Source
    model: str
    route_reason: str
    finish_reason: str | None = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    fallback_reasons: list[str] = field(default_factory=list)
    cached: bool = False

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
