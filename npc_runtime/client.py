"""``GameClient``: the Python game-client library for ``/ws/game/``.

A background reader task receives every server frame: intents land in a local cache (pushed or
answering ``intent.get``), answers are matched to requests by ``ref``, dialogue tokens go to their
stream. :meth:`GameClient.frame` runs an NPC's micro-policy on the cached intent and never awaits
the network. Reconnecting is left to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from npc_runtime.policies import POLICIES, Action, Intent, NpcState, choose_intent, run_policy
from npc_runtime.protocol import (
    MAX_BATCH,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    ClientMessage,
    DialogueCancel,
    DialogueDone,
    DialogueSay,
    DialogueToken,
    ErrorMessage,
    Hello,
    IntentGet,
    IntentMessage,
    IntentsGet,
    IntentsMessage,
    Ping,
    Pong,
    ProtocolError,
    Ref,
    ServerMessage,
    StateUpdate,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Welcome,
    encode,
    parse_server_message,
    state_to_wire,
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


try:  # orjson builds a state.batch several times faster than json (docs/npcs.md)
    import orjson
except ImportError:  # pragma: no cover - the library also works with the standard one
    orjson = None  # type: ignore[assignment]


def _state_item(npc_id: str, state: NpcState) -> str:
    """``"<npc_id>":<state_to_wire(state)>``, compact, for a ``state.batch``."""
    if orjson is None:
        return f"{_dumps(npc_id)}:{_dumps(state_to_wire(state))}"
    wire = state_to_wire(state)
    text = orjson.dumps(wire).decode()
    if "null" in text:
        # orjson writes NaN and infinities as null; the standard encoder refuses them, as
        # this library always has (a wire state holds only numbers and booleans).
        text = _dumps(wire)
    key = orjson.dumps(npc_id).decode()
    if not key.isascii():  # the batch's size is counted in characters: keep frames ASCII
        key = _dumps(npc_id)
    return f"{key}:{text}"


class ServerError(Exception):
    """The server answered a request with an ``error`` frame."""

    def __init__(self, error: ErrorMessage) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error
        self.code = error.code


@dataclass(slots=True)
class CachedIntent:
    """An intent in the local cache, valid until ``expires_at`` (the client's monotonic clock)."""

    intent: Intent
    source: str
    expires_at: float


@dataclass(slots=True)
class NpcConfig:
    """How to run one NPC locally: its micro-policy and allowed intent names."""

    policy: str = "guard"
    allowed: tuple[str, ...] | None = None


class DialogueStream:
    """An NPC reply being streamed: ``async for text in stream`` yields tokens until done.

    After the loop, ``done`` holds the :class:`DialogueDone` (whole text and source).
    """

    def __init__(self, client: GameClient, ref: str) -> None:
        self._client = client
        self.ref = ref
        self.conversation_id: str | None = None
        self.done: DialogueDone | None = None
        self._queue: asyncio.Queue[DialogueToken | DialogueDone | ErrorMessage | None] = (
            asyncio.Queue()
        )

    def _feed(self, message: DialogueToken | DialogueDone | ErrorMessage | None) -> None:
        if isinstance(message, DialogueToken | DialogueDone):
            self.conversation_id = message.conversation_id
        self._queue.put_nowait(message)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._tokens()

    async def _tokens(self) -> AsyncIterator[str]:
        timeout = self._client.request_timeout
        try:
            while True:
                message = await asyncio.wait_for(self._queue.get(), timeout)
                if message is None:
                    raise ConnectionError("connection closed during dialogue")
                if isinstance(message, ErrorMessage):
                    raise ServerError(message)
                if isinstance(message, DialogueDone):
                    self.done = message
                    return
                yield message.text
        finally:
            self._client._streams.pop(self.ref, None)

    async def cancel(self) -> None:
        """Ask the server to stop this reply (a ``dialogue.done`` with ``cancelled`` follows)."""
        await self._client.cancel(conversation_id=self.conversation_id, ref=self.ref)


class GameClient:
    """Async websocket client for the game protocol. Create with :meth:`connect`."""

    def __init__(
        self,
        connection: ClientConnection,
        *,
        request_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self.request_timeout = request_timeout
        self.clock = clock
        self.welcome: Welcome | None = None
        self.intent_cache: dict[str, CachedIntent] = {}
        self.npcs: dict[str, NpcConfig] = {}
        self.errors: deque[ErrorMessage] = deque(maxlen=100)
        self.on_intent: Callable[[IntentMessage], None] | None = None
        self.on_error: Callable[[ErrorMessage], None] | None = None
        self._refs = itertools.count(1)
        self._pending: dict[Ref, asyncio.Future[ServerMessage]] = {}
        self._streams: dict[Ref, DialogueStream] = {}
        self._pushed: asyncio.Queue[IntentMessage | None] = asyncio.Queue(maxsize=10_000)
        self._actions: dict[str, Action] = {}
        self._reader = asyncio.create_task(self._read_loop())

    # ------------------------------------------------------------------ connection

    @classmethod
    async def connect(
        cls,
        url: str,
        api_key: str | None = None,
        *,
        hello: bool = True,
        request_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> GameClient:
        """Open the websocket (the key goes in ``Authorization: Bearer``) and, by default, say
        ``hello``. Raises :class:`ServerError` if the server refuses the hello."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        connection = await connect(
            url, additional_headers=headers, open_timeout=request_timeout, compression=None
        )
        client = cls(connection, request_timeout=request_timeout, clock=clock)
        if hello:
            try:
                await client.hello()
            except BaseException:
                await client.close()
                raise
        return client

    async def close(self) -> None:
        """Close the socket and stop the reader; pending requests fail with ``ConnectionError``."""
        await self.connection.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), self.request_timeout)
        except (TimeoutError, asyncio.CancelledError):
            self._reader.cancel()

    async def __aenter__(self) -> GameClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ requests

    def _next_ref(self) -> str:
        return f"c{next(self._refs)}"

    async def send(self, message: ClientMessage) -> None:
        """Send one message as is (no answer awaited). Raises ``ConnectionError`` once closed."""
        await self._send_text(encode(message))

    async def _send_text(self, text: str) -> None:
        if self._reader.done():
            raise ConnectionError("connection closed")
        try:
            await self.connection.send(text)
        except ConnectionClosed as exc:
            raise ConnectionError("connection closed") from exc

    async def _request(self, message: ClientMessage, timeout: float | None = None) -> ServerMessage:
        ref = message.ref
        future: asyncio.Future[ServerMessage] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self.send(message)
            answer = await asyncio.wait_for(future, timeout or self.request_timeout)
        finally:
            self._pending.pop(ref, None)
        if isinstance(answer, ErrorMessage):
            raise ServerError(answer)
        return answer

    async def hello(self, protocol: int = PROTOCOL_VERSION, api_key: str | None = None) -> Welcome:
        """Send ``hello`` and wait for ``welcome``."""
        answer = await self._request(
            Hello(protocol=protocol, api_key=api_key, ref=self._next_ref())
        )
        if not isinstance(answer, Welcome):
            raise ProtocolError("bad_frame", f"expected welcome, got {answer.type}")
        self.welcome = answer
        return answer

    async def subscribe(
        self, npc_id: str, *, policy: str | None = None, allowed: tuple[str, ...] | None = None
    ) -> Subscribed:
        """Subscribe to ``npc_id``'s intents. The server's ``npc.subscribed`` says which policy
        and intents the NPC uses; ``policy``/``allowed`` override them locally."""
        answer = await self._request(Subscribe(npc_id=npc_id, ref=self._next_ref()))
        if not isinstance(answer, Subscribed):
            raise ProtocolError("bad_frame", f"expected npc.subscribed, got {answer.type}")
        name = policy or answer.policy
        self.npcs[npc_id] = NpcConfig(
            policy=name if name in POLICIES else "guard",
            allowed=allowed if allowed is not None else tuple(answer.allowed_intents),
        )
        return answer

    async def unsubscribe(self, npc_id: str) -> None:
        """Stop pushes for ``npc_id`` and forget its cached intent."""
        await self._request(Unsubscribe(npc_id=npc_id, ref=self._next_ref()))
        self.npcs.pop(npc_id, None)
        self.intent_cache.pop(npc_id, None)

    async def send_state(
        self, npc_id: str, state: NpcState, world: dict[str, Any] | None = None
    ) -> None:
        """Send ``state.update`` (fire and forget; a rejection arrives in ``errors``)."""
        await self.send(
            StateUpdate(
                npc_id=npc_id, state=state_to_wire(state), world=world, ref=self._next_ref()
            )
        )

    async def send_states(
        self, states: dict[str, NpcState], world: dict[str, Any] | None = None
    ) -> None:
        """Send many NPCs' states as ``state.batch`` frames (protocol 2): one frame per game
        frame, split only where a frame would pass the server's size or batch limit. On a
        protocol-1 connection, one ``state.update`` per NPC."""
        if not self._batches():
            for npc_id, state in states.items():
                await self.send_state(npc_id, state, world)
            return
        limit = self.welcome.max_frame_bytes if self.welcome else MAX_FRAME_BYTES
        tail = "}" if world is None else f',"world":{_dumps(world)}}}'
        items: list[str] = []
        size = 0
        for npc_id, state in states.items():
            item = _state_item(npc_id, state)
            if items and (size + len(item) + 64 + len(tail) > limit or len(items) >= MAX_BATCH):
                await self._send_batch(items, tail)
                items, size = [], 0
            items.append(item)
            size += len(item) + 1  # ASCII: json.dumps escapes the rest
        if items:
            await self._send_batch(items, tail)

    def _batches(self) -> bool:
        """Whether the connection agreed on protocol 2 (a client that skipped ``hello``
        speaks version 1)."""
        return self.welcome is not None and self.welcome.protocol >= 2

    async def _send_batch(self, items: list[str], tail: str) -> None:
        ref = _dumps(self._next_ref())
        await self._send_text(
            f'{{"type":"state.batch","ref":{ref},"states":{{{",".join(items)}}}{tail}'
        )

    async def get_intents(
        self, npc_ids: list[str], timeout: float | None = None
    ) -> list[IntentMessage]:
        """Ask for many NPCs' current intents with ``intents.get`` (protocol 2), in requests of
        at most ``MAX_BATCH`` NPCs (one ``intent.get`` each on a protocol-1 connection); the
        answers also refresh the local cache."""
        if not self._batches():
            return [await self.get_intent(npc_id, timeout) for npc_id in npc_ids]
        out: list[IntentMessage] = []
        for start in range(0, len(npc_ids), MAX_BATCH):
            chunk = npc_ids[start : start + MAX_BATCH]
            answer = await self._request(IntentsGet(npc_ids=chunk, ref=self._next_ref()), timeout)
            if not isinstance(answer, IntentsMessage):
                raise ProtocolError("bad_frame", f"expected intents, got {answer.type}")
            out.extend(answer.intents)
        return out

    async def get_intent(self, npc_id: str, timeout: float | None = None) -> IntentMessage:
        """Ask for ``npc_id``'s current intent (the answer also refreshes the local cache)."""
        answer = await self._request(IntentGet(npc_id=npc_id, ref=self._next_ref()), timeout)
        if not isinstance(answer, IntentMessage):
            raise ProtocolError("bad_frame", f"expected intent, got {answer.type}")
        return answer

    async def ping(self) -> Pong:
        """Round trip ``ping`` → ``pong``."""
        answer = await self._request(Ping(ref=self._next_ref()))
        if not isinstance(answer, Pong):
            raise ProtocolError("bad_frame", f"expected pong, got {answer.type}")
        return answer

    async def say(
        self, npc_id: str, text: str, conversation_id: str | None = None
    ) -> DialogueStream:
        """Say ``text`` to ``npc_id``; iterate the returned stream for the reply's tokens."""
        ref = self._next_ref()
        stream = DialogueStream(self, ref)
        stream.conversation_id = conversation_id
        self._streams[ref] = stream
        await self.send(
            DialogueSay(npc_id=npc_id, text=text, conversation_id=conversation_id, ref=ref)
        )
        return stream

    async def cancel(self, *, conversation_id: str | None = None, ref: str | None = None) -> None:
        """Send ``dialogue.cancel`` for a conversation (or the ref of its ``dialogue.say``)."""
        await self.send(DialogueCancel(conversation_id=conversation_id, ref=ref))

    async def intents(self) -> AsyncIterator[IntentMessage]:
        """Every intent frame received (pushed or answered), until the connection closes."""
        while True:
            message = await self._pushed.get()
            if message is None:
                return
            yield message

    # ------------------------------------------------------------------ per frame

    def cached_intent(self, npc_id: str, now: float | None = None) -> CachedIntent | None:
        """The cached intent of ``npc_id`` if it has not expired."""
        entry = self.intent_cache.get(npc_id)
        if entry is None:
            return None
        if (now if now is not None else self.clock()) >= entry.expires_at:
            return None
        return entry

    def frame(self, npc_id: str, state: NpcState, dt: float, now: float | None = None) -> Action:
        """Run ``npc_id``'s micro-policy for one frame; never touches the network.

        Uses the cached intent while its ttl lasts, else the policy's own ``choose_intent``. The
        returned :class:`Action` is reused for the next frame of the same NPC: copy what you keep.
        """
        config = self.npcs.get(npc_id)
        if config is None:
            config = self.npcs[npc_id] = NpcConfig()
        entry = self.cached_intent(npc_id, now)
        if entry is not None:
            intent = entry.intent
        else:
            intent = choose_intent(config.policy, state, config.allowed)
        out = self._actions.get(npc_id)
        if out is None:
            out = self._actions[npc_id] = Action()
        return run_policy(config.policy, intent, state, dt, out)

    # ------------------------------------------------------------------ reader

    def _keep_intent(self, message: IntentMessage, now: float) -> None:
        self.intent_cache[message.npc_id] = CachedIntent(
            intent=Intent(message.intent, message.args),
            source=message.source,
            expires_at=now + message.ttl_ms / 1000.0,
        )
        if self._pushed.full():
            self._pushed.get_nowait()
        self._pushed.put_nowait(message)
        if self.on_intent is not None:
            self.on_intent(message)

    def _on_message(self, message: ServerMessage) -> None:
        if isinstance(message, IntentMessage):
            self._keep_intent(message, self.clock())
        elif isinstance(message, IntentsMessage):
            now = self.clock()
            for item in message.intents:
                self._keep_intent(item, now)
        ref = message.ref
        if isinstance(message, DialogueToken | DialogueDone):
            stream = self._streams.get(ref)
            if stream is None:
                for candidate in self._streams.values():
                    if candidate.conversation_id == message.conversation_id:
                        stream = candidate
                        break
            if stream is not None:
                stream._feed(message)
            return
        if ref is not None:
            future = self._pending.get(ref)
            if future is not None and not future.done():
                future.set_result(message)
                return
            stream = self._streams.get(ref)
            if stream is not None and isinstance(message, ErrorMessage):
                stream._feed(message)
                return
        if isinstance(message, ErrorMessage):
            self.errors.append(message)
            if self.on_error is not None:
                self.on_error(message)

    async def _read_loop(self) -> None:
        try:
            # A closed connection ends the loop quietly; everyone waiting is told below.
            with contextlib.suppress(ConnectionClosed):
                async for raw in self.connection:
                    try:
                        message = parse_server_message(raw)
                    except ProtocolError as exc:
                        self.errors.append(exc.to_error())
                        continue
                    self._on_message(message)
        finally:
            closed = ConnectionError("connection closed")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(closed)
            for stream in self._streams.values():
                stream._feed(None)
            if self._pushed.full():
                self._pushed.get_nowait()
            self._pushed.put_nowait(None)
