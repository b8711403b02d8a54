"""The OpenAI-compatible door: ``POST /v1/chat/completions`` and ``GET /v1/models``.

A lean ASGI app in front of Django (``bodybroker.asgi`` routes ``/v1/`` here, everything else to
Django). It shares Django's settings, models and API keys, but not its request stack: the hot
path is parse → key (cached) → limits → route → fallback chain → answer, with no middleware,
no ORM query and no thread hop per request. Models: ``gold``, ``silver``, ``bronze`` (a Bronze
job, waited for) and ``auto`` (the routing policy). Body Broker's own request fields (``sla``,
``persona``, ``npc_id``, ``deadline_ms``, ``priority``, ``cost_sensitivity``, ``needs_tools``,
``requires_expert_reasoning``) ride along as extra body fields. Every answer carries the headers
``x-bodybroker-tier``, ``x-bodybroker-source`` and ``x-bodybroker-overhead-ms`` (time spent here
rather than in an engine); errors use OpenAI's shape. The header ``X-Bodybroker-Tools`` opts a
request into the tool relay (``apps/router/tools.py``); without it ``tools`` and ``tool_calls``
pass through unchanged.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.router import chains, costs, limits, metrics, tools
from apps.router.contracts import Answer, InferenceRequest
from apps.router.policy import COST_SENSITIVITIES, PRIORITIES, SLAS, RouteDecision, Sla, Tier
from apps.router.pools import pools
from apps.security.keycache import cached_api_key
from apps.security.scopes import INFER, JOBS
from inference.errors import EngineHTTPError
from npc_runtime.bounded_json import INVALID, JsonRefused, read_json

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MODELS = ("gold", "silver", "bronze", "auto")
MAX_BODY_BYTES = 1_048_576
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# OpenAI fields we accept and ignore (the engines' defaults apply), so the official client's
# optional arguments never turn into errors.
IGNORED_FIELDS = frozenset(
    {
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "user",
        "n",
        "stream_options",
        "parallel_tool_calls",
        "logit_bias",
        "metadata",
        "store",
        "service_tier",
        "logprobs",
        "top_logprobs",
    }
)
KNOWN_FIELDS = (
    frozenset(
        {
            "model",
            "messages",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "stream",
            "stop",
            "tools",
            "tool_choice",
            "response_format",
            "seed",
            "sla",
            "persona",
            "npc_id",
            "deadline_ms",
            "priority",
            "cost_sensitivity",
            "needs_tools",
            "requires_expert_reasoning",
        }
    )
    | IGNORED_FIELDS
)
ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


class BadRequest(Exception):
    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: int = 400,
        type_: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.param, self.status, self.type, self.code = param, status, type_, code


def _error_body(message: str, type_: str, param: str | None, code: str | None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    ).encode()


async def _send_error(send: Send, exc: BadRequest, extra: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = _error_body(str(exc), exc.type, exc.param, exc.code)
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected", status=499)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(
                f"request body is over {MAX_BODY_BYTES} bytes", status=413, code="request_too_large"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _number(body: dict[str, Any], name: str, lo: float, hi: float, *, integer: bool) -> Any:
    value = body.get(name)
    if value is None:
        return None
    # An int is compared as an int: float() of a large one would raise OverflowError.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and isinstance(value, float) and not value.is_integer())
    ):
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"'{name}' must be {kind}", name)
    if not lo <= value <= hi:
        raise BadRequest(f"'{name}' must be between {lo:g} and {hi:g}", name)
    return int(value) if integer else float(value)


def _choice(body: dict[str, Any], name: str, choices: tuple[str, ...]) -> Any:
    value = body.get(name)
    if value is not None and value not in choices:
        raise BadRequest(f"'{name}' must be one of {', '.join(choices)}", name)
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false", name)
    return value


def _string(body: dict[str, Any], name: str, max_len: int = 100) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > max_len):
        raise BadRequest(f"'{name}' must be a string of at most {max_len} characters", name)
    return value


def _param(path: tuple[str | int, ...]) -> str:
    """A place in the body as OpenAI names parameters: ``messages[0].content``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out


def _read_body_json(raw: bytes) -> Any:
    """The body, read by the one bounded reader: too deep, or a number out of range, is a 400
    naming where (never a RecursionError or OverflowError further in)."""
    try:
        return read_json(raw)
    except JsonRefused as exc:
        if exc.path:
            param = _param(exc.path)
            raise BadRequest(f"'{param}': {exc.message}", param) from None
        raise BadRequest(
            f"the body is {exc.message}" if exc.reason == INVALID else exc.message
        ) from None


def _content_chars(content: list[Any], index: int) -> int:
    """Characters of a content given as parts, measured like a string content. Only text
    parts are read: the engines take text."""
    chars = 0
    for number, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or part.get("type") != "text"
            or not isinstance(part.get("text"), str)
        ):
            raise BadRequest(
                f"messages[{index}].content[{number}] must be a text part "
                '({"type": "text", "text": "..."})',
                f"messages[{index}].content[{number}]",
            )
        chars += len(part["text"])
    return chars


def parse_chat_request(raw: bytes) -> tuple[str, bool, InferenceRequest]:
    """Validate an OpenAI chat request; returns (model, stream, request)."""
    body = _read_body_json(raw)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field '{unknown[0]}'", unknown[0])
    model = body.get("model")
    if model not in MODELS:
        raise BadRequest(
            f"model must be one of {', '.join(MODELS)}", "model", code="model_not_found"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", "messages")
    chars = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise BadRequest(
                f"messages[{index}] needs a role of {', '.join(sorted(ROLES))}",
                f"messages[{index}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise BadRequest(
                f"messages[{index}].content must be a string or a list of text parts",
                f"messages[{index}].content",
            )
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += _content_chars(content, index)
    if chars > settings.BODYBROKER_MAX_PROMPT_CHARS:
        raise BadRequest(
            f"the prompt is {chars} characters; the limit is "
            f"{settings.BODYBROKER_MAX_PROMPT_CHARS}",
            "messages",
        )
    max_tokens = _number(body, "max_tokens", 1, 4096, integer=True) or _number(
        body, "max_completion_tokens", 1, 4096, integer=True
    )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", "stream")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
    ):
        raise BadRequest("'stop' must be a string or up to 4 strings", "stop")
    tools = body.get("tools")
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)
    ):
        raise BadRequest("'tools' must be an array of tool objects", "tools")
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and not isinstance(tool_choice, str | dict):
        raise BadRequest("'tool_choice' must be a string or an object", "tool_choice")
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict)
        or response_format.get("type") not in ("text", "json_object", "json_schema")
    ):
        raise BadRequest(
            "'response_format.type' must be text, json_object or json_schema", "response_format"
        )
    if response_format is not None and response_format.get("type") == "text":
        response_format = None
    sla: Sla = _choice(body, "sla", SLAS) or ("real-time" if model == "gold" else "interactive")
    request = InferenceRequest(
        messages=messages,
        sla=sla,
        max_tokens=max_tokens or (8 if model == "gold" else 256),
        temperature=_number(body, "temperature", 0, 2, integer=False),
        stop=stop,
        needs_tools=_flag(body, "needs_tools"),
        requires_expert_reasoning=_flag(body, "requires_expert_reasoning"),
        tools=tools,
        tool_choice=tool_choice,
        response_format=response_format,
        cost_sensitivity=_choice(body, "cost_sensitivity", COST_SENSITIVITIES) or "normal",
        priority=_choice(body, "priority", PRIORITIES),
        persona=_string(body, "persona"),
        npc_id=_string(body, "npc_id"),
        deadline_ms=_number(body, "deadline_ms", 1, 3_600_000, integer=False),
        seed=_number(body, "seed", -(2**63), 2**63 - 1, integer=True),
    )
    return model, stream, request


def decide(model: str, request: InferenceRequest) -> RouteDecision:
    if model == "auto":
        return request.decide()
    return RouteDecision(model, f"model '{model}' requested")  # type: ignore[arg-type]


def completion_body(answer: Answer, completion_id: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    finish = answer.finish_reason or "stop"
    if answer.tool_calls:
        message["tool_calls"] = answer.tool_calls
        message["content"] = answer.text or None
        finish = "tool_calls"
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": answer.tier,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": answer.usage(),
        "x_bodybroker": {
            "tier": answer.tier,
            "source": answer.source,
            "engine_model": answer.model,
            "route_reason": answer.route_reason,
            "fallback_reasons": answer.fallback_reasons,
        },
    }


def _chunk(
    completion_id: str,
    created: int,
    tier: str,
    delta: dict[str, Any],
    finish: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": tier,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if extra:
        body.update(extra)
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class ClientGone(Exception):
    """The client disconnected before its answer was complete; nothing is left to answer."""


class WhileConnected:
    """Cancel the request's task when its client disconnects before the answer is complete.

    uvicorn silently drops what is sent to a client that went away, so a stream would otherwise
    go on reading its engine to the last token, holding the engine's only slot. Cancelling the
    chain cancels the engine call in flight, which closes its connection, and the engine stops
    generating. Wrap everything up to the answer's last send: the server also reports a
    disconnect once a response is complete. Leaving the block after a disconnect raises
    ``ClientGone`` (counted as ``client_disconnect``).
    """

    __slots__ = ("_gone", "_receive", "_task", "_tier", "_watcher")

    def __init__(self, receive: Receive, tier: Tier) -> None:
        self._receive, self._tier, self._gone = receive, tier, False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - an ASGI request always runs in a task
        self._task = task
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._gone = True
        self._task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._watcher.cancel()
        if self._gone and self._task.uncancel() == 0 and exc_type is asyncio.CancelledError:
            chains.count_cancelled(self._tier, "client_disconnect")
            raise ClientGone from None


class OpenAIGateway:
    """ASGI app: ``/v1/*`` answered here, everything else handed to ``app`` (Django)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._background: set[asyncio.Task[Any]] = set()
        self._started_on: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        self._ensure_background()
        try:
            key = await self._authenticate(scope)
            path, method = scope["path"], scope["method"]
            if path == "/v1/chat/completions":
                if method != "POST":
                    raise BadRequest("use POST", status=405)
                await self._chat(key, scope, receive, send, started)
            elif path == "/v1/models":
                if method != "GET":
                    raise BadRequest("use GET", status=405)
                await self._models(send)
            else:
                raise BadRequest(f"no route {path}", status=404, code="not_found")
        except ClientGone:
            return  # nobody to answer; the chain and its engine call were stopped
        except BadRequest as exc:
            metrics.ERRORS.labels("none", f"http_{exc.status}").inc()
            extra = (
                [(b"www-authenticate", b'Bearer realm="bodybroker"')] if exc.status == 401 else []
            )
            await _send_error(send, exc, extra)
        except RateLimited as exc:
            metrics.ERRORS.labels("none", "http_429").inc()
            await _send_error(
                send,
                BadRequest(
                    exc.refusal.message,
                    status=429,
                    type_="rate_limit_error",
                    code=f"{exc.refusal.kind}_limit",
                ),
                [(b"retry-after", str(exc.refusal.retry_after_s).encode())],
            )

    def _ensure_background(self) -> None:
        """Start this loop's active health checks of the tier endpoints on its first request."""
        loop = asyncio.get_running_loop()
        if self._started_on is loop:
            return
        self._started_on = loop
        task = loop.create_task(pools().run_health_checks(settings.BODYBROKER_HEALTH_INTERVAL_S))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _authenticate(self, scope: Scope) -> Any:
        auth = _header(scope, b"authorization") or b""
        if auth[:7].lower() != b"bearer ":
            raise BadRequest(
                "missing API key (Authorization: Bearer …)",
                status=401,
                type_="authentication_error",
                code="invalid_api_key",
            )
        key = await cached_api_key(auth[7:].strip().decode("latin-1"))
        if key is None:
            raise BadRequest(
                "invalid or revoked API key",
                status=401,
                type_="authentication_error",
                code="invalid_api_key",
            )
        if INFER not in key.scopes:
            raise BadRequest(
                "this key lacks the 'infer' scope",
                status=403,
                type_="permission_error",
                code="insufficient_scope",
            )
        return key

    async def _models(self, send: Send) -> None:
        created = int(time.time())
        body = json.dumps(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": created, "owned_by": "bodybroker"}
                    for name in MODELS
                ],
            }
        ).encode()
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": body})

    async def _chat(
        self, key: Any, scope: Scope, receive: Receive, send: Send, started: float
    ) -> None:
        model, stream, request = parse_chat_request(await _read_body(receive))
        decision = decide(model, request)
        key_limits = limits.limits_for(key)
        refusal = await limits.check(key.pk, key_limits)
        if refusal is not None:
            raise RateLimited(refusal)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        priority = request.effective_priority
        relay_servers = _tool_servers(scope, request, decision)
        metrics.IN_FLIGHT.labels(decision.tier, priority).inc()
        try:
            if relay_servers is not None:
                try:
                    async with WhileConnected(receive, decision.tier):
                        answer = await tools.relay(request, decision, relay_servers)
                except EngineHTTPError as exc:
                    raise BadRequest(
                        f"the {decision.tier} engine rejected the request: {exc}"
                    ) from exc
                if stream:
                    await self._stream_whole(send, answer, completion_id, created, started)
                else:
                    await self._respond(send, answer, completion_id, created, started)
            elif decision.tier == "bronze":
                if JOBS not in key.scopes:
                    raise BadRequest(
                        "Bronze answers are jobs; this key lacks the 'jobs' scope",
                        status=403,
                        type_="permission_error",
                    )
                answer = await _bronze_answer(request, decision, key)
                if stream:
                    await self._stream_whole(send, answer, completion_id, created, started)
                else:
                    await self._respond(send, answer, completion_id, created, started)
            elif stream:
                async with WhileConnected(receive, decision.tier):
                    answer = await self._stream(
                        send, request, decision, completion_id, created, started
                    )
            else:
                try:
                    async with WhileConnected(receive, decision.tier):
                        answer = await chains.answer(request, decision)
                except EngineHTTPError as exc:
                    raise BadRequest(
                        f"the {decision.tier} engine rejected the request: {exc}"
                    ) from exc
                await self._respond(send, answer, completion_id, created, started)
        finally:
            metrics.IN_FLIGHT.labels(decision.tier, priority).dec()
        account_answer(key.pk, key_limits, answer, started)

    @staticmethod
    def _headers(answer: Answer, overhead_ms: float) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-bodybroker-tier", answer.tier.encode()),
            (b"x-bodybroker-source", answer.source.encode()),
            (b"x-bodybroker-overhead-ms", f"{overhead_ms:.3f}".encode()),
        ]

    async def _respond(
        self, send: Send, answer: Answer, completion_id: str, created: int, started: float
    ) -> None:
        body = json.dumps(completion_body(answer, completion_id, created)).encode()
        engine_ms = answer.latency_ms if answer.source in ("model", "fallback_model") else 0.0
        overhead = max(0.0, (time.perf_counter() - started) * 1000 - engine_ms)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    *JSON_HEADERS,
                    (b"content-length", str(len(body)).encode()),
                    *self._headers(answer, overhead),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _stream_whole(
        self, send: Send, answer: Answer, completion_id: str, created: int, started: float
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*SSE_HEADERS, *self._headers(answer, 0.0)],
            }
        )
        role = _chunk(
            completion_id, created, answer.tier, {"role": "assistant", "content": answer.text}
        )
        final = _chunk(
            completion_id,
            created,
            answer.tier,
            {},
            answer.finish_reason or "stop",
            {"usage": answer.usage()},
        )
        await send({"type": "http.response.body", "body": role + final + b"data: [DONE]\n\n"})

    async def _stream(
        self,
        send: Send,
        request: InferenceRequest,
        decision: RouteDecision,
        completion_id: str,
        created: int,
        started: float,
    ) -> Answer:
        tier = decision.tier
        events = chains.stream(request, decision)
        head_sent = False
        final: Answer | None = None
        tool_call_seen = False
        # Every content chunk shares this prefix; only the delta is serialised per chunk.
        prefix = (
            f'data: {{"id":"{completion_id}","object":"chat.completion.chunk",'
            f'"created":{created},"model":"{tier}","choices":[{{"index":0,"delta":'
        ).encode()
        suffix = b',"finish_reason":null}]}\n\n'
        try:
            async for event in events:
                if event.answer is not None:
                    final = event.answer
                    if not head_sent:  # the whole answer came from memory
                        await self._start_stream(send, final, started, 0.0)
                        head_sent = True
                    finish = final.finish_reason or "stop"
                    if tool_call_seen:
                        finish = "tool_calls"
                    extra: dict[str, Any] = {
                        "usage": final.usage(),
                        "x_bodybroker": {
                            "tier": final.tier,
                            "source": final.source,
                            "stalled": event.stalled,
                            "fallback_reasons": final.fallback_reasons,
                        },
                    }
                    await send(
                        {
                            "type": "http.response.body",
                            "more_body": True,
                            "body": _chunk(completion_id, created, tier, {}, finish, extra)
                            + b"data: [DONE]\n\n",
                        }
                    )
                    break
                delta: dict[str, Any] = {}
                if event.text:
                    delta["content"] = event.text
                if event.tool_calls:
                    delta["tool_calls"] = list(event.tool_calls)
                    tool_call_seen = True
                body = prefix + json.dumps(delta, separators=(",", ":")).encode() + suffix
                if not head_sent:
                    # Headers wait for the first token, so they can say which link answered;
                    # the role chunk and the first token leave in the same write.
                    first = Answer(
                        text="",
                        tier=tier,
                        source=event.source,
                        model="",
                        route_reason=decision.reason,
                    )
                    await self._start_stream(send, first, started, 0.0)
                    head_sent = True
                    body = prefix + b'{"role":"assistant","content":""}' + suffix + body
                await send({"type": "http.response.body", "more_body": True, "body": body})
        except EngineHTTPError as exc:
            if head_sent:
                raise
            raise BadRequest(f"the {tier} engine rejected the request: {exc}") from exc
        await send({"type": "http.response.body", "body": b""})
        if final is None:  # pragma: no cover - chains.stream always ends with an answer
            raise RuntimeError("stream ended without an answer")
        return final

    async def _start_stream(
        self, send: Send, answer: Answer, started: float, engine_ms: float
    ) -> None:
        overhead = max(0.0, (time.perf_counter() - started) * 1000 - engine_ms)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*SSE_HEADERS, *self._headers(answer, overhead)],
            }
        )


_accounting: set[asyncio.Task[None]] = set()


def account_answer(
    key_id: int | None, key_limits: limits.Limits | None, answer: Answer, started: float
) -> None:
    """Metrics, usage and cost for one answer, and its tokens against the key's limits.

    Only generated answers cost anything; the limit counters are updated off the request path.
    """
    cost = 0.0
    if answer.source in ("model", "fallback_model"):
        cost = costs.usage_add(
            key_id=key_id,
            tier=answer.tier,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
        )
    seconds = time.perf_counter() - started
    costs.answer_add(tier=answer.tier, source=answer.source, seconds=seconds)
    metrics.observe_answer(
        answer.tier,
        answer.source,
        seconds=seconds,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        ttft_seconds=None if answer.ttft_ms is None else answer.ttft_ms / 1000,
        cost_usd=cost,
    )
    costs.usage_flush_soon()
    if key_id is not None and key_limits is not None and key_limits.any:
        task = asyncio.get_running_loop().create_task(
            limits.record(
                key_id,
                key_limits,
                tokens=answer.prompt_tokens + answer.completion_tokens,
                cost_usd=cost,
            )
        )
        _accounting.add(task)
        task.add_done_callback(_accounting.discard)


TOOLS_HEADER = b"x-bodybroker-tools"


def _tool_servers(
    scope: Scope, request: InferenceRequest, decision: RouteDecision
) -> tools.ToolServers | None:
    """The MCP servers ``X-Bodybroker-Tools`` names for the tool relay, or None (opt-in).

    Without the header a client's own ``tools`` pass to the engine and its ``tool_calls`` come
    back unchanged. The relay calls this same process's MCP servers with the caller's key.
    """
    raw = _header(scope, TOOLS_HEADER)
    if raw is None:
        return None
    from bodybroker.mcp import registered_mcp_servers

    names = [name.strip() for name in raw.decode("latin-1").split(",") if name.strip()]
    known = registered_mcp_servers()
    unknown = sorted(set(names) - set(known))
    if not names or unknown:
        raise BadRequest(
            f"X-Bodybroker-Tools names MCP servers, one or more of: {', '.join(sorted(known))}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
            code="unknown_tool_server",
        )
    if request.tools:
        raise BadRequest("send either your own 'tools' or X-Bodybroker-Tools, not both", "tools")
    if decision.tier == "bronze":
        raise BadRequest(
            "the tool relay answers Gold and Silver on this door; Bronze jobs do not run tools yet",
            "model",
        )
    host, port = scope.get("server") or ("127.0.0.1", 80)
    base = f"{scope.get('scheme', 'http')}://{host}:{port}"
    auth = (_header(scope, b"authorization") or b"")[7:].strip().decode("latin-1")
    return tools.ToolServers(
        urls={name: f"{base}/mcp/{name}/" for name in dict.fromkeys(names)}, credential=auth
    )


class RateLimited(Exception):
    def __init__(self, refusal: limits.Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


async def _bronze_answer(request: InferenceRequest, decision: RouteDecision, key: Any) -> Answer:
    """Queue a Bronze job and wait for it (the OpenAI door is synchronous)."""
    from apps.router import services
    from apps.router.models import FINISHED_STATUSES, Job

    try:
        job = await sync_to_async(services.job_submit)(request=request, submitted_by_key=key)
    except services.JobRefused as refused:
        raise BadRequest(
            refused.message,
            param="messages" if refused.field == "prompt" else refused.field,
            code="context_length_exceeded",
        ) from refused
    deadline = time.monotonic() + (
        request.deadline_ms / 1000
        if request.deadline_ms
        else settings.BODYBROKER_BRONZE_SYNC_WAIT_S
    )
    delay = 0.05
    while time.monotonic() < deadline:
        row = await Job.objects.filter(pk=job.pk).afirst()
        if row is not None and row.status in FINISHED_STATUSES:
            if row.status != "succeeded":
                raise BadRequest(
                    f"Bronze job {row.pk} failed: {row.error}",
                    status=502,
                    type_="server_error",
                    code="job_failed",
                )
            return Answer(
                text=row.result_text,
                tier="bronze",
                source="model",
                model=str(settings.BODYBROKER_TIERS["bronze"]["model"]),
                route_reason=decision.reason,
                prompt_tokens=row.prompt_tokens,
                completion_tokens=row.completion_tokens,
                latency_ms=row.duration_ms or 0.0,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    raise BadRequest(
        f"Bronze job {job.pk} is still running; poll /api/v1/jobs/{job.pk}",
        status=504,
        type_="server_error",
        code="job_pending",
    )
