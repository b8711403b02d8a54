"""Test doubles for code that talks to model servers: a scriptable engine.

A real engine will not stall, drop a stream or send an error event on demand. ``ScriptedEngine`` is
a raw asyncio HTTP server on 127.0.0.1 that writes exactly the bytes a test scripts, so the
gateway's fallback paths (stall, first-token timeout, broken stream, 5xx) can be tested against
real sockets with the real ``EngineClient``::

    async def script(writer):
        writer.write(SSE_HEAD + sse_event("Hel"))
        await writer.drain()
        await asyncio.sleep(3600)  # then go quiet

    async with ScriptedEngine(script) as fake:
        client = EngineClient(fake.base_url, "gold", Timeouts(stall=0.2))
        ...

Test-only; nothing in the serving path imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

__all__ = ["SSE_HEAD", "ScriptedEngine", "Script", "json_response", "sse_event"]

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\n"
    b"connection: close\r\n\r\n"
)


def sse_event(text: str = "", finish_reason: str | None = None) -> bytes:
    """One OpenAI chat.completion.chunk as an SSE event."""
    delta = {"content": text} if text else {}
    chunk = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "model": "gold",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def json_response(status: int, body: Any, reason: str = "X") -> bytes:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(raw)}\r\nconnection: close\r\n\r\n"
    ).encode() + raw


Script = Callable[[asyncio.StreamWriter], Awaitable[None]]


class ScriptedEngine:
    """A one-route HTTP server on 127.0.0.1 whose response is written by ``script``.

    ``requests`` collects the JSON bodies received. Handlers still running (a script that
    "hangs") are cancelled on exit.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ScriptedEngine:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            if body:
                self.requests.append(json.loads(body))
            await self.script(writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            # A hung script is cancelled when the engine closes; that is its normal end.
            pass
        finally:
            writer.close()
            if task is not None:
                self._handlers.discard(task)


def completion(
    text: str, *, completion_tokens: int = 3, delay_s: float = 0.0, finish_reason: str = "stop"
) -> Script:
    """A script answering every request with one non-streamed chat completion of ``text``."""

    async def script(writer: asyncio.StreamWriter) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        writer.write(
            json_response(
                200,
                {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion",
                    "model": "scripted",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": finish_reason,
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": completion_tokens},
                },
                "OK",
            )
        )

    return script


async def server_error(writer: asyncio.StreamWriter) -> None:
    """A script that answers 500, as an engine out of memory does."""
    writer.write(json_response(500, {"error": {"message": "CUDA out of memory"}}, "Error"))


async def silent(writer: asyncio.StreamWriter) -> None:
    """A script that accepts the request and never answers."""
    await asyncio.sleep(3600)


def streamed(text: str) -> Script:
    """A script streaming ``text`` word by word as SSE, then ``[DONE]``."""

    async def script(writer: asyncio.StreamWriter) -> None:
        words = text.split(" ")
        writer.write(SSE_HEAD)
        for index, word in enumerate(words):
            piece = word if index == len(words) - 1 else word + " "
            writer.write(sse_event(piece))
        writer.write(sse_event("", "stop") + b"data: [DONE]\n\n")

    return script
