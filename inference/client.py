"""The one client that talks to the model servers (llama.cpp, vLLM, TensorRT-LLM).

All three speak the OpenAI chat-completions protocol. This module is the only place that opens
sockets to them: one pooled ``aiohttp.ClientSession`` per ``EngineClient``, explicit connect,
first-token, stall and total timeouts, and one error hierarchy (``inference.errors``).

It sits on the gateway's hot path (overhead budget: about 1 ms per request), so request bodies
are built once as bytes, URLs and timeouts are pre-built, and the SSE parser works on bytes.
aiohttp rather than httpx because of that budget: against an upstream that answers at once, a
pooled ``httpx.AsyncClient`` cost more than twice as much per call as aiohttp
(``make bench-gateway`` measures the whole door; figures in docs/router.md).

A call whose caller is cancelled (a client that disconnected, a ``dialogue.cancel``, a deadline
that passed) or that runs past its own timeouts closes its connection rather than returning it
to the pool: that is how the engine learns nobody waits for the answer, and the CPU engine
(``inference.llama_server``) stops generating at the next token.

Sync Django code reaches it through ``asgiref.sync.async_to_sync``, which may run each call on a
fresh event loop; a session must never be used from two loops, so use ``get_client()``, which
keeps one pooled client per running loop. The session itself is opened on first use, inside
the loop that uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from inference.errors import (
    EngineError,
    EngineHTTPError,
    EngineProtocolError,
    EngineStalled,
    EngineTimeout,
    EngineUnavailable,
)

if TYPE_CHECKING:
    from inference.profiles import Profile

__all__ = [
    "DEFAULT_TIMEOUTS",
    "Chunk",
    "Completion",
    "EngineClient",
    "HealthResult",
    "Message",
    "Timeouts",
    "ToolCall",
    "aclose_loop_clients",
    "get_client",
    "translate_response_format",
]

Message = Mapping[str, Any]
"""One chat message, OpenAI-shaped: ``{"role": "user", "content": "..."}``."""

_CHAT_PATH = "/v1/chat/completions"
_MODELS_PATH = "/v1/models"
_DONE = b"[DONE]"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Deadlines of one request, in seconds.

    * ``connect``: opening the TCP connection (a pooled keep-alive connection skips it).
    * ``first_token``: request sent -> first generated token of a stream.
    * ``total``: the whole request, streamed or not.
    * ``stall``: longest silence between two streamed tokens; ``None`` means ``first_token``.
      Keep-alive comments (``: ping``) do not count as tokens.
    * ``health``: a health probe, end to end.
    """

    connect: float = 1.0
    first_token: float = 5.0
    total: float = 60.0
    stall: float | None = None
    health: float = 1.0

    def __post_init__(self) -> None:
        for name in ("connect", "first_token", "total", "health"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Timeouts.{name} must be > 0")
        if self.stall is not None and self.stall <= 0:
            raise ValueError("Timeouts.stall must be > 0")

    @property
    def stall_after_first_token(self) -> float:
        return self.first_token if self.stall is None else self.stall


DEFAULT_TIMEOUTS = Timeouts()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` is JSON text as the engine wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished, non-streamed chat completion."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str
    tool_calls: tuple[ToolCall, ...]
    latency_ms: float
    ttft_ms: float | None = None
    """Time to first token; None for a non-streamed request (the engine sends it all at once)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One streamed delta.

    ``tool_calls`` holds the raw OpenAI ``delta.tool_calls`` entries (partial function names and
    argument fragments, keyed by ``index``). ``prompt_tokens``/``completion_tokens`` are set on
    the usage chunk that engines send when asked to (``extra={"stream_options":
    {"include_usage": True}}`` on vLLM/TensorRT-LLM; llama.cpp sends none). ``elapsed_ms`` is
    the time since the request was sent; the first chunk's is the time to first token.
    """

    text: str
    finish_reason: str | None
    elapsed_ms: float
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class HealthResult:
    """Outcome of a health probe; ``detail`` says why it is not ok.

    ``timed_out`` tells a probe that got no answer in time from one that was refused or answered
    with an error: a CPU engine answers ``/v1/models`` only between generations, so a slow
    answer alone does not mean the engine is down (``EngineClient.listening`` tells the rest).
    """

    ok: bool
    latency_ms: float
    detail: str
    timed_out: bool = False


# Engines whose server wants OpenAI's response_format rewritten.
_LLAMA_CPP_ENGINES = frozenset({"cpu", "llama_cpp", "llama.cpp"})
_OPENAI_FORMAT_ENGINES = frozenset({"vllm", "trtllm"})


def translate_response_format(
    engine: str, response_format: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """Rewrite an OpenAI ``response_format`` for ``engine``.

    llama.cpp's server answers HTTP 500 to ``{"type": "json_schema", "json_schema": {"schema":
    S}}`` but constrains output to S with ``{"type": "json_object", "schema": S}``. vLLM and
    TensorRT-LLM take the OpenAI form as is (TensorRT-LLM needs a guided-decoding backend
    configured on the server).
    """
    if response_format is None:
        return None
    if engine in _LLAMA_CPP_ENGINES:
        if response_format.get("type") != "json_schema":
            return response_format
        json_schema = response_format.get("json_schema") or {}
        schema = json_schema.get("schema")
        if schema is None:
            return {"type": "json_object"}
        return {"type": "json_object", "schema": schema}
    if engine in _OPENAI_FORMAT_ENGINES:
        return response_format
    raise ValueError(f"unknown engine {engine!r} for response_format translation")


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _transport_error(exc: aiohttp.ClientError, url: str, text: str = "") -> EngineError:
    """Map an aiohttp exception to the engine error hierarchy."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return EngineUnavailable(f"connect to {url} timed out", text=text)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return EngineTimeout(f"{name} talking to {url}", phase="total", text=text)
    if isinstance(
        exc,
        aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | aiohttp.ClientOSError,
    ):
        return EngineUnavailable(f"{name} talking to {url}: {exc}", text=text)
    return EngineProtocolError(f"{name} talking to {url}: {exc}", text=text)


class EngineClient:
    """Async OpenAI-compatible client for one model server and one served model name.

    ``base_url`` is the server root (``http://127.0.0.1:8101``; a trailing ``/v1`` is dropped).
    ``model`` is the served model name sent in every request (``"gold"``, ``"silver"``).
    ``engine`` (``"cpu"``, ``"vllm"``, ``"trtllm"``), when given, makes ``response_format`` go
    through ``translate_response_format`` so callers can always send the OpenAI form.

    Create one per process/event loop and reuse it (``get_client`` does that); creating one per
    request throws away the connection pool.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        api_key: str | None = None,
        *,
        engine: str | None = None,
        health_path: str = _MODELS_PATH,
        max_connections: int = 64,
        max_keepalive_connections: int = 16,
        keepalive_expiry: float = 30.0,
    ) -> None:
        root = base_url.rstrip("/")
        root = root.removesuffix("/v1")
        self.base_url = root
        self.model = model
        self.timeouts = timeouts
        self.engine = engine
        self.health_path = health_path
        if engine is not None and engine not in _LLAMA_CPP_ENGINES | _OPENAI_FORMAT_ENGINES:
            raise ValueError(f"unknown engine {engine!r}")
        headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        # Pre-built once: parsing a URL per request costs more than the rest of the work.
        self._chat_url = URL(root + _CHAT_PATH)
        self._models_url = URL(root + _MODELS_PATH)
        self._health_url = URL(root + health_path)
        self._chat_timeout = aiohttp.ClientTimeout(
            total=timeouts.total, sock_connect=timeouts.connect
        )
        self._health_timeout = aiohttp.ClientTimeout(
            total=timeouts.health, sock_connect=timeouts.health
        )
        self._headers = headers
        self._stream_headers = {"accept": "text/event-stream"}
        self._limits = (max_connections, max_keepalive_connections, keepalive_expiry)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        api_key: str | None = None,
    ) -> EngineClient:
        """A client for the server a launch profile starts: its URL, served model name,
        engine (for ``response_format``) and health path."""
        return cls(
            profile.base_url(host, port),
            profile.served_model_name,
            timeouts,
            api_key,
            engine=profile.engine,
            health_path=profile.health_path,
        )

    def __repr__(self) -> str:
        return f"EngineClient({self.base_url!r}, model={self.model!r}, engine={self.engine!r})"

    @property
    def closed(self) -> bool:
        return self._closed

    def _http(self) -> aiohttp.ClientSession:
        """The pooled session, opened on first use in the running loop."""
        if self._session is None:
            if self._closed:
                raise RuntimeError("this EngineClient is closed")
            connections, _, keepalive = self._limits
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=connections, keepalive_timeout=keepalive, ttl_dns_cache=300
                ),
                headers=self._headers,
                timeout=self._chat_timeout,
                # Model servers are local or on the private network; never route them through
                # an HTTP(S)_PROXY set for outbound traffic.
                trust_env=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close pooled connections. The client cannot be used afterwards."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _body(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float | None,
        stop: str | Sequence[str] | None,
        tools: Sequence[Mapping[str, Any]] | None,
        tool_choice: str | Mapping[str, Any] | None,
        response_format: Mapping[str, Any] | None,
        extra: Mapping[str, Any] | None,
        stream: bool,
    ) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages if isinstance(messages, list) else list(messages),
            "max_tokens": max_tokens,
        }
        if stream:
            body["stream"] = True
        if temperature is not None:
            body["temperature"] = temperature
        if stop is not None:
            body["stop"] = stop if isinstance(stop, str) else list(stop)
        if tools is not None:
            body["tools"] = list(tools)
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        if response_format is not None:
            if self.engine is not None:
                response_format = translate_response_format(self.engine, response_format)
            body["response_format"] = response_format
        if extra:
            body.update(extra)
        try:
            return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        except TypeError as exc:
            raise TypeError(f"chat request is not JSON-serialisable: {exc}") from exc

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Completion:
        """One non-streamed chat completion, bounded by ``timeouts.connect`` and ``.total``.

        ``extra`` is merged into the request body last (engine-specific sampling knobs such as
        ``top_k``, ``seed``, ``repeat_penalty``).
        """
        content = self._body(
            messages,
            max_tokens,
            temperature,
            stop,
            tools,
            tool_choice,
            response_format,
            extra,
            stream=False,
        )
        start = time.perf_counter()
        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(self.timeouts.total):
                response = await self._http().post(self._chat_url, data=content)
                status = response.status
                raw = await response.read()
        except BaseException as exc:
            # Cancelled (the caller left, its deadline passed) or failed before the answer was
            # read: close the connection instead of pooling it, so the engine sees its caller
            # leave and stops generating (``inference.llama_server`` does so at the next token).
            if response is not None:
                response.close()
            if isinstance(exc, TimeoutError):
                raise EngineTimeout(
                    f"no answer from {self.base_url} within {self.timeouts.total}s",
                    phase="total",
                ) from None
            if isinstance(exc, aiohttp.ClientError):
                raise _transport_error(exc, self.base_url) from exc
            raise
        response.release()
        latency_ms = _ms_since(start)
        if status != 200:
            raise EngineHTTPError(status, raw.decode(errors="replace"))
        return _parse_completion(raw, latency_ms, self.model)

    async def stream_chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Chunk]:
        """Stream a chat completion as ``Chunk``s (empty role-only deltas are skipped).

        Raises ``EngineTimeout`` (phase ``first_token``) when no token arrives within
        ``timeouts.first_token`` of sending, ``EngineStalled`` (with the text so far) when a
        started stream goes quiet for ``timeouts.stall``, ``EngineTimeout`` (phase ``total``)
        past ``timeouts.total``. Consumers that stop early should wrap the iterator in
        ``contextlib.aclosing``: closing it (or cancelling the task reading it) closes the
        connection at once, and the engine stops generating.
        """
        content = self._body(
            messages,
            max_tokens,
            temperature,
            stop,
            tools,
            tool_choice,
            response_format,
            extra,
            stream=True,
        )
        timeouts = self.timeouts
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        now = loop.time()
        total_deadline = now + timeouts.total
        deadline = min(now + timeouts.first_token, total_deadline)
        stall = timeouts.stall_after_first_token
        parts: list[str] = []
        got_token = False
        finished = False

        def deadline_error() -> EngineError:
            text = "".join(parts)
            if deadline >= total_deadline:
                return EngineTimeout(
                    f"stream from {self.base_url} ran past total {timeouts.total}s",
                    phase="total",
                    text=text,
                )
            if not got_token:
                return EngineTimeout(
                    f"no first token from {self.base_url} within {timeouts.first_token}s",
                    phase="first_token",
                )
            return EngineStalled(
                f"stream from {self.base_url} stalled for {stall}s after {len(text)} chars",
                text=text,
            )

        try:
            async with asyncio.timeout_at(deadline):
                response = await self._http().post(
                    self._chat_url, data=content, headers=self._stream_headers, timeout=None
                )
        except TimeoutError:
            raise deadline_error() from None
        except aiohttp.ClientError as exc:
            raise _transport_error(exc, self.base_url) from exc

        try:
            if response.status != 200:
                body = ""
                try:
                    async with asyncio.timeout_at(total_deadline):
                        body = (await response.read()).decode(errors="replace")
                except (TimeoutError, aiohttp.ClientError):
                    pass
                raise EngineHTTPError(response.status, body)
            content_stream = response.content
            pending = b""
            data_lines: list[bytes] = []
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        received = await content_stream.readany() or None
                except TimeoutError:
                    raise deadline_error() from None
                except aiohttp.ClientError as exc:
                    raise _transport_error(exc, self.base_url, "".join(parts)) from exc
                if received is None:
                    # The server closed the stream without [DONE]; flush a last event.
                    if pending.startswith(b"data:"):
                        data_lines.append(pending[5:].lstrip(b" "))
                    payloads = [b"\n".join(data_lines)] if data_lines else []
                    data_lines = []
                else:
                    lines = (pending + received if pending else received).split(b"\n")
                    pending = lines.pop()
                    payloads = []
                    for line in lines:
                        if line.endswith(b"\r"):
                            line = line[:-1]
                        if not line:
                            if data_lines:
                                payloads.append(
                                    data_lines[0]
                                    if len(data_lines) == 1
                                    else b"\n".join(data_lines)
                                )
                                data_lines = []
                        elif line.startswith(b"data:"):
                            value = line[5:]
                            data_lines.append(value[1:] if value.startswith(b" ") else value)
                        # Other SSE fields (comments/pings, event:, id:, retry:) carry no tokens.
                for payload in payloads:
                    if payload == _DONE:
                        return
                    chunk = _parse_chunk(payload, start, parts)
                    if chunk is None:
                        continue
                    if chunk.text or chunk.tool_calls or chunk.finish_reason:
                        if chunk.text:
                            parts.append(chunk.text)
                        if chunk.finish_reason:
                            finished = True
                        got_token = True
                        deadline = min(loop.time() + stall, total_deadline)
                    yield chunk
                if received is None:
                    if finished:
                        return
                    # Connection closed with neither [DONE] nor a finish_reason: the engine
                    # died or was restarted mid-answer.
                    raise EngineUnavailable(
                        f"stream from {self.base_url} ended before the answer finished",
                        text="".join(parts),
                    )
        finally:
            response.close()

    async def health(self) -> HealthResult:
        """Probe ``health_path`` with ``timeouts.health``; never raises (cancellation aside)."""
        start = time.perf_counter()
        try:
            async with (
                asyncio.timeout(self.timeouts.health),
                self._http().get(self._health_url, timeout=self._health_timeout) as response,
            ):
                status = response.status
                text = (await response.read()).decode(errors="replace")
        except TimeoutError:
            return HealthResult(
                False, _ms_since(start), f"timed out after {self.timeouts.health}s", timed_out=True
            )
        except Exception as exc:  # a probe reports failures, it does not raise them
            return HealthResult(False, _ms_since(start), f"{type(exc).__name__}: {exc}")
        latency_ms = _ms_since(start)
        if status == 200:
            return HealthResult(True, latency_ms, "ok")
        return HealthResult(False, latency_ms, f"HTTP {status}: {text[:200]}")

    async def listening(self) -> HealthResult:
        """Whether the server's port accepts a TCP connection within ``timeouts.connect``.

        The kernel completes the handshake from the listen backlog without the server's help, so
        this tells a live process, however busy its model is, from one that is gone (refused) or
        unreachable; it says nothing about whether the model answers. Never raises.
        """
        start = time.perf_counter()
        url = self._health_url
        try:
            async with asyncio.timeout(self.timeouts.connect):
                _, writer = await asyncio.open_connection(url.host, url.port)
        except TimeoutError:
            return HealthResult(
                False, _ms_since(start), f"connect timed out after {self.timeouts.connect}s", True
            )
        except OSError as exc:
            return HealthResult(False, _ms_since(start), f"{type(exc).__name__}: {exc}")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return HealthResult(True, _ms_since(start), "port open")

    async def models(self) -> list[str]:
        """Ids of the models the server serves (``GET /v1/models``)."""
        try:
            async with (
                asyncio.timeout(self.timeouts.total),
                self._http().get(self._models_url) as response,
            ):
                status = response.status
                raw = await response.read()
        except TimeoutError:
            raise EngineTimeout(f"{self.base_url}/v1/models timed out", phase="total") from None
        except aiohttp.ClientError as exc:
            raise _transport_error(exc, self.base_url) from exc
        if status != 200:
            raise EngineHTTPError(status, raw.decode(errors="replace"))
        try:
            return [str(entry["id"]) for entry in json.loads(raw)["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineProtocolError(f"unexpected /v1/models answer: {exc}") from exc


def _parse_completion(raw: bytes, latency_ms: float, default_model: str) -> Completion:
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        tool_calls = tuple(
            ToolCall(
                id=str(call.get("id") or ""),
                name=str(call["function"]["name"]),
                arguments=str(call["function"].get("arguments") or ""),
            )
            for call in message.get("tool_calls") or ()
        )
        return Completion(
            text=message.get("content") or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            model=data.get("model") or default_model,
            tool_calls=tool_calls,
            latency_ms=latency_ms,
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise EngineProtocolError(
            f"not an OpenAI chat completion ({type(exc).__name__}: {exc}): {raw[:300]!r}"
        ) from exc


def _parse_chunk(payload: bytes, start: float, parts: list[str]) -> Chunk | None:
    """Parse one SSE data payload; ``parts`` (text so far) is joined only for an error."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise EngineProtocolError(
            f"stream event is not JSON: {payload[:300]!r}", text="".join(parts)
        ) from exc
    if not isinstance(data, dict):
        raise EngineProtocolError(
            f"stream event is not an object: {payload[:300]!r}", text="".join(parts)
        )
    error = data.get("error")
    if error is not None:
        # vLLM and TensorRT-LLM report failures after the 200 as an error event.
        status = error.get("code") if isinstance(error, dict) else None
        raise EngineHTTPError(
            status if isinstance(status, int) else 500,
            payload.decode(errors="replace"),
            text="".join(parts),
        )
    usage = data.get("usage")
    choices = data.get("choices")
    if not choices:
        if usage:
            return Chunk(
                "",
                None,
                _ms_since(start),
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
            )
        return None
    try:
        choice = choices[0]
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        tool_calls = delta.get("tool_calls")
        finish_reason = choice.get("finish_reason")
    except (AttributeError, IndexError, TypeError) as exc:
        raise EngineProtocolError(
            f"unexpected stream event ({exc}): {payload[:300]!r}", text="".join(parts)
        ) from exc
    if not text and not tool_calls and not finish_reason and not usage:
        return None  # role-only or empty delta
    return Chunk(
        text,
        finish_reason,
        _ms_since(start),
        tuple(tool_calls) if tool_calls else (),
        usage.get("prompt_tokens") if usage else None,
        usage.get("completion_tokens") if usage else None,
    )


# One pooled client per (running event loop, endpoint). Keyed weakly by the loop so the clients
# of a loop that asgiref's async_to_sync created and closed go away with it.
_loop_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], EngineClient]
] = weakref.WeakKeyDictionary()
_loop_clients_lock = threading.Lock()


def get_client(
    base_url: str,
    model: str,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    *,
    api_key: str | None = None,
    engine: str | None = None,
    health_path: str = _MODELS_PATH,
) -> EngineClient:
    """The pooled ``EngineClient`` for this endpoint on the running event loop.

    Must be called from a coroutine. Each event loop gets its own client, so a pooled
    connection is never used from a loop other than the one that opened it. Under ASGI
    (uvicorn/daphne) all requests share the server's loop and so one pool; under WSGI or a
    management command, ``async_to_sync`` runs each call on a new loop, so each call gets a
    new client, and its connections are dropped when that loop is garbage-collected.
    """
    loop = asyncio.get_running_loop()
    key = (base_url, model, timeouts, api_key, engine, health_path)
    per_loop = _loop_clients.get(loop)
    if per_loop is not None:
        client = per_loop.get(key)
        if client is not None and not client.closed:
            return client
    with _loop_clients_lock:
        per_loop = _loop_clients.setdefault(loop, {})
        client = per_loop.get(key)
        if client is None or client.closed:
            client = EngineClient(
                base_url, model, timeouts, api_key, engine=engine, health_path=health_path
            )
            per_loop[key] = client
        return client


async def aclose_loop_clients() -> None:
    """Close the pooled clients of the running loop (e.g. on ASGI lifespan shutdown)."""
    loop = asyncio.get_running_loop()
    with _loop_clients_lock:
        clients = list(_loop_clients.pop(loop, {}).values())
    for client in clients:
        await client.aclose()
