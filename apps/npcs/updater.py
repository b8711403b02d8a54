"""The intent updater: refreshes the intent of every watched NPC at 1–2 Hz without ever queueing.

For each NPC a game client subscribed to in the last few seconds (and that belongs to this
shard), at most one Gold request is in flight. An NPC is asked again only when its state
changed since the last ask; if the state is unchanged the last intent is re-published (source
``cache``) so clients keep a fresh one. The interval per NPC is ``1 / intent_hz``, stretched to
twice the last answer's latency when Gold is slow — the rate adapts instead of building a queue.
Intents are written to the live store (TTL 2 s) and pushed to the NPC's channel-layer group.

Production: ``python manage.py run_intents --shard i --shards n`` per shard, sharing Redis with
the web processes. Embedded default: the web process runs one updater itself
(:func:`ensure_in_process`), since its store and channel layer are in-process.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
import zlib
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from prometheus_client import Counter, Histogram

from apps.npcs import dialogue
from apps.npcs.intents import NpcBrief, decide_intent, npc_brief
from apps.npcs.live import LiveState, live_store, npc_group
from apps.npcs.prediction import likely_lines, predict
from apps.router.metrics import REGISTRY
from npc_runtime.policies import NpcState
from npc_runtime.protocol import state_from_wire

logger = logging.getLogger(__name__)

INTENTS = Counter(
    "bodybroker_npc_intents", "Intents published, by source", ["source"], registry=REGISTRY
)
INTENT_SECONDS = Histogram(
    "bodybroker_npc_intent_seconds", "Time to decide one intent", registry=REGISTRY
)


MAX_PREDICTIONS_IN_FLIGHT = 2


def shard_of(npc_id: str, shards: int) -> int:
    return zlib.crc32(npc_id.encode()) % shards


class IntentUpdater:
    def __init__(self, *, shard: int = 0, shards: int = 1, tick_s: float = 0.05) -> None:
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
        self.shard, self.shards, self.tick_s = shard, shards, tick_s
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.asked_version: dict[str, int] = {}
        self.next_due: dict[str, float] = {}
        self.last_intent: dict[str, dict[str, Any]] = {}
        self.states: dict[str, NpcState] = {}
        self.predicting: dict[str, asyncio.Task[None]] = {}

    def owns(self, npc_id: str) -> bool:
        return self.shards == 1 or shard_of(npc_id, self.shards) == self.shard

    async def tick(self) -> int:
        """One pass over the watched NPCs; returns how many refreshes it started."""
        store = live_store()
        now = time.monotonic()
        started = 0
        for npc_id in await store.active():
            if npc_id in self.in_flight or not self.owns(npc_id):
                continue
            if now < self.next_due.get(npc_id, 0.0):
                continue
            live = await store.get_state(npc_id)
            if live is None:
                continue
            brief = await npc_brief(npc_id)
            if brief is None:
                continue
            task = asyncio.get_running_loop().create_task(self._refresh(brief, live))
            self.in_flight[npc_id] = task
            task.add_done_callback(self._landed)
            started += 1
        return started

    def _landed(self, task: asyncio.Task[None]) -> None:
        for npc_id, running in list(self.in_flight.items()):
            if running is task:
                del self.in_flight[npc_id]

    async def _refresh(self, brief: NpcBrief, live: LiveState) -> None:
        slug = brief.slug
        began = time.monotonic()
        try:
            if live.version == self.asked_version.get(slug) and slug in self.last_intent:
                intent = dict(self.last_intent[slug], source="cache", generated_at=time.time())
            else:
                state = state_from_wire(slug, live.state, into=self.states.get(slug))
                self.states[slug] = state
                with INTENT_SECONDS.time():
                    intent = await decide_intent(brief, state)
                self.asked_version[slug] = live.version
                self.last_intent[slug] = intent
            await publish(intent)
            await self._maybe_predict(slug, brief)
        except Exception:  # one NPC's failure must not stop the loop; the next tick retries
            logger.exception("refreshing the intent of %s failed", slug)
        finally:
            elapsed = time.monotonic() - began
            self.next_due[slug] = began + max(1.0 / brief.hz, 2 * elapsed)

    async def _maybe_predict(self, slug: str, brief: NpcBrief) -> None:
        """Start precomputing a reply when the player is about to talk to the NPC."""
        state = self.states.get(slug)
        if state is None or slug in self.predicting:
            return
        if len(self.predicting) >= MAX_PREDICTIONS_IN_FLIGHT:
            return  # Silver's time goes to players who are speaking, not to guesses
        lines = likely_lines(brief.policy, state)
        if not lines or await live_store().get_prediction(slug) is not None:
            return
        who = await dialogue.speaker(slug)
        if who is None:
            return
        task = asyncio.get_running_loop().create_task(self._predict(who, lines[0]))
        self.predicting[slug] = task

    async def _predict(self, who: dialogue.Speaker, line: str) -> None:
        try:
            await predict(who, line)
        except Exception:
            logger.exception("predicting a reply for %s failed", who.slug)
        finally:
            self.predicting.pop(who.slug, None)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        while stop is None or not stop.is_set():
            try:
                await self.tick()
            except Exception:
                logger.exception("intent updater tick failed")
            await asyncio.sleep(self.tick_s)
        for task in [*self.in_flight.values(), *self.predicting.values()]:
            task.cancel()


async def publish(intent: dict[str, Any]) -> None:
    """Write an intent to the live store and push it to the NPC's subscribers."""
    INTENTS.labels(intent["source"]).inc()
    await live_store().put_intent(intent["npc_id"], intent, intent["ttl_ms"])
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(
            npc_group(intent["npc_id"]), {"type": "npc.intent", "intent": intent}
        )


_in_process: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def ensure_in_process() -> None:
    """Run one updater in this (web) process's event loop when the deployment says so
    (``BODYBROKER_INTENT_UPDATER_IN_PROCESS``, on by default without Redis)."""
    if not settings.BODYBROKER_INTENT_UPDATER_IN_PROCESS:
        return
    loop = asyncio.get_running_loop()
    task = _in_process.get(loop)
    if task is None or task.done():
        _in_process[loop] = loop.create_task(IntentUpdater().run())
