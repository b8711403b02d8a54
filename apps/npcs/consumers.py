"""The game-client websocket, ``/ws/game/`` — protocol v1 and v2 (``docs/protocol.md``).

Thin transport over ``npc_runtime.protocol``: parse, call the intent store / dialogue, answer.
A client needs the ``game`` scope (key in the handshake, or a signed-in session); anything else
is refused at the handshake. A bad frame gets an ``error`` frame and the socket stays open; a
client that keeps flooding past its rate (token bucket) is closed with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

import orjson
from channels.consumer import get_handler_name
from django.conf import settings

from apps.npcs import dialogue, prediction, updater
from apps.npcs.intents import NpcBrief, npc_brief, policy_intent
from apps.npcs.live import intent_group, live_store
from apps.security.scopes import GAME
from apps.security.websocket import KeyBoundConsumer
from npc_runtime import protocol as p
from npc_runtime.policies import NpcState
from npc_runtime.protocol import ProtocolError, state_from_wire

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = p.MAX_FRAME_BYTES
ABUSE_LIMIT = 200  # refused frames within ABUSE_WINDOW_S before the socket is closed
ABUSE_WINDOW_S = 10.0
MAX_SUBSCRIPTIONS = 1000
STATE_FLUSH_S = 0.1


class GameConsumer(KeyBoundConsumer):
    async def connect(self) -> None:
        if GAME not in self.scope.get("scopes", frozenset()):
            # Closing before accept makes the server answer the handshake with HTTP 403.
            await self.close()
            return
        self.subscribed: dict[str, NpcBrief] = {}
        self.groups: set[str] = set()  # the intent push groups this socket's NPCs are in
        self.protocol = 1  # until a hello asks for another supported version
        self.dialogues: dict[str, asyncio.Task[None]] = {}
        # Why a reply task was cancelled, for the cancellation metric (absent: the socket left).
        self.cancel_reasons: dict[asyncio.Task[None], str] = {}
        self.tokens = float(2 * settings.BODYBROKER_WS_RATE_PER_S)
        self.refilled = time.monotonic()
        self.refused: list[float] = []
        # Game clients send state every frame; the updater reads it at 1–2 Hz. The latest
        # state per NPC is kept here and written to the live store at most every
        # STATE_FLUSH_S, and intents pushed to this socket answer intent.get without a lookup.
        self.pending_states: dict[str, dict[str, Any]] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, tuple[float, dict[str, Any]]] = {}
        self.flusher: asyncio.Task[None] | None = None
        dialogue.warm_lore_soon()
        await self.follow_key()
        await self.accept()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch, without its per-message database-connection check.

        Channels hops to a thread on every message to close stale ORM connections, a large share
        of this socket's CPU under load (docs/npcs.md). This consumer never uses the ORM
        on the event loop: its few database reads run in worker threads that check their own
        connection first (see ``apps.npcs.intents`` and ``apps.npcs.dialogue``).
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "dialogues", {}).values():
            task.cancel()
        if getattr(self, "flusher", None) is not None:
            self.flusher.cancel()  # type: ignore[union-attr]
            await self._flush_states()
        for group in getattr(self, "groups", ()):
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.unfollow_key()

    # --- frames in -------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self._take_token():
            await self._refuse()
            return
        if text_data is None:
            await self._error(ProtocolError(p.BAD_FRAME, "frames must be JSON text"))
            return
        message: p.ClientMessage | None = None
        try:
            message = p.parse_client_message(text_data, MAX_FRAME_BYTES, self.protocol)
            await self._dispatch(message)
        except ProtocolError as exc:
            await self._error(exc)
        except Exception:
            # The protocol promises an error frame and an open socket, even for a bug here.
            logger.exception("game socket: a frame failed")
            ref = message.ref if message is not None else None
            await self._error(ProtocolError(p.INTERNAL, "the server failed on this frame", ref))

    async def _dispatch(self, message: p.ClientMessage) -> None:
        if isinstance(message, p.Ping):
            await self._send(
                p.Pong(server_time=time.time(), protocol=self.protocol, ref=message.ref)
            )
        elif isinstance(message, p.Hello):
            if message.protocol not in p.SUPPORTED_PROTOCOLS:
                raise ProtocolError(
                    p.UNSUPPORTED_VERSION,
                    f"protocol {message.protocol} is not supported",
                    message.ref,
                    "protocol",
                )
            self.protocol = message.protocol
            await self._send(
                p.Welcome(
                    protocol=message.protocol,
                    server_time=time.time(),
                    rate_per_s=settings.BODYBROKER_WS_RATE_PER_S,
                    ref=message.ref,
                )
            )
        elif isinstance(message, p.Subscribe):
            await self._subscribe(message)
        elif isinstance(message, p.Unsubscribe):
            self.subscribed.pop(message.npc_id, None)
            group = intent_group(message.npc_id)
            if group in self.groups and not any(
                intent_group(npc_id) == group for npc_id in self.subscribed
            ):
                self.groups.discard(group)
                await self.channel_layer.group_discard(group, self.channel_name)
            await self._send(p.Unsubscribed(npc_id=message.npc_id, ref=message.ref))
        elif isinstance(message, p.StateUpdate):
            self._require_subscribed(message.npc_id, message.ref)
            self._keep_states({message.npc_id: message.state})
        elif isinstance(message, p.StateBatch):
            for npc_id in message.states:  # all or nothing: check every NPC first
                self._require_subscribed(npc_id, message.ref, f"states.{npc_id}")
            self._keep_states(message.states)
        elif isinstance(message, p.IntentGet):
            brief = await self._brief(message.npc_id, message.ref)
            intent = await self._current_intent(brief)
            await self._send_raw(dict(intent, type="intent", ref=message.ref))
        elif isinstance(message, p.IntentsGet):
            briefs = [await self._brief(npc_id, message.ref) for npc_id in message.npc_ids]
            intents = [await self._current_intent(brief) for brief in briefs]
            await self._send_raw({"type": "intents", "intents": intents, "ref": message.ref})
        elif isinstance(message, p.DialogueSay):
            await self._say(message)
        elif isinstance(message, p.DialogueCancel):
            key = message.conversation_id or str(message.ref)
            task = self.dialogues.get(key)
            if task is None:
                raise ProtocolError(
                    p.BAD_FIELD, "no reply in progress by that id", message.ref, "conversation_id"
                )
            self.cancel_reasons[task] = "dialogue_cancel"
            task.cancel()

    async def _brief(self, npc_id: str, ref: Any) -> NpcBrief:
        brief = self.subscribed.get(npc_id) or await npc_brief(npc_id)
        if brief is None:
            raise ProtocolError(p.UNKNOWN_NPC, f"no active NPC {npc_id!r}", ref, "npc_id")
        return brief

    def _require_subscribed(self, npc_id: str, ref: Any, field: str = "npc_id") -> None:
        if npc_id not in self.subscribed:
            raise ProtocolError(p.NOT_SUBSCRIBED, f"subscribe to {npc_id!r} first", ref, field)

    def _keep_states(self, states: dict[str, dict[str, Any]]) -> None:
        self.pending_states.update(states)
        self.states.update(states)
        if self.flusher is None:
            self.flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _subscribe(self, message: p.Subscribe) -> None:
        brief = await self._brief(message.npc_id, message.ref)
        if message.npc_id not in self.subscribed and len(self.subscribed) >= MAX_SUBSCRIPTIONS:
            raise ProtocolError(
                p.BAD_FIELD, f"at most {MAX_SUBSCRIPTIONS} NPCs per socket", message.ref, "npc_id"
            )
        self.subscribed[brief.slug] = brief
        group = intent_group(brief.slug)
        if group not in self.groups:
            self.groups.add(group)
            await self.channel_layer.group_add(group, self.channel_name)
        await live_store().touch(brief.slug)
        updater.ensure_in_process()
        await self._send(
            p.Subscribed(
                npc_id=brief.slug,
                policy=brief.policy,
                allowed_intents=list(brief.allowed),
                default_intent=brief.default_intent,
                ref=message.ref,
            )
        )
        cached = await live_store().get_intent(brief.slug)
        if cached is not None:
            self._remember_intent(cached)
            await self._send_raw(dict(cached, type="intent", ref=None))

    async def _current_intent(self, brief: NpcBrief) -> dict[str, Any]:
        """The answer to ``intent.get``, at once: the NPC's current intent while it is fresh,
        else the micro-policy's choice for its latest state.

        For a subscribed NPC the socket's own copy is the current intent — every intent
        published for the NPC is pushed here — so answering costs no Redis round trip. For
        another NPC the live store is asked.
        """
        local = self.intents.get(brief.slug)
        if local is not None and local[0] > time.monotonic():
            cached: dict[str, Any] | None = local[1]
        elif brief.slug in self.subscribed:
            cached = None
        else:
            cached = await live_store().get_intent(brief.slug)
        if cached is not None:
            intent = dict(cached, source="cache")
        else:
            wire = self.states.get(brief.slug)
            if wire is None:
                live = await live_store().get_state(brief.slug)
                wire = live.state if live else None
            state = state_from_wire(brief.slug, wire) if wire else NpcState(npc_id=brief.slug)
            intent = policy_intent(brief, state)
        return intent

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(STATE_FLUSH_S)
            await self._flush_states()

    async def _flush_states(self) -> None:
        pending, self.pending_states = self.pending_states, {}
        if pending:
            await live_store().put_states(pending)

    async def _say(self, message: p.DialogueSay) -> None:
        who = await dialogue.speaker(message.npc_id)
        if who is None:
            raise ProtocolError(
                p.UNKNOWN_NPC, f"no active NPC {message.npc_id!r}", message.ref, "npc_id"
            )
        conversation_id, history = await dialogue.conversation_open(
            message.conversation_id, who.slug, self.scope.get("api_key")
        )
        key = conversation_id if message.ref is None else str(message.ref)
        task = asyncio.get_running_loop().create_task(
            self._stream_reply(who, conversation_id, history, message)
        )
        self.dialogues[key] = self.dialogues[conversation_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            for name in (key, conversation_id):
                self.dialogues.pop(name, None)
            self.cancel_reasons.pop(done, None)

        task.add_done_callback(forget)

    async def _stream_reply(
        self,
        who: dialogue.Speaker,
        conversation_id: str,
        history: list[dict[str, str]],
        message: p.DialogueSay,
    ) -> None:
        parts: list[str] = []
        source, cancelled = "template", False
        predicted = await prediction.match(who.slug, message.text)
        try:
            if predicted is not None:  # computed before the player spoke: sent at once
                source = "prediction"
                for piece in re.findall(r"\S+\s*", predicted["text"]):
                    parts.append(piece)
                    await self._token(conversation_id, piece, message.ref)
            else:
                events = dialogue.reply_stream(who, history, message.text)
                # Closed on cancellation wherever it lands, so the engine call ends with it.
                async with contextlib.aclosing(events):  # type: ignore[type-var]
                    async for event in events:
                        if event.answer is not None:
                            source = event.answer.source
                            break
                        if event.text:
                            parts.append(event.text)
                            await self._token(conversation_id, event.text, message.ref)
        except asyncio.CancelledError:
            cancelled = True
            task = asyncio.current_task()
            reason = (
                self.cancel_reasons.pop(task, "client_disconnect") if task else "client_disconnect"
            )
            if predicted is None:  # a model was generating this reply
                dialogue.reply_cancelled(reason)
        text = "".join(parts)
        wire_source = {"fallback_model": "model", "template": "safety"}.get(source, source)
        # Stored before the client hears ``done``, so a finished reply is always in the record.
        await dialogue.turns_record(conversation_id, message.text, text, wire_source, cancelled)
        await self._send(
            p.DialogueDone(
                conversation_id=conversation_id,
                text=text,
                source=wire_source,
                cancelled=cancelled,
                ref=message.ref,
            )
        )

    async def _token(self, conversation_id: str, text: str, ref: Any) -> None:
        await self._send(p.DialogueToken(conversation_id=conversation_id, text=text, ref=ref))

    # --- pushed by the intent updater -------------------------------------------------------

    async def npc_intents(self, event: dict[str, Any]) -> None:
        """Intents the updater published for a push group: this socket's NPCs' are kept and
        sent, as one ``intents`` frame in protocol 2 (``intent`` frames in protocol 1)."""
        mine = [intent for intent in event["intents"] if intent["npc_id"] in self.subscribed]
        for intent in mine:
            self._remember_intent(intent)
        if self.protocol >= 2 and len(mine) > 1:
            await self._send_raw({"type": "intents", "intents": mine, "ref": None})
        else:
            for intent in mine:
                await self._send_raw(dict(intent, type="intent", ref=None))

    def _remember_intent(self, intent: dict[str, Any]) -> None:
        """Keep an NPC's current intent for its TTL from now (as clients do: server clocks of
        the updater and this process need not agree)."""
        self.intents[intent["npc_id"]] = (time.monotonic() + intent["ttl_ms"] / 1000, intent)

    # --- limits and sending -------------------------------------------------------------------

    def _take_token(self) -> bool:
        now = time.monotonic()
        rate = settings.BODYBROKER_WS_RATE_PER_S
        self.tokens = min(2.0 * rate, self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def _refuse(self) -> None:
        now = time.monotonic()
        self.refused = [at for at in self.refused if at > now - ABUSE_WINDOW_S]
        self.refused.append(now)
        if len(self.refused) > ABUSE_LIMIT:
            await self.close(code=1008)
            return
        if len(self.refused) == 1 or len(self.refused) % 50 == 0:
            rate = settings.BODYBROKER_WS_RATE_PER_S
            await self._error(ProtocolError(p.RATE_LIMITED, f"over {rate} frames per second"))

    async def _error(self, exc: ProtocolError) -> None:
        await self._send(exc.to_error())

    async def _send(self, message: p.ServerMessage) -> None:
        await self.send(text_data=p.encode(message))

    async def _send_raw(self, payload: dict[str, Any]) -> None:
        # orjson: several times faster than the standard encoder on the socket's hot path
        # (server data: finite numbers, which orjson needs).
        await self.send(text_data=orjson.dumps(payload).decode())
