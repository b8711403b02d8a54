"""Fallback chains: every Gold and Silver request ends in an answer, and says where it came from.

- Gold:   target model → smaller distilled model → last good cached intent → deterministic policy
- Silver: target model → smaller model → cached response → persona template line
(Bronze is a Celery job; its retries and secondary backend live in ``apps.router.bronze``.)

A link is skipped when the time left before the request's deadline cannot fit what the link was
measured to need. A model link moves on to the next link on a connection error, a 5xx, a
first-token or total timeout, no free slot before the deadline, or a stream that stalls mid-way.
A stream that already sent text when it stalled is finished by the first link that does not
generate (cache, template or policy) and its final event is marked ``stalled``. A 4xx from an
engine is the request's fault, not the engine's, and is raised to the caller.

Cancelling a chain (its caller went away) or its deadline passing cancels the engine call in
flight, which closes that connection, and the engine stops generating; ``count_cancelled`` and
``metrics.CANCELLED`` count why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from apps.router import caches, metrics
from apps.router.contracts import Answer, InferenceRequest, Source
from apps.router.personas import template_line, with_persona_prefix
from apps.router.policy import RouteDecision, Tier
from apps.router.pools import NoEndpoint, TierPool, pools
from inference.client import Chunk
from inference.errors import EngineError, EngineHTTPError

# Links that do not generate: they answer at once from memory or rules.
INSTANT_LINKS: dict[Tier, tuple[Source, ...]] = {
    "gold": ("cache", "policy"),
    "silver": ("cache", "template"),
    "bronze": ("cache", "template"),
}
IntentPolicy = Callable[[InferenceRequest], str]


def default_intent_policy(request: InferenceRequest) -> str:
    """The deterministic intent when no model answers: ``idle`` (or the first allowed intent).

    When the request constrains the answer to a JSON schema with an ``intent`` enum, the answer
    is a JSON object using the first allowed value that is ``idle`` or, failing that, the first.
    The NPC app replaces this with its micro-policies (``register_intent_policy``).
    """
    schema = _json_schema(request.response_format)
    allowed = (schema.get("properties", {}).get("intent", {}) or {}).get("enum")
    if allowed:
        intent = "idle" if "idle" in allowed else str(allowed[0])
        return json.dumps({"intent": intent})
    return "idle"


_intent_policy: IntentPolicy = default_intent_policy


def register_intent_policy(policy: IntentPolicy) -> None:
    global _intent_policy
    _intent_policy = policy


def _json_schema(response_format: dict[str, Any] | None) -> dict[str, Any]:
    if not response_format:
        return {}
    if response_format.get("type") == "json_schema":
        return dict((response_format.get("json_schema") or {}).get("schema") or {})
    return dict(response_format.get("schema") or {})


@dataclass(slots=True)
class StreamEvent:
    """A streamed piece of an answer: text or tool-call deltas, or the final ``answer``."""

    text: str = ""
    tool_calls: tuple[Any, ...] = ()
    source: Source = "model"
    answer: Answer | None = None
    stalled: bool = False
    reasons: list[str] = field(default_factory=list)


class Deadline:
    def __init__(self, deadline_ms: float | None) -> None:
        self.at = None if deadline_ms is None else time.monotonic() + deadline_ms / 1000

    def left_s(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def fits(self, expected_ms: float | None) -> bool:
        left = self.left_s()
        return left is None or expected_ms is None or expected_ms <= left * 1000


def _model_pools(tier: Tier) -> list[tuple[Source, TierPool]]:
    sets = pools()
    return [("model", sets.primary[tier]), ("fallback_model", sets.fallback[tier])]


def _engine_kwargs(request: InferenceRequest) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if request.seed is not None:
        extra["seed"] = request.seed
    return {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stop": request.stop,
        "tools": request.tools,
        "tool_choice": request.tool_choice,
        "response_format": request.response_format,
        "extra": extra or None,
    }


def _tool_calls(completion_calls: Any) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in completion_calls
    ]


async def _ask_model(
    pool: TierPool,
    source: Source,
    request: InferenceRequest,
    decision: RouteDecision,
    deadline: Deadline,
) -> Answer:
    left = deadline.left_s()
    async with pool.slot(request.effective_priority, left) as endpoint:
        client = endpoint.engine_client(pool.timeouts)
        try:
            async with asyncio.timeout(deadline.left_s()):
                completion = await client.chat(
                    with_persona_prefix(request), **_engine_kwargs(request)
                )
        except TimeoutError:
            # The engine call was cancelled, which closed its connection: generation stopped.
            metrics.CANCELLED.inc(decision.tier, "deadline")
            raise DeadlinePassed(f"{pool.tier} {source}: deadline passed") from None
        except EngineError as exc:
            endpoint.record_failure(exc)
            raise
        endpoint.mark_up()
        endpoint.observe(completion.latency_ms, completion.completion_tokens or 1)
    return Answer(
        text=completion.text,
        tier=decision.tier,
        source=source,
        model=completion.model,
        route_reason=decision.reason,
        finish_reason=completion.finish_reason,
        prompt_tokens=completion.prompt_tokens or 0,
        completion_tokens=completion.completion_tokens or 0,
        latency_ms=completion.latency_ms,
        tool_calls=_tool_calls(completion.tool_calls),
    )


class DeadlinePassed(EngineError):
    """The request's own deadline ran out while a model link was answering."""


def count_cancelled(tier: Tier, reason: str) -> None:
    """Count a generation stopped because nobody waits for its answer any more (a door that
    cancels its chain on a disconnect or a ``dialogue.cancel`` says so here)."""
    metrics.CANCELLED.inc(tier, reason)


async def _instant(
    source: Source, request: InferenceRequest, decision: RouteDecision
) -> Answer | None:
    tier = decision.tier
    if source == "cache":
        hit = await caches.last_good_get(tier, request)
        if hit is None:
            return None
        return Answer(
            text=hit["text"],
            tier=tier,
            source="cache",
            model=hit.get("model", ""),
            route_reason=decision.reason,
            tool_calls=hit.get("tool_calls", []),
            cached=True,
        )
    if source == "template":
        return Answer(
            text=template_line(request),
            tier=tier,
            source="template",
            model="persona-template",
            route_reason=decision.reason,
        )
    return Answer(
        text=request.policy_answer
        if request.policy_answer is not None
        else _intent_policy(request),
        tier=tier,
        source="policy",
        model="deterministic-policy",
        route_reason=decision.reason,
    )


_background: set[asyncio.Task[None]] = set()


def _remember(tier: Tier, request: InferenceRequest, answer: Answer) -> None:
    """Keep a model's answer as the chain's "last good" (and in the response cache), off-path."""

    async def write() -> None:
        value = {
            "text": answer.text,
            "model": answer.model,
            "tool_calls": answer.tool_calls,
            "finish_reason": answer.finish_reason,
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
        }
        await caches.last_good_put(tier, request, value)
        if request.deterministic:
            await caches.response_put(tier, request, value)

    task = asyncio.get_running_loop().create_task(write())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _cached_response(request: InferenceRequest, decision: RouteDecision) -> Answer | None:
    if not request.deterministic:
        return None
    hit = await caches.response_get(decision.tier, request)
    metrics.CACHE.labels(decision.tier, "hit" if hit else "miss").inc()
    if hit is None:
        return None
    return Answer(
        text=hit["text"],
        tier=decision.tier,
        source="cache",
        model=hit.get("model", ""),
        route_reason=decision.reason,
        finish_reason=hit.get("finish_reason"),
        prompt_tokens=hit.get("prompt_tokens", 0),
        completion_tokens=hit.get("completion_tokens", 0),
        tool_calls=hit.get("tool_calls", []),
        cached=True,
    )


async def answer(request: InferenceRequest, decision: RouteDecision | None = None) -> Answer:
    """Walk the tier's chain until a link answers (the last link always does)."""
    decision = decision or request.decide()
    tier = decision.tier
    started = time.perf_counter()
    cached = await _cached_response(request, decision)
    if cached is not None:
        cached.latency_ms = (time.perf_counter() - started) * 1000
        return cached
    deadline = Deadline(request.deadline_ms)
    reasons: list[str] = []
    for source, pool in _model_pools(tier):
        if not pool.endpoints:
            continue
        if not deadline.fits(pool.expected_ms(request.max_tokens)):
            reasons.append(
                f"{source}: skipped, needs ~{pool.expected_ms(request.max_tokens):.0f}"
                f" ms, {(deadline.left_s() or 0) * 1000:.0f} ms left"
            )
            metrics.FALLBACK_LINKS.labels(tier, source, "skipped").inc()
            continue
        try:
            result = await _ask_model(pool, source, request, decision, deadline)
        except EngineHTTPError as exc:
            if not exc.retryable:
                raise
            reasons.append(f"{source}: {exc}")
            metrics.FALLBACK_LINKS.labels(tier, source, "failed").inc()
            continue
        except (EngineError, NoEndpoint) as exc:
            reasons.append(f"{source}: {type(exc).__name__}: {exc}")
            metrics.FALLBACK_LINKS.labels(tier, source, "failed").inc()
            continue
        metrics.FALLBACK_LINKS.labels(tier, source, "answered").inc()
        result.fallback_reasons = reasons
        _remember(tier, request, result)
        return result
    for source in INSTANT_LINKS[tier]:
        instant = await _instant(source, request, decision)
        if instant is None:
            reasons.append(f"{source}: nothing cached")
            metrics.FALLBACK_LINKS.labels(tier, source, "missed").inc()
            continue
        metrics.FALLBACK_LINKS.labels(tier, source, "answered").inc()
        instant.fallback_reasons = reasons
        instant.latency_ms = (time.perf_counter() - started) * 1000
        return instant
    raise AssertionError("the template and policy links always answer")  # pragma: no cover


async def stream(
    request: InferenceRequest, decision: RouteDecision | None = None
) -> AsyncIterator[StreamEvent]:
    """The chain as a stream of events; the last event carries the finished ``Answer``."""
    decision = decision or request.decide()
    tier = decision.tier
    started = time.perf_counter()
    cached = await _cached_response(request, decision)
    if cached is not None:
        yield StreamEvent(text=cached.text, source="cache")
        cached.latency_ms = (time.perf_counter() - started) * 1000
        yield StreamEvent(answer=cached)
        return
    deadline = Deadline(request.deadline_ms)
    reasons: list[str] = []
    parts: list[str] = []
    for source, pool in _model_pools(tier):
        if not pool.endpoints:
            continue
        if not deadline.fits(pool.expected_ms(request.max_tokens)):
            reasons.append(f"{source}: skipped for the deadline")
            metrics.FALLBACK_LINKS.labels(tier, source, "skipped").inc()
            continue
        finish_reason: str | None = None
        usage: tuple[int | None, int | None] = (None, None)
        ttft_ms: float | None = None
        chunks = 0
        try:
            async with pool.slot(request.effective_priority, deadline.left_s()) as endpoint:
                client = endpoint.engine_client(pool.timeouts)
                events = cast(
                    AsyncGenerator[Chunk, None],
                    client.stream_chat(with_persona_prefix(request), **_engine_kwargs(request)),
                )
                try:
                    async with contextlib.aclosing(events), asyncio.timeout(deadline.left_s()):
                        async for chunk in events:
                            if chunk.text or chunk.tool_calls:
                                if ttft_ms is None:
                                    ttft_ms = chunk.elapsed_ms
                                chunks += 1
                                parts.append(chunk.text)
                                yield StreamEvent(
                                    text=chunk.text, tool_calls=chunk.tool_calls, source=source
                                )
                            finish_reason = chunk.finish_reason or finish_reason
                            if chunk.completion_tokens is not None:
                                usage = (chunk.prompt_tokens, chunk.completion_tokens)
                except TimeoutError:  # the request's own deadline, not the engine's fault
                    metrics.CANCELLED.inc(tier, "deadline")
                    raise DeadlinePassed(
                        "the request's deadline passed mid-stream", text="".join(parts)
                    ) from None
                except EngineError as exc:
                    endpoint.record_failure(exc)
                    raise
                endpoint.mark_up()
                latency_ms = (time.perf_counter() - started) * 1000
                endpoint.observe(latency_ms, usage[1] or chunks)
        except EngineHTTPError as exc:
            if not exc.retryable and not parts:
                raise
            reasons.append(f"{source}: {exc}")
            metrics.FALLBACK_LINKS.labels(tier, source, "failed").inc()
            if parts:
                break
            continue
        except (EngineError, NoEndpoint) as exc:
            reasons.append(f"{source}: {type(exc).__name__}: {exc}")
            metrics.FALLBACK_LINKS.labels(tier, source, "failed").inc()
            if parts:  # already streamed text: finish from memory, not with a second generation
                break
            continue
        metrics.FALLBACK_LINKS.labels(tier, source, "answered").inc()
        result = Answer(
            text="".join(parts),
            tier=tier,
            source=source,
            model=endpoint.model,
            route_reason=decision.reason,
            finish_reason=finish_reason,
            prompt_tokens=usage[0] or 0,
            completion_tokens=usage[1] or chunks,
            latency_ms=(time.perf_counter() - started) * 1000,
            ttft_ms=ttft_ms,
            fallback_reasons=reasons,
        )
        _remember(tier, request, result)
        yield StreamEvent(answer=result)
        return
    stalled = bool(parts)
    for source in INSTANT_LINKS[tier]:
        result_or_none = await _instant(source, request, decision)
        if result_or_none is None:
            reasons.append(f"{source}: nothing cached")
            metrics.FALLBACK_LINKS.labels(tier, source, "missed").inc()
            continue
        metrics.FALLBACK_LINKS.labels(tier, source, "answered").inc()
        text = (" " if stalled else "") + result_or_none.text
        yield StreamEvent(text=text, source=result_or_none.source)
        result_or_none.text = "".join(parts) + text
        result_or_none.fallback_reasons = reasons
        result_or_none.latency_ms = (time.perf_counter() - started) * 1000
        yield StreamEvent(answer=result_or_none, stalled=stalled, reasons=reasons)
        return
    raise AssertionError("the template and policy links always answer")  # pragma: no cover
