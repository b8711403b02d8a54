"""State prediction: replies to what the player is likely to say, computed before they say it.

When a watched NPC's state shows the player close and in sight, the player is likely to speak
to it. The predictor picks the player's likely opening line to that NPC — what players have most
often said first to it (its stored conversations), else what its micro-policy suggests (a guard
is challenged, a civilian is asked for help, a stalker is begged) — and has Silver answer it
ahead of time; the reply waits in the live store for
``PREDICTION_TTL_MS`` (5 s). A ``dialogue.say`` whose words match a waiting prediction is
answered from it at once (``source: "prediction"``). Hits and misses are counted
(``bodybroker_npc_predictions``) and the hit rate is shown on the dashboard.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from prometheus_client import Counter

from apps.npcs.dialogue import Speaker, reply_stream
from apps.npcs.live import live_store
from apps.router.metrics import REGISTRY
from npc_runtime.policies import NpcState

PREDICTION_TTL_MS = 5000
TALK_RANGE_M = 6.0
MATCH_THRESHOLD = 0.6
LEARNED_MIN_COUNT = 2  # an opening line players used at least this often is worth a guess

PREDICTIONS = Counter(
    "bodybroker_npc_predictions",
    "dialogue.say matched a prediction or not",
    ["result"],
    registry=REGISTRY,
)

LIKELY_LINES: dict[str, tuple[str, ...]] = {
    "guard": ("Let me through.", "What are you guarding?", "Who goes there?"),
    "civilian": ("Are you all right?", "What happened here?", "Can you help me?"),
    "stalker": ("Stay back!", "What are you?", "Please, leave me alone."),
}
_WORD = re.compile(r"[a-z']+")


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def about_to_talk(state: NpcState) -> bool:
    """Whether the player is close to the NPC and in its sight."""
    return state.player_visible and state.player_distance <= TALK_RANGE_M


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def learned_lines(openings: Sequence[str]) -> tuple[str, ...]:
    """The opening lines players keep using, most used first: ``openings`` (newest first) are
    grouped as a ``dialogue.say`` is matched — a line joins the first group whose line it
    resembles (similarity ≥ ``MATCH_THRESHOLD``) — and each group used at least
    ``LEARNED_MIN_COUNT`` times is named by its newest line. Ties go to the newer group."""
    groups: list[tuple[frozenset[str], str]] = []
    counts: list[int] = []
    for line in openings:
        said = words(line)
        if not said:
            continue
        for index, (group_words, _name) in enumerate(groups):
            if similarity(said, group_words) >= MATCH_THRESHOLD:
                counts[index] += 1
                break
        else:
            groups.append((said, line.strip()))
            counts.append(1)
    ranked = sorted(range(len(groups)), key=lambda index: -counts[index])  # stable: newer first
    return tuple(groups[i][1] for i in ranked if counts[i] >= LEARNED_MIN_COUNT)


def likely_lines(policy: str, learned: Sequence[str] = ()) -> tuple[str, ...]:
    """The player's likely opening lines to an NPC, likeliest first: the ``learned`` ones, then
    the micro-policy's own that resemble none of them."""
    table = LIKELY_LINES.get(policy, LIKELY_LINES["civilian"])
    known = [words(line) for line in learned]
    others = [
        line
        for line in table
        if all(similarity(words(line), seen) < MATCH_THRESHOLD for seen in known)
    ]
    return (*learned, *others)


def _learned(slug: str) -> tuple[str, ...]:
    from apps.npcs.selectors import npc_opening_lines

    close_old_connections()  # a worker thread's connection may have gone stale
    return learned_lines(npc_opening_lines(slug=slug))


async def likeliest_line(slug: str, policy: str) -> str:
    """The line to answer ahead of time for the NPC ``slug`` (its last 200 conversations read
    and grouped in a worker thread, none of it on the event loop)."""
    learned = await sync_to_async(_learned, thread_sensitive=False)(slug)
    return likely_lines(policy, learned)[0]


async def predict(who: Speaker, line: str) -> dict[str, Any]:
    """Compute the NPC's reply to ``line`` now and keep it for ``PREDICTION_TTL_MS``."""
    text, source = "", "template"
    async for event in reply_stream(who, [], line, background=True):
        if event.answer is not None:
            text, source = event.answer.text, event.answer.source
    prediction = {"line": line, "text": text, "source": source, "made_at": time.time()}
    await live_store().put_prediction(who.slug, prediction, PREDICTION_TTL_MS)
    return prediction


async def match(npc_id: str, said: str) -> dict[str, Any] | None:
    """The waiting prediction for ``npc_id`` if ``said`` matches its line; counts hit or miss."""
    prediction = await live_store().get_prediction(npc_id)
    hit = (
        prediction is not None
        and prediction["source"] in ("model", "fallback_model")
        and similarity(words(said), words(prediction["line"])) >= MATCH_THRESHOLD
    )
    PREDICTIONS.labels("hit" if hit else "miss").inc()
    return prediction if hit else None


def hit_rate() -> float | None:
    """Hits ÷ (hits + misses) in this process since it started, or None before any say."""
    counts = {
        s.labels["result"]: s.value
        for m in PREDICTIONS.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    total = counts.get("hit", 0.0) + counts.get("miss", 0.0)
    return counts.get("hit", 0.0) / total if total else None
