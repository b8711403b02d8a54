"""State prediction: replies to what the player is likely to say, computed before they say it.

When a watched NPC's state shows the player close and in sight, the player is likely to speak
to it. The predictor picks the player's likely opening lines for that NPC (by its micro-policy:
a guard is challenged, a civilian is asked for help, a stalker is begged) and has Silver answer
the first of them ahead of time; the reply waits in the live store for
``PREDICTION_TTL_MS`` (5 s). A ``dialogue.say`` whose words match a waiting prediction is
answered from it at once (``source: "prediction"``). Hits and misses are counted
(``bodybroker_npc_predictions``) and the hit rate is shown on the dashboard.
"""

from __future__ import annotations

import re
import time
from typing import Any

from prometheus_client import Counter

from apps.npcs.dialogue import Speaker, reply_stream
from apps.npcs.live import live_store
from apps.router.metrics import REGISTRY
from npc_runtime.policies import NpcState

PREDICTION_TTL_MS = 5000
TALK_RANGE_M = 6.0
MATCH_THRESHOLD = 0.6

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


def likely_lines(policy: str, state: NpcState) -> tuple[str, ...]:
    """The player's likely next lines to this NPC, or () when the player is not about to talk."""
    if not state.player_visible or state.player_distance > TALK_RANGE_M:
        return ()
    return LIKELY_LINES.get(policy, LIKELY_LINES["civilian"])


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


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
