"""Deciding one NPC's next intent through the Gold tier, constrained to what it may do.

An intent request is compact: one instruction shared by every NPC, then the NPC's persona prompt
(so every request begins with the same tokens, which a one-slot llama.cpp engine reuses from
the previous NPC's request, and each NPC's requests begin alike, which paged prefix caches
reuse), a one-line summary of its state, at most ``intent_max_tokens``
(≤ 8) output tokens, and a JSON schema whose only valid answers are the NPC's allowed intents
(llama.cpp turns it into a grammar; vLLM/TensorRT-LLM into guided decoding). The router's Gold
chain answers it: model → smaller model → the NPC's last good intent → the NPC's micro-policy,
whose deterministic choice travels with the request, so every NPC gets a valid intent whatever
is down.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.router import chains
from apps.router.contracts import Answer, InferenceRequest
from apps.router.policy import RouteDecision
from npc_runtime.policies import Intent, NpcState, allowed_names, choose_intent, intent_args

if TYPE_CHECKING:
    from apps.npcs.models import Npc

# What each chain link is called on the wire (protocol ``intent.source``).
WIRE_SOURCE = {
    "model": "model",
    "fallback_model": "model",
    "cache": "cache",
    "template": "policy",
    "policy": "policy",
}
DECISION = RouteDecision("gold", "NPC intent: real-time, at most 8 tokens")


@dataclass(frozen=True, slots=True)
class NpcBrief:
    """What the intent loop needs to know about an NPC, read once and kept."""

    slug: str
    policy: str
    allowed: tuple[str, ...]
    allowed_raw: tuple[dict[str, Any], ...]
    default_intent: str
    prompt: str
    hz: float
    max_tokens: int


def _brief_of(npc: Npc) -> NpcBrief:
    from apps.npcs.selectors import npc_prompt

    raw = tuple(dict(item) for item in npc.allowed_intents)
    return NpcBrief(
        slug=npc.slug,
        policy=npc.micro_policy,
        allowed=tuple(sorted(allowed_names(raw))),
        allowed_raw=raw,
        default_intent=npc.default_intent,
        prompt=npc_prompt(npc),
        hz=npc.intent_hz,
        max_tokens=min(npc.intent_max_tokens, 8),
    )


def _read_briefs(slugs: list[str]) -> dict[str, NpcBrief | None]:
    """The briefs of ``slugs`` in one query (``None`` for unknown or inactive NPCs)."""
    from django.db import close_old_connections

    from apps.npcs.selectors import npcs_list

    close_old_connections()  # a worker thread's connection may have gone stale
    found: dict[str, NpcBrief | None] = dict.fromkeys(slugs)
    for npc in npcs_list(active=True).filter(slug__in=slugs):
        found[npc.slug] = _brief_of(npc)
    return found


_briefs: dict[str, tuple[float, NpcBrief | None]] = {}
BRIEF_TTL_S = 5.0


async def npc_brief(slug: str) -> NpcBrief | None:
    """The NPC's brief, re-read from the database at most every few seconds."""
    return (await npc_briefs([slug]))[slug]


async def npc_briefs(slugs: list[str]) -> dict[str, NpcBrief | None]:
    """The briefs of many NPCs; those not read in the last few seconds in one query."""
    now = time.monotonic()
    out: dict[str, NpcBrief | None] = {}
    stale: list[str] = []
    for slug in slugs:
        hit = _briefs.get(slug)
        if hit is not None and hit[0] > now:
            out[slug] = hit[1]
        else:
            stale.append(slug)
    if stale:
        read = await sync_to_async(_read_briefs, thread_sensitive=False)(stale)
        for slug, brief in read.items():
            _briefs[slug] = (now + BRIEF_TTL_S, brief)
            out[slug] = brief
    return out


def forget_briefs() -> None:
    _briefs.clear()


def describe(state: NpcState) -> str:
    """One line a small model can read: what the NPC feels, sees and hears."""
    parts = [f"health {state.health:.1f}", f"fear {state.fear:.1f}"]
    if state.player_visible:
        parts.append(f"the player is visible {state.player_distance:.0f} m away")
    else:
        parts.append("the player is not in sight")
    if state.noise > 0.3:
        parts.append("a loud noise nearby" if state.noise > 0.7 else "a faint noise nearby")
    return ", ".join(parts)


def feasible(brief: NpcBrief, state: NpcState) -> list[str]:
    """The NPC's allowed intents whose arguments this state can supply (``attack`` needs a
    player in sight, ``patrol`` a route): the only answers worth letting the model give."""
    names = [name for name in brief.allowed if intent_args(name, state) is not None]
    return names or list(brief.allowed)


# First in every intent request: the part every NPC shares comes before the persona, so the
# engine's prompt cache reuses it from one NPC's request to the next and the CPU Gold answers
# sooner (`make bench-gold-prompt`; figures in docs/npcs.md).
INTENT_INSTRUCTION = "Choose what you do next, as one word from the list."


def intent_request(brief: NpcBrief, state: NpcState, fallback: Intent) -> InferenceRequest:
    schema = {"type": "string", "enum": feasible(brief, state)}
    return InferenceRequest(
        messages=[
            {"role": "system", "content": f"{INTENT_INSTRUCTION} {brief.prompt}"},
            {"role": "user", "content": describe(state)},
        ],
        sla="real-time",
        # An intent later than its TTL is worth nothing: the chain falls back before that.
        deadline_ms=settings.BODYBROKER_INTENT_TTL_MS,
        max_tokens=brief.max_tokens,
        temperature=0.3,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "intent", "schema": schema},
        },
        npc_id=brief.slug,
        persona=brief.slug,
        policy_answer=json.dumps(fallback.name),
    )


def parse_intent(answer: Answer, brief: NpcBrief) -> str | None:
    """The intent name in a model's answer, if it is one the NPC may use."""
    text = answer.text.strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = text.strip('"')
    if isinstance(value, dict):
        value = value.get("intent")
    return value if isinstance(value, str) and value in brief.allowed else None


async def decide_intent(brief: NpcBrief, state: NpcState) -> dict[str, Any]:
    """Ask the Gold chain for the NPC's next intent; returns the protocol's ``intent`` fields.

    A model answer outside the allowed set, or one whose arguments the state cannot supply,
    is replaced by the micro-policy's choice (``source: "policy"``).
    """
    fallback = choose_intent(brief.policy, state, brief.allowed_raw)
    answer = await chains.answer(intent_request(brief, state, fallback), DECISION)
    name = parse_intent(answer, brief)
    args = intent_args(name, state) if name is not None else None
    source = WIRE_SOURCE.get(answer.source, "policy")
    if name is None or args is None:
        name, args, source = fallback.name, fallback.args, "policy"
    return {
        "npc_id": brief.slug,
        "intent": name,
        "args": args,
        "source": source,
        "generated_at": time.time(),
        "ttl_ms": settings.BODYBROKER_INTENT_TTL_MS,
    }


def policy_intent(brief: NpcBrief, state: NpcState) -> dict[str, Any]:
    """The micro-policy's intent, for when nothing fresher is cached."""
    chosen = choose_intent(brief.policy, state, brief.allowed_raw)
    return {
        "npc_id": brief.slug,
        "intent": chosen.name,
        "args": chosen.args,
        "source": "policy",
        "generated_at": time.time(),
        "ttl_ms": settings.BODYBROKER_INTENT_TTL_MS,
    }
