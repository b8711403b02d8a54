"""``make bench-gold-prompt``: what the order of an intent request's prompt costs on the CPU Gold
engine.

Starts a real Gold engine (llama.cpp, one thread, the bundled SmolLM2-135M), builds intent
requests with the production ``apps.npcs.intents.intent_request`` for a different NPC on every
request (as the intent updater asks under load), sends them through the production
``EngineClient`` (so ``response_format`` becomes llama.cpp's grammar as in the router), and
times each, alternating between:

- ``instruction first`` — as sent: the instruction every NPC shares, then the NPC's persona.
  A one-slot llama.cpp engine reuses the shared tokens from the previous NPC's request;
- ``persona first`` — the same words with the persona first (as before 2026-12-02): the
  previous request shares only the chat template's opening with it.

Prints the median and spread of each and writes ``bench/results/gold-prompt-<time>.json``.

    python bench/gold_prompt.py --requests 24
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bodybroker.settings.base")
os.environ["BODYBROKER_VAR_DIR"] = tempfile.mkdtemp(prefix="bench-gold-prompt-")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

from apps.npcs.archetypes import archetype_intents  # noqa: E402
from apps.npcs.intents import INTENT_INSTRUCTION, NpcBrief, intent_request  # noqa: E402
from inference.client import EngineClient  # noqa: E402
from inference.process import EngineProcess  # noqa: E402
from inference.profiles import load_profiles  # noqa: E402
from npc_runtime.policies import Intent, NpcState, allowed_names  # noqa: E402

ARCHETYPES = ("guard", "civilian", "stalker")
BLOCK = 6


def brief(index: int) -> NpcBrief:
    """An NPC as ``bench/npcs.py`` seeds them, with a persona prompt of a realistic length."""
    kind = ARCHETYPES[index % 3]
    raw = tuple(archetype_intents(kind))
    return NpcBrief(
        slug=f"bench-{index:04d}",
        policy=kind,
        allowed=tuple(sorted(allowed_names(raw))),
        allowed_raw=raw,
        default_intent="idle",
        prompt=(
            f"You are NPC {index}, a {kind} in the flooded quarter. You distrust strangers "
            f"and fear the dark. Speak tersely."
        ),
        hz=1.0,
        max_tokens=8,
    )


def persona_first(messages: list[dict[str, Any]], persona: str) -> list[dict[str, Any]]:
    system = dict(messages[0], content=f"{persona} {INTENT_INSTRUCTION}")
    return [system, *messages[1:]]


async def run(requests: int) -> dict[str, Any]:
    profile = load_profiles().get("gold", "cpu")
    engine = EngineProcess("gold")
    engine.start()
    try:
        engine.wait_healthy(120)
        client = EngineClient(engine.base_url, profile.served_model_name, engine="cpu")
        state = NpcState(npc_id="x", fear=0.4, noise=0.5, player_visible=True, player_x=3)
        times: dict[str, list[float]] = {"instruction first": [], "persona first": []}
        prompt_tokens: dict[str, int] = {}
        async with client:
            # Blocks of BLOCK requests per order, alternating, so drift hits both alike; each
            # block's first request follows the other order's last and is not counted.
            index = 0
            while min(len(values) for values in times.values()) < requests:
                for order in times:
                    for position in range(BLOCK + 1):
                        npc = brief(index)
                        index += 1
                        request = intent_request(npc, state, Intent("idle", {}))
                        messages = request.messages
                        if order == "persona first":
                            messages = persona_first(messages, npc.prompt)
                        began = time.perf_counter()
                        completion = await client.chat(
                            messages,
                            max_tokens=request.max_tokens,
                            temperature=request.temperature,
                            response_format=request.response_format,
                        )
                        if position > 0:
                            times[order].append((time.perf_counter() - began) * 1000)
                            prompt_tokens[order] = completion.prompt_tokens or 0
        return {
            order: {
                "median_ms": round(statistics.median(values), 1),
                "min_ms": round(min(values), 1),
                "max_ms": round(max(values), 1),
                "n": len(values),
                "prompt_tokens": prompt_tokens[order],
            }
            for order, values in times.items()
        }
    finally:
        engine.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=24, help="timed requests per order")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    result = asyncio.run(run(args.requests))
    for order, row in result.items():
        print(f"{order:18s} {json.dumps(row)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sink = out / f"gold-prompt-{time.strftime('%Y%m%d-%H%M%S')}.json"
    sink.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {sink}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
