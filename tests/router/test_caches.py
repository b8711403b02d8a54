"""The response cache: deterministic requests only, normalised keys, LRU bound, expiry."""

from __future__ import annotations

import asyncio
from typing import Any

from apps.router import caches, chains
from apps.router.contracts import InferenceRequest
from apps.router.policy import RouteDecision
from tests.router.conftest import tiers
from tests.support.scripted_engine import ScriptedEngine, completion


def ask(text: str, **fields: Any) -> InferenceRequest:
    fields.setdefault("temperature", 0)
    return InferenceRequest(messages=[{"role": "user", "content": text}], max_tokens=16, **fields)


async def settle() -> None:
    await asyncio.sleep(0.1)  # cache writes happen off the request path


async def test_a_repeated_deterministic_request_is_answered_from_the_cache(settings: Any) -> None:
    async with ScriptedEngine(completion("The morgue is cold.")) as engine:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [engine.base_url]})
        first = await chains.answer(ask("Describe the morgue."))
        await settle()
        # Same request, different whitespace: the normalised key matches.
        second = await chains.answer(ask("  Describe   the morgue. "))
    assert (first.source, first.cached) == ("model", False)
    assert (second.source, second.cached, second.text) == ("cache", True, first.text)
    assert len(engine.requests) == 1


async def test_sampled_requests_are_never_served_from_the_cache(settings: Any) -> None:
    async with ScriptedEngine(completion("a")) as engine:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [engine.base_url]})
        for _ in range(3):
            answer = await chains.answer(ask("roll the dice", temperature=0.8))
            assert answer.source == "model"
            await settle()
    assert len(engine.requests) == 3


async def test_cached_answers_expire(settings: Any) -> None:
    settings.BODYBROKER_RESPONSE_CACHE_TTL_S = 0.2
    async with ScriptedEngine(completion("fresh")) as engine:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [engine.base_url]})
        await chains.answer(ask("hello"))
        await settle()
        assert (await chains.answer(ask("hello"))).source == "cache"
        await asyncio.sleep(0.3)
        assert (await chains.answer(ask("hello"))).source == "model"
    assert len(engine.requests) == 2


async def test_the_cache_keeps_the_most_recently_used_entries(settings: Any) -> None:
    settings.BODYBROKER_RESPONSE_CACHE_SIZE = 2
    async with ScriptedEngine(completion("x")) as engine:
        settings.BODYBROKER_TIERS = tiers(silver={"urls": [engine.base_url]})
        for text in ("one", "two"):
            await chains.answer(ask(text))
            await settle()
        await chains.answer(ask("one"))  # touch "one": "two" is now the oldest
        await chains.answer(ask("three"))
        await settle()
        sources = [(await chains.answer(ask(t))).source for t in ("one", "two", "three")]
    assert sources == ["cache", "model", "cache"]


async def test_the_cache_is_per_tier(settings: Any) -> None:
    async with ScriptedEngine(completion("g")) as engine:
        settings.BODYBROKER_TIERS = tiers(
            gold={"urls": [engine.base_url]}, silver={"urls": [engine.base_url]}
        )
        request = ask("same words")
        await chains.answer(request, RouteDecision("gold", "asked for gold"))
        await settle()
        assert (await chains.answer(request)).source == "model"  # silver never saw it


async def test_lore_context_is_fetched_once_then_cached() -> None:
    calls: list[tuple[str | None, str]] = []

    async def provider(persona: str | None, topic: str) -> str:
        calls.append((persona, topic))
        return f"{persona} knows of {topic}"

    previous = caches._lore_provider
    caches.register_lore_provider(provider)
    try:
        assert (
            await caches.lore_context("watchman", "the harbour") == "watchman knows of the harbour"
        )
        assert (
            await caches.lore_context("watchman", "The  Harbour") == "watchman knows of the harbour"
        )
    finally:
        caches._lore_provider = previous
    assert calls == [("watchman", "the harbour")]
