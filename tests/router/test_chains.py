"""Fallback chains, every link triggered for real: killed engines, 5xx, stalls, deadlines."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from apps.router import chains
from apps.router.contracts import InferenceRequest
from apps.router.personas import bundled
from apps.router.pools import ESTIMATE_TTL_S, pools
from inference.process import EngineProcess
from tests.router.conftest import tiers
from tests.support.scripted_engine import (
    SSE_HEAD,
    ScriptedEngine,
    completion,
    server_error,
    silent,
    sse_event,
    streamed,
)

QUICK = {"connect": 0.5, "first_token": 0.5, "total": 5.0}


async def remembered(tier: str, request: InferenceRequest) -> None:
    """Wait for the chain's off-path write of the last good answer (Redis takes a few trips)."""
    from apps.router import caches

    for _ in range(100):
        if await caches.last_good_get(tier, request) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the last good answer was never written")


def ask(text: str, **fields: Any) -> InferenceRequest:
    return InferenceRequest(messages=[{"role": "user", "content": text}], **fields)


def gold(text: str, **fields: Any) -> InferenceRequest:
    return ask(text, sla="real-time", max_tokens=8, **fields)


@pytest.mark.engine
async def test_gold_falls_back_to_the_smaller_model_when_its_engine_is_killed(
    settings: Any, engines: dict[str, str]
) -> None:
    target = EngineProcess("gold")
    target.start()
    target.wait_healthy(60)
    settings.BODYBROKER_TIERS = tiers(
        gold={
            "urls": [target.base_url],
            "model": "gold",
            "fallback_urls": [engines["silver"]],
            "fallback_model": "silver",
        }
    )
    try:
        first = await chains.answer(gold("Flee or hide?", temperature=0.5))
        assert first.source == "model" and first.model == "gold"
    finally:
        target.stop(grace=0)  # the engine process dies
    second = await chains.answer(gold("Flee or hide?", temperature=0.5))
    assert second.tier == "gold"
    assert second.source == "fallback_model"
    assert second.model == "silver"
    assert second.text
    assert "EngineUnavailable" in second.fallback_reasons[0]


async def test_a_5xx_moves_on_and_silver_ends_with_the_persona_template_line(
    settings: Any,
) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    async with ScriptedEngine(server_error) as broken:
        settings.BODYBROKER_TIERS = tiers(
            silver={"urls": [broken.base_url], "fallback_urls": ["http://127.0.0.1:9"]}
        )
        answer = await chains.answer(ask("Who are you?", persona="mortician", max_tokens=32))
    assert answer.tier == "silver"
    assert answer.source == "template"
    assert answer.text in bundled()["mortician"].lines
    assert [reason.split(":")[0] for reason in answer.fallback_reasons] == [
        "model",
        "fallback_model",
        "cache",
    ]
    assert "500" in answer.fallback_reasons[0]


async def test_gold_remembers_the_last_good_intent_per_npc_then_falls_back_to_policy(
    settings: Any,
) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    async with ScriptedEngine(completion("patrol")) as engine:
        settings.BODYBROKER_TIERS = tiers(gold={"urls": [engine.base_url]})
        request = gold("state: calm", npc_id="pell")
        assert (await chains.answer(request)).text == "patrol"
        await remembered("gold", request)
    settings.BODYBROKER_TIERS = tiers(gold={"urls": ["http://127.0.0.1:9"]})
    cached = await chains.answer(gold("state: a scream nearby", npc_id="pell"))
    assert (cached.source, cached.text) == ("cache", "patrol")
    unknown = await chains.answer(gold("state: calm", npc_id="edda"))
    assert (unknown.source, unknown.text) == ("policy", "idle")


async def test_the_policy_link_keeps_to_the_allowed_intents(settings: Any) -> None:
    settings.BODYBROKER_TIERS = tiers(gold={"urls": ["http://127.0.0.1:9"]})
    schema = {
        "type": "object",
        "properties": {"intent": {"type": "string", "enum": ["hide", "flee"]}},
    }
    answer = await chains.answer(
        gold("state", response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    )
    assert answer.source == "policy"
    assert json.loads(answer.text) == {"intent": "hide"}


async def test_a_first_token_timeout_moves_to_the_smaller_model(settings: Any) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    async with ScriptedEngine(silent) as hung, ScriptedEngine(streamed("hello there")) as small:
        settings.BODYBROKER_TIERS = tiers(
            silver={"urls": [hung.base_url], "fallback_urls": [small.base_url]}
        )
        events = [event async for event in chains.stream(ask("hi", max_tokens=16))]
    final = events[-1].answer
    assert final is not None and final.source == "fallback_model"
    assert final.text == "hello there"
    assert "EngineTimeout" in final.fallback_reasons[0]


async def test_a_stream_that_stalls_midway_ends_cleanly_with_the_fallback_marked_stalled(
    settings: Any,
) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK

    async def stalls(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + sse_event("The door ") + sse_event("is "))
        await writer.drain()
        await asyncio.sleep(3600)

    async with ScriptedEngine(stalls) as engine:
        settings.BODYBROKER_TIERS = tiers(
            silver={"urls": [engine.base_url], "fallback_urls": [engine.base_url]}
        )
        events = [event async for event in chains.stream(ask("Open it", persona="watchman"))]
    texts = [event.text for event in events if event.answer is None]
    assert texts[:2] == ["The door ", "is "]
    final = events[-1]
    assert final.stalled is True
    assert final.answer is not None and final.answer.source == "template"
    assert final.answer.text.startswith("The door is ")
    assert final.answer.text.endswith(texts[-1].strip())
    assert len(engine.requests) == 1  # no second generation appended after a stall


async def test_a_link_that_cannot_fit_the_deadline_is_skipped(settings: Any) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    async with ScriptedEngine(completion("slowly", completion_tokens=2, delay_s=0.3)) as slow:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [slow.base_url]})
        measured = await chains.answer(ask("speak", max_tokens=2, persona="broker"))
        assert measured.source == "model"
        await remembered("silver", ask("speak", max_tokens=2, persona="broker"))
        rushed = await chains.answer(ask("speak", max_tokens=2, persona="broker", deadline_ms=50))
    assert rushed.source == "cache"  # the last good answer, without waiting for the model
    assert rushed.text == "slowly"
    assert "skipped" in rushed.fallback_reasons[0]
    assert len(slow.requests) == 1


async def test_a_link_skipped_for_an_old_slow_moment_is_asked_again(settings: Any) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    async with ScriptedEngine(completion("steady", completion_tokens=2, delay_s=0.3)) as slow:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [slow.base_url]})
        await chains.answer(ask("speak", max_tokens=2, persona="broker"))  # measured: ~0.3 s
        hurried = ask("speak", max_tokens=8, persona="broker", deadline_ms=1000)
        assert (await chains.answer(hurried)).source != "model"  # 8 tokens "need" ~1.1 s
        for endpoint in pools().primary["silver"].endpoints:
            endpoint.observed_at -= ESTIMATE_TTL_S + 1  # that measurement is now old
        again = await chains.answer(hurried)
    assert again.source == "model" and again.text == "steady"  # asked, and it fit after all
    assert len(slow.requests) == 2


async def test_a_request_the_engine_rejects_is_the_callers_error(settings: Any) -> None:
    from tests.support.scripted_engine import json_response

    async def rejects(writer: asyncio.StreamWriter) -> None:
        writer.write(json_response(400, {"error": {"message": "context too long"}}, "Bad"))

    async with ScriptedEngine(rejects) as engine:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [engine.base_url]})
        from inference.errors import EngineHTTPError

        with pytest.raises(EngineHTTPError):
            await chains.answer(ask("hi"))


async def test_replicas_share_load_by_outstanding_requests(settings: Any) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = QUICK
    script = completion("ok", delay_s=0.05)
    async with ScriptedEngine(script) as a, ScriptedEngine(script) as b:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [a.base_url, b.base_url]})
        await asyncio.gather(*(chains.answer(ask(f"q{i}")) for i in range(8)))
    assert len(a.requests) == 4 and len(b.requests) == 4


async def test_real_time_requests_do_not_wait_behind_background_ones(settings: Any) -> None:
    settings.BODYBROKER_ENGINE_TIMEOUTS = {"connect": 0.5, "first_token": 5, "total": 5}
    settings.BODYBROKER_BACKGROUND_CONCURRENCY = 1
    release = asyncio.Event()

    async def gated(writer: asyncio.StreamWriter) -> None:
        await release.wait()
        await completion("done")(writer)

    async with ScriptedEngine(gated) as engine:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [engine.base_url]})
        background = [
            asyncio.create_task(chains.answer(ask(f"b{i}", priority="background")))
            for i in range(3)
        ]
        await asyncio.sleep(0.1)
        assert len(engine.requests) == 1  # one background slot: the others queue
        realtime = asyncio.create_task(chains.answer(ask("now", priority="realtime")))
        await asyncio.sleep(0.1)
        assert len(engine.requests) == 2  # the real-time request went straight through
        release.set()
        await asyncio.gather(realtime, *background)
