"""The intent updater: refreshes the intent of every watched NPC at 1–2 Hz without ever queueing.

Two clocks per NPC a game client subscribed to in the last few seconds (and that belongs to this
shard):

- **Gold asks.** Whenever a Gold slot is free, it goes to the NPC whose last model answer is
  oldest among those whose state changed since they were last asked — every NPC gets its turn.
  At most ``model_slots`` asks are in flight (what the Gold endpoints serve without queueing,
  split between shards), at most one per NPC, and an NPC is not asked again sooner than
  ``1 / intent_hz`` nor sooner than twice its last answer's latency. The answer is published
  at once (``model``, or whichever link of the Gold chain answered).
- **Publishing.** Every ``1 / intent_hz`` seconds after its last intent an NPC gets one at
  once, without a model (also while its Gold ask is out): the last answer again if its state
  is unchanged (``cache``); else its last model intent if younger than ``CACHE_MAX_AGE_S``
  and still applicable to the new state (``cache``); else its micro-policy's choice
  (``policy``). Only an NPC whose ask went out in the last ``ASK_GRACE_S`` waits for it.

So when Gold is slower than the NPCs need, the model's share of intents shrinks instead of a
queue growing, and every NPC still gets a valid intent each interval. Intents are written to
the live store (TTL 2 s) and pushed to the NPC's channel-layer group.

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
from apps.npcs.intents import NpcBrief, decide_intent, npc_briefs, policy_intent
from apps.npcs.live import LiveState, LiveStore, intent_group, live_store
from apps.npcs.prediction import about_to_talk, likeliest_line, predict
from apps.router.metrics import REGISTRY
from npc_runtime.policies import NpcState, intent_args
from npc_runtime.protocol import state_from_wire

logger = logging.getLogger(__name__)

INTENTS = Counter(
    "bodybroker_npc_intents", "Intents published, by source", ["source"], registry=REGISTRY
)
INTENT_SECONDS = Histogram(
    "bodybroker_npc_intent_seconds", "Time to decide one intent", registry=REGISTRY
)


CACHE_MAX_AGE_S = 10.0  # a model intent older than this is not reused for a changed state
ASK_GRACE_S = 0.25  # an NPC whose ask is younger waits for its answer instead of an intent
ASK_READ_CHUNK = 16  # states read at a time while looking for NPCs to ask Gold about


def shard_of(npc_id: str, shards: int) -> int:
    return zlib.crc32(npc_id.encode()) % shards


def default_model_slots(shards: int = 1) -> int:
    """How many Gold asks keep every Gold endpoint busy without queueing in it, per shard.

    A GPU engine (TensorRT-LLM, vLLM) batches: the tier's real-time slots per endpoint. The CPU
    engine (llama.cpp's server) answers one request at a time, and a second one only waits in
    it — past its deadline, where the engine still spends the time — so: one per endpoint.
    """
    if settings.BODYBROKER_INTENT_MODEL_SLOTS:
        return int(settings.BODYBROKER_INTENT_MODEL_SLOTS)
    gold = settings.BODYBROKER_TIERS["gold"]
    endpoints = max(1, len(gold["urls"]))
    per_endpoint = (
        1 if gold.get("engine", "cpu") == "cpu" else settings.BODYBROKER_REALTIME_CONCURRENCY
    )
    return max(1, per_endpoint * endpoints // shards)


def prediction_slots() -> int:
    """Predicted replies in flight at once: two per GPU Silver endpoint (it batches them with
    live dialogue), one on the CPU engine, which answers one request at a time — a second
    guess would only make the next player's line wait longer behind it."""
    silver = settings.BODYBROKER_TIERS["silver"]
    per_endpoint = 1 if silver.get("engine", "cpu") == "cpu" else 2
    return per_endpoint * max(1, len(silver["urls"]))


class IntentUpdater:
    def __init__(
        self,
        *,
        shard: int = 0,
        shards: int = 1,
        tick_s: float = 0.05,
        model_slots: int | None = None,
    ) -> None:
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
        self.shard, self.shards, self.tick_s = shard, shards, tick_s
        self.model_slots = model_slots or default_model_slots(shards)
        self.prediction_slots = prediction_slots()
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.asked_version: dict[str, int] = {}
        self.ask_due: dict[str, float] = {}  # earliest next Gold ask per NPC
        self.publish_due: dict[str, float] = {}  # when each NPC needs its next intent
        self.last_intent: dict[str, dict[str, Any]] = {}  # the Gold chain's last answer
        self.last_model: dict[str, dict[str, Any]] = {}  # its last answer from a model
        self.model_at: dict[str, float] = {}  # when each NPC's last model ask started
        self.states: dict[str, NpcState] = {}
        self.predicting: dict[str, asyncio.Task[None]] = {}

    def owns(self, npc_id: str) -> bool:
        return self.shards == 1 or shard_of(npc_id, self.shards) == self.shard

    async def tick(self) -> int:
        """One pass over the watched NPCs; returns how many intents it published or started.

        First the free Gold slots go to the NPCs waiting longest for a model answer (whatever
        they were last published), then every NPC whose interval is over gets an intent at once.
        """
        store = live_store()
        now = time.monotonic()
        watched = [npc_id for npc_id in await store.active() if self.owns(npc_id)]
        started = await self._start_asks(store, watched, now)
        return started + await self._publish_due(store, watched, now)

    async def _start_asks(self, store: LiveStore, watched: list[str], now: float) -> int:
        free = self.model_slots - len(self.in_flight)
        if free <= 0:
            return 0
        waiting = sorted(
            (
                npc_id
                for npc_id in watched
                if npc_id not in self.in_flight and now >= self.ask_due.get(npc_id, 0.0)
            ),
            key=lambda npc_id: self.model_at.get(npc_id, 0.0),
        )
        started = 0
        for at in range(0, len(waiting), ASK_READ_CHUNK):
            chunk = waiting[at : at + ASK_READ_CHUNK]
            briefs = await npc_briefs(chunk)
            for npc_id, live in zip(chunk, await store.get_states(chunk), strict=True):
                brief = briefs[npc_id]
                if live is None or brief is None:
                    continue
                if live.version == self.asked_version.get(npc_id):
                    # Unchanged since the last ask: look again in one interval, not every tick.
                    self.ask_due[npc_id] = now + 1.0 / brief.hz
                    continue
                self.model_at[npc_id] = now
                task = asyncio.get_running_loop().create_task(self._refresh(brief, live))
                self.in_flight[npc_id] = task
                task.add_done_callback(self._landed)
                started += 1
                if started == free:
                    return started
        return started

    async def _publish_due(self, store: LiveStore, watched: list[str], now: float) -> int:
        due = [npc_id for npc_id in watched if now >= self.publish_due.get(npc_id, 0.0)]
        if not due:
            return 0
        briefs = await npc_briefs(due)
        out: list[tuple[NpcBrief, dict[str, Any]]] = []
        for npc_id, live in zip(due, await store.get_states(due), strict=True):
            brief = briefs[npc_id]
            if live is None or brief is None:
                continue
            if (
                npc_id in self.in_flight
                and npc_id in self.publish_due
                and now - self.model_at[npc_id] < ASK_GRACE_S
            ):
                continue  # its answer is due any moment; a slower one does not hold it up
            last = self.last_intent.get(npc_id)
            if last is not None and live.version == self.asked_version.get(npc_id):
                source = "cache" if last["source"] in ("model", "cache") else last["source"]
                out.append((brief, dict(last, source=source, generated_at=time.time())))
            else:
                out.append((brief, self._without_model(brief, live)))
        if out:
            await publish_many([intent for _brief, intent in out])
            for brief, _intent in out:
                self.publish_due[brief.slug] = now + 1.0 / brief.hz
                self._maybe_predict(brief.slug, brief)
        return len(out)

    def _without_model(self, brief: NpcBrief, live: LiveState) -> dict[str, Any]:
        """The intent for a changed state when no Gold slot is free: the NPC's recent model
        intent re-aimed at the new state (``cache``), else its micro-policy's (``policy``)."""
        slug = brief.slug
        state = self.states[slug] = state_from_wire(slug, live.state, into=self.states.get(slug))
        last = self.last_model.get(slug)
        if last is not None and time.time() - last["generated_at"] < CACHE_MAX_AGE_S:
            args = intent_args(last["intent"], state)
            if args is not None:
                return dict(last, args=args, source="cache", generated_at=time.time())
        return policy_intent(brief, state)

    def _landed(self, task: asyncio.Task[None]) -> None:
        for npc_id, running in list(self.in_flight.items()):
            if running is task:
                del self.in_flight[npc_id]

    async def _refresh(self, brief: NpcBrief, live: LiveState) -> None:
        slug = brief.slug
        began = time.monotonic()
        try:
            state = state_from_wire(slug, live.state, into=self.states.get(slug))
            self.states[slug] = state
            with INTENT_SECONDS.time():
                intent = await decide_intent(brief, state)
            self.asked_version[slug] = live.version
            self.last_intent[slug] = intent
            if intent["source"] == "model":
                self.last_model[slug] = intent
            await publish(intent)
            self._maybe_predict(slug, brief)
        except Exception:  # one NPC's failure must not stop the loop; the next tick retries
            logger.exception("refreshing the intent of %s failed", slug)
        finally:
            elapsed = time.monotonic() - began
            self.ask_due[slug] = began + max(1.0 / brief.hz, 2 * elapsed)
            self.publish_due[slug] = time.monotonic() + 1.0 / brief.hz

    def _maybe_predict(self, slug: str, brief: NpcBrief) -> None:
        """Start precomputing a reply when the player is about to talk to the NPC.

        The slot is taken before anything is awaited, so two intents of one NPC published
        close together cannot both start a prediction.
        """
        state = self.states.get(slug)
        if state is None or slug in self.predicting:
            return
        if len(self.predicting) >= self.prediction_slots:
            return  # Silver's time goes to players who are speaking, not to guesses
        if about_to_talk(state):
            task = asyncio.get_running_loop().create_task(self._predict(slug, brief.policy))
            self.predicting[slug] = task

    async def _predict(self, slug: str, policy: str) -> None:
        try:
            if await live_store().get_prediction(slug) is not None:
                return  # one is still fresh
            who = await dialogue.speaker(slug)
            if who is not None:
                await predict(who, await likeliest_line(slug, policy))
        except Exception:
            logger.exception("predicting a reply for %s failed", slug)
        finally:
            self.predicting.pop(slug, None)

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
    await publish_many([intent])


async def publish_many(intents: list[dict[str, Any]]) -> None:
    """Write intents to the live store (one round trip) and push them to the subscribers: one
    channel-layer message per push group (see :func:`apps.npcs.live.intent_group`)."""
    await live_store().put_intents(intents)
    groups: dict[str, list[dict[str, Any]]] = {}
    for intent in intents:
        INTENTS.labels(intent["source"]).inc()
        groups.setdefault(intent_group(intent["npc_id"]), []).append(intent)
    layer = get_channel_layer()
    if layer is not None:
        for group, members in groups.items():
            await layer.group_send(group, {"type": "npc.intents", "intents": members})


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
