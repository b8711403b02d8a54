"""NPC dialogue: a Silver reply streamed token by token, grounded in the lore the NPC may know.

The prompt is the NPC's persona, the lore passages its knowledge scope allows about what the
player said (the story app's retrieval, cached five minutes by the router), and the
conversation's last ten turns. The Silver chain answers: model → smaller model → cached
response → the NPC's in-character safety line. Every turn is stored (they feed distillation).
A reply cancelled (``dialogue.cancel``, the socket closing) closes its engine connection, and
the engine stops generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from apps.npcs.models import Conversation, DialogueTurn
from apps.router import caches, chains
from apps.router.chains import StreamEvent
from apps.router.contracts import InferenceRequest
from apps.router.policy import RouteDecision

HISTORY_TURNS = 10
DECISION = RouteDecision("silver", "NPC dialogue: interactive")


@dataclass(frozen=True, slots=True)
class Speaker:
    slug: str
    prompt: str
    lore_persona: str | None  # the lore character whose knowledge this NPC has, if any
    max_tokens: int


def _speaker(slug: str) -> Speaker | None:
    from django.db import close_old_connections

    from apps.npcs.personas import npc_persona, remember
    from apps.npcs.selectors import npc_get, npc_prompt

    close_old_connections()  # a worker thread's connection may have gone stale
    npc = npc_get(slug=slug)
    if npc is None or not npc.active:
        return None
    # The Silver chain's last link speaks the NPC's safety lines through the persona provider,
    # which async code can only read from its cache: put this NPC there now.
    remember(npc.slug, npc_persona(npc))
    scope = list(npc.knowledge_scope or [])
    return Speaker(npc.slug, npc_prompt(npc), scope[0] if scope else None, npc.dialogue_max_tokens)


async def speaker(slug: str) -> Speaker | None:
    return await sync_to_async(_speaker, thread_sensitive=False)(slug)


def _open(conversation_id: str | None, slug: str, key: Any) -> tuple[str, list[dict[str, str]]]:
    close_old_connections()
    conversation = None
    if conversation_id:
        conversation = Conversation.objects.filter(pk=conversation_id, npc_slug=slug).first()
    if conversation is None:
        conversation = Conversation.objects.create(npc_slug=slug, api_key=key)
    turns = list(conversation.turns.order_by("-created_at", "-id")[:HISTORY_TURNS])
    history = [
        {
            "role": "user" if t.speaker == DialogueTurn.Speaker.PLAYER else "assistant",
            "content": t.text,
        }
        for t in reversed(turns)
    ]
    return str(conversation.pk), history


async def conversation_open(
    conversation_id: str | None, slug: str, key: Any
) -> tuple[str, list[dict[str, str]]]:
    """The conversation (a new one when unknown) and its last ten turns as chat messages."""
    return await sync_to_async(_open, thread_sensitive=False)(conversation_id, slug, key)


def _record(conversation_id: str, player: str, reply: str, source: str, cancelled: bool) -> None:
    close_old_connections()
    DialogueTurn.objects.bulk_create(
        [
            DialogueTurn(
                conversation_id=conversation_id, speaker=DialogueTurn.Speaker.PLAYER, text=player
            ),
            DialogueTurn(
                conversation_id=conversation_id,
                speaker=DialogueTurn.Speaker.NPC,
                text=reply,
                source=source,
                cancelled=cancelled,
            ),
        ]
    )


async def turns_record(
    conversation_id: str, player: str, reply: str, source: str, cancelled: bool
) -> None:
    await sync_to_async(_record, thread_sensitive=False)(
        conversation_id, player, reply, source, cancelled
    )


async def reply_stream(
    who: Speaker, history: list[dict[str, str]], text: str, *, background: bool = False
) -> AsyncIterator[StreamEvent]:
    """The NPC's reply to ``text`` as the router's stream events (the last one is the answer)."""
    lore = await caches.lore_context(who.lore_persona, text) if who.lore_persona else ""
    system = who.prompt
    if lore:
        system += f"\n\nWhat you know:\n{lore}"
    request = InferenceRequest(
        messages=[
            {"role": "system", "content": system},
            *history,
            {"role": "user", "content": text},
        ],
        sla="interactive",
        max_tokens=who.max_tokens,
        temperature=0.7,
        persona=who.slug,
        # Precomputed replies wait in the background line, behind what players are saying now.
        priority="background" if background else "realtime",
    )
    # Closed with this generator (the reply cancelled, the socket gone), not when the garbage
    # collector gets to it: closing it closes the engine's connection, and generation stops.
    events = chains.stream(request, DECISION)
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for event in events:
            yield event


def reply_cancelled(reason: str) -> None:
    """Count a reply stopped mid-generation: ``dialogue_cancel`` or ``client_disconnect``."""
    chains.count_cancelled(DECISION.tier, reason)


_warming: set[asyncio.Task[None]] = set()


def warm_lore_soon() -> None:
    """Load the lore embedder in a worker thread once per process, when the first game client
    connects, so the first player line is not the one that waits five seconds for it."""
    if _warming:
        return
    from apps.story.retrieval.embedder import warm

    def warm_and_freeze() -> None:
        warm()
        # The model's objects live as long as the process: out of the collector's generations,
        # so full collections stay short (with it in, they stalled the event loop under
        # bench-npcs: docs/npcs.md).
        gc.freeze()

    task = asyncio.get_running_loop().create_task(
        sync_to_async(warm_and_freeze, thread_sensitive=False)()
    )
    _warming.add(task)  # kept for the life of the process: warming happens once


async def lore_for_dialogue(persona: str | None, topic: str) -> str:
    """The router's lore provider: the story app's retrieval, as the persona may know it."""
    from apps.story.mcp import retrieve_context

    try:
        found = await sync_to_async(retrieve_context, thread_sensitive=False)(
            topic, persona=persona, max_chars=800
        )
    except ValueError:  # not a lore character (yet): the NPC knows no lore, rather than all
        return ""
    return str(found["context"])
