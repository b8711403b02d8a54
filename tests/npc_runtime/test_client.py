"""GameClient against a small in-test websockets server that speaks protocol v2."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from npc_runtime.client import GameClient, ServerError, _dumps, _state_item
from npc_runtime.policies import NpcState, choose_intent
from npc_runtime.protocol import (
    MAX_BATCH,
    MAX_FRAME_BYTES,
    DialogueCancel,
    DialogueDone,
    DialogueSay,
    DialogueToken,
    Hello,
    IntentGet,
    IntentMessage,
    IntentsGet,
    IntentsMessage,
    Ping,
    Pong,
    ProtocolError,
    StateBatch,
    StateUpdate,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    encode,
    parse_client_message,
    state_to_wire,
)

NPCS = {"watchman": ("guard", ["idle", "patrol", "investigate", "attack"])}
REPLY = ["Stay ", "where ", "you ", "are."]


class FakeWorld:
    """A tiny protocol-v2 server: real sockets, real frames, scripted intents and replies."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.headers: dict[str, str] = {}
        self.cancelled = asyncio.Event()
        self.connection: ServerConnection | None = None
        self.max_frame_bytes = MAX_FRAME_BYTES
        self.frame_sizes: list[int] = []

    async def push(self, message: IntentMessage) -> None:
        assert self.connection is not None
        await self.connection.send(encode(message))

    async def handler(self, ws: ServerConnection) -> None:
        self.connection = ws
        assert ws.request is not None
        self.headers = dict(ws.request.headers)
        async for raw in ws:
            self.frame_sizes.append(len(raw))
            try:
                msg = parse_client_message(raw, self.max_frame_bytes)
            except ProtocolError as exc:
                await ws.send(encode(exc.to_error()))
                continue
            self.seen.append(msg)
            await self.answer(ws, msg)

    async def answer(self, ws: ServerConnection, msg: Any) -> None:
        if isinstance(msg, Hello):
            await ws.send(
                encode(
                    Welcome(
                        protocol=msg.protocol,
                        server_time=time.time(),
                        max_frame_bytes=self.max_frame_bytes,
                        ref=msg.ref,
                    )
                )
            )
        elif isinstance(msg, Subscribe | Unsubscribe | IntentGet) and msg.npc_id not in NPCS:
            error = ProtocolError("unknown_npc", f"no NPC {msg.npc_id!r}", msg.ref, "npc_id")
            await ws.send(encode(error.to_error()))
        elif isinstance(msg, Subscribe):
            policy, allowed = NPCS[msg.npc_id]
            await ws.send(
                encode(
                    Subscribed(
                        npc_id=msg.npc_id, policy=policy, allowed_intents=allowed, ref=msg.ref
                    )
                )
            )
        elif isinstance(msg, Unsubscribe):
            await ws.send(encode(Unsubscribed(npc_id=msg.npc_id, ref=msg.ref)))
        elif isinstance(msg, IntentGet):
            await ws.send(
                encode(
                    IntentMessage(
                        npc_id=msg.npc_id,
                        intent="investigate",
                        args={"x": 9.0, "y": 9.0},
                        source="cache",
                        generated_at=time.time(),
                        ttl_ms=2000,
                        ref=msg.ref,
                    )
                )
            )
        elif isinstance(msg, IntentsGet):
            intents = [
                IntentMessage(
                    npc_id=npc_id,
                    intent="hide",
                    args={},
                    source="model",
                    generated_at=time.time(),
                    ttl_ms=1000,
                )
                for npc_id in msg.npc_ids
            ]
            await ws.send(encode(IntentsMessage(intents=intents, ref=msg.ref)))
        elif isinstance(msg, Ping):
            await ws.send(encode(Pong(server_time=time.time(), ref=msg.ref)))
        elif isinstance(msg, DialogueSay):
            asyncio.get_running_loop().create_task(self.stream(ws, msg))
        elif isinstance(msg, DialogueCancel):
            self.cancelled.set()

    async def stream(self, ws: ServerConnection, msg: DialogueSay) -> None:
        conv = msg.conversation_id or "conv-1"
        said = ""
        for token in REPLY:
            if self.cancelled.is_set():
                break
            said += token
            await ws.send(encode(DialogueToken(conversation_id=conv, text=token, ref=msg.ref)))
            await asyncio.sleep(0.01 if msg.text != "slow" else 0.2)
        done = DialogueDone(
            conversation_id=conv,
            text=said,
            source="model",
            cancelled=self.cancelled.is_set(),
            ref=msg.ref,
        )
        await ws.send(encode(done))


@pytest.fixture
async def world() -> AsyncIterator[tuple[FakeWorld, str]]:
    fake = FakeWorld()
    server: Server = await serve(fake.handler, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    async with server:
        yield fake, f"ws://127.0.0.1:{port}/ws/game/"


async def _wait_for(predicate: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_connect_sends_the_key_and_hello(world: tuple[FakeWorld, str]) -> None:
    fake, url = world
    client = await GameClient.connect(url, "bb_secret")
    try:
        assert fake.headers["authorization"] == "Bearer bb_secret"
        assert client.welcome is not None and client.welcome.protocol == 2
        assert isinstance(fake.seen[0], Hello) and fake.seen[0].protocol == 2
        pong = await client.ping()
        assert pong.ref is not None
    finally:
        await client.close()


async def test_pushed_intent_lands_in_cache_and_frame_uses_it(world: tuple[FakeWorld, str]) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k") as client:
        subscribed = await client.subscribe("watchman")
        assert subscribed.policy == "guard"
        assert client.npcs["watchman"].allowed == ("idle", "patrol", "investigate", "attack")
        pushes: list[IntentMessage] = []
        client.on_intent = pushes.append
        await fake.push(
            IntentMessage(
                npc_id="watchman",
                intent="investigate",
                args={"x": 10.0, "y": 0.0},
                source="model",
                generated_at=time.time(),
                ttl_ms=2000,
            )
        )
        await _wait_for(lambda: "watchman" in client.intent_cache)
        assert pushes[0].source == "model" and pushes[0].ref is None
        state = NpcState(npc_id="watchman", x=0.0, y=0.0)
        action = client.frame("watchman", state, 1 / 60)
        assert action.intent == "investigate"
        assert action.dest == (10.0, 0.0) and action.move_x == pytest.approx(1.0)
        assert client.frame("watchman", state, 1 / 60) is action  # reused, no new Action


async def test_frame_falls_back_to_choose_intent_without_or_after_expired_intent(
    world: tuple[FakeWorld, str],
) -> None:
    fake, url = world
    now = [100.0]
    client = await GameClient.connect(url, "k", clock=lambda: now[0])
    try:
        await client.subscribe("watchman")
        state = NpcState(npc_id="watchman", route=[(5.0, 0.0), (5.0, 5.0)])
        expected = choose_intent("guard", state, ("idle", "patrol", "investigate", "attack"))
        assert expected.name == "patrol"
        assert client.frame("watchman", state, 1 / 60).intent == "patrol"
        await fake.push(
            IntentMessage(
                npc_id="watchman",
                intent="investigate",
                args={"x": -3.0, "y": 0.0},
                source="model",
                generated_at=time.time(),
                ttl_ms=500,
            )
        )
        await _wait_for(lambda: "watchman" in client.intent_cache)
        assert client.frame("watchman", state, 1 / 60).intent == "investigate"
        now[0] += 0.6  # past ttl_ms
        assert client.cached_intent("watchman") is None
        assert client.frame("watchman", state, 1 / 60).intent == "patrol"
        # an unsubscribed NPC still gets a deterministic action
        assert client.frame("stranger", NpcState(npc_id="stranger"), 1 / 60).intent == "idle"
    finally:
        await client.close()


async def test_get_intent_is_correlated_by_ref_and_refreshes_cache(
    world: tuple[FakeWorld, str],
) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k") as client:
        answers = await asyncio.gather(*(client.get_intent("watchman") for _ in range(5)))
        refs = [a.ref for a in answers]
        asked = [m.ref for m in fake.seen if isinstance(m, IntentGet)]
        assert sorted(refs, key=str) == sorted(asked, key=str) and len(set(refs)) == 5
        assert client.intent_cache["watchman"].source == "cache"
        with pytest.raises(ServerError) as caught:
            await client.get_intent("nobody")
        assert caught.value.code == "unknown_npc"
        assert caught.value.error.field == "npc_id"


async def test_get_intent_times_out_when_nobody_answers(world: tuple[FakeWorld, str]) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k") as client:
        with pytest.raises(TimeoutError):
            # a ping-shaped request the server never answers: no reply for this ref
            await client._request(DialogueCancel(conversation_id="x", ref="nope"), timeout=0.1)
        assert "nope" not in client._pending


async def test_say_streams_tokens_then_done(world: tuple[FakeWorld, str]) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k") as client:
        stream = await client.say("watchman", "Who goes there?")
        tokens = [token async for token in stream]
        assert tokens == REPLY
        assert stream.done is not None
        assert stream.done.text == "".join(REPLY) and stream.done.source == "model"
        assert stream.conversation_id == "conv-1"


async def test_cancel_stops_the_stream(world: tuple[FakeWorld, str]) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k") as client:
        stream = await client.say("watchman", "slow")
        tokens = []
        async for token in stream:
            tokens.append(token)
            if len(tokens) == 1:
                await stream.cancel()
        assert stream.done is not None and stream.done.cancelled
        assert len(tokens) < len(REPLY)
        cancel = next(m for m in fake.seen if isinstance(m, DialogueCancel))
        assert cancel.conversation_id == "conv-1" and cancel.ref == stream.ref


async def test_state_updates_reach_the_server_and_rejections_land_in_errors(
    world: tuple[FakeWorld, str],
) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k") as client:
        state = NpcState(npc_id="watchman", x=1.0, y=2.0, fear=0.4, tick=3)
        await client.send_state("watchman", state, world={"night": True})
        await _wait_for(lambda: any(isinstance(m, StateUpdate) for m in fake.seen))
        update = next(m for m in fake.seen if isinstance(m, StateUpdate))
        assert update.state["pos"] == [1.0, 2.0] and update.world == {"night": True}
        assert client.connection is not None
        await client.connection.send(json.dumps({"type": "npc.explode", "ref": "zz"}))
        await _wait_for(lambda: len(client.errors) == 1)
        assert client.errors[0].code == "unknown_type" and client.errors[0].ref == "zz"


async def test_many_states_go_in_batches_that_fit_the_servers_frame_limit(
    world: tuple[FakeWorld, str],
) -> None:
    fake, url = world
    fake.max_frame_bytes = 4096  # announced in welcome; the client must split below it
    async with await GameClient.connect(url, "k") as client:
        assert client.welcome is not None and client.welcome.protocol == 2
        route = [(float(i), float(-i)) for i in range(10)]
        states = {
            f"npc-{i:03d}": NpcState(npc_id=f"npc-{i:03d}", x=i * 0.1, fear=0.5, route=route)
            for i in range(300)
        }
        await client.send_states(states, world={"alarm": True})
        await _wait_for(
            lambda: sum(len(m.states) for m in fake.seen if isinstance(m, StateBatch)) == 300
        )
    batches = [m for m in fake.seen if isinstance(m, StateBatch)]
    assert len(batches) > 1 and not client.errors
    assert all(size <= 4096 for size in fake.frame_sizes)
    assert all(batch.world == {"alarm": True} for batch in batches)
    received = {npc: state for batch in batches for npc, state in batch.states.items()}
    assert list(received) == list(states)  # every NPC once, in order
    assert received["npc-007"]["pos"] == [0.7000000000000001, 0.0]
    assert received["npc-299"]["route"][9] == [9.0, -9.0]


async def test_small_batches_go_in_one_frame_and_never_past_the_batch_limit(
    world: tuple[FakeWorld, str],
) -> None:
    fake, url = world
    fake.max_frame_bytes = 1 << 20  # so that only the batch limit splits
    async with await GameClient.connect(url, "k") as client:
        await client.send_states({"a": NpcState(npc_id="a"), "b": NpcState(npc_id="b")})
        many = {f"n{i}": NpcState(npc_id=f"n{i}") for i in range(MAX_BATCH + 5)}
        await client.send_states(many)
        await _wait_for(lambda: len([m for m in fake.seen if isinstance(m, StateBatch)]) == 3)
    sizes = [len(m.states) for m in fake.seen if isinstance(m, StateBatch)]
    assert sizes == [2, MAX_BATCH, 5]


async def test_get_intents_asks_in_batches_and_fills_the_cache(
    world: tuple[FakeWorld, str],
) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k") as client:
        pushed: list[IntentMessage] = []
        client.on_intent = pushed.append
        ids = [f"n{i}" for i in range(MAX_BATCH + 1)]
        answers = await client.get_intents(ids)
        assert [a.npc_id for a in answers] == ids
        asks = [m for m in fake.seen if isinstance(m, IntentsGet)]
        assert [len(a.npc_ids) for a in asks] == [MAX_BATCH, 1]
        cached = client.cached_intent("n3")
        assert cached is not None and cached.intent.name == "hide" and cached.source == "model"
        # Answers carry the request's ref, so callbacks can tell them from pushes.
        assert len(pushed) == len(ids) and all(m.ref is not None for m in pushed)


async def test_on_a_protocol_1_connection_batches_go_one_npc_at_a_time(
    world: tuple[FakeWorld, str],
) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k", hello=False) as client:
        await client.hello(protocol=1)
        await client.send_states({"a": NpcState(npc_id="a"), "b": NpcState(npc_id="b")})
        answers = await client.get_intents(["watchman"])
        await _wait_for(lambda: len([m for m in fake.seen if isinstance(m, StateUpdate)]) == 2)
    assert not [m for m in fake.seen if isinstance(m, StateBatch | IntentsGet)]
    assert [a.npc_id for a in answers] == ["watchman"]


async def test_unsubscribe_forgets_the_npc(world: tuple[FakeWorld, str]) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k") as client:
        await client.subscribe("watchman")
        await client.get_intent("watchman")
        await client.unsubscribe("watchman")
        assert "watchman" not in client.npcs and "watchman" not in client.intent_cache
        with pytest.raises(ServerError):
            await client.subscribe("ghost")


async def test_pending_requests_fail_when_the_server_goes_away(
    world: tuple[FakeWorld, str],
) -> None:
    fake, url = world
    client = await GameClient.connect(url, "k")
    assert fake.connection is not None
    await fake.connection.close()
    with pytest.raises(ConnectionError):
        await client.get_intent("watchman")
    await client.close()


async def test_frame_cost_is_measured(world: tuple[FakeWorld, str]) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k") as client:
        await client.subscribe("watchman")
        await client.get_intent("watchman")
        state = NpcState(npc_id="watchman", route=[(0.0, 0.0), (8.0, 0.0)])
        n = 20_000
        start = time.perf_counter()
        for tick in range(n):
            state.tick = tick
            client.frame("watchman", state, 1 / 60)
        cached = (time.perf_counter() - start) / n
        client.intent_cache.clear()
        start = time.perf_counter()
        for tick in range(n):
            state.tick = tick
            client.frame("watchman", state, 1 / 60)
        fallback = (time.perf_counter() - start) / n
        print(f"\nGameClient.frame with cached intent: {cached * 1e6:.2f} us/frame")
        print(f"GameClient.frame with choose_intent fallback: {fallback * 1e6:.2f} us/frame")
        assert client.frame("watchman", state, 1 / 60).intent == "patrol"


@pytest.mark.parametrize("npc_id", ["watchman", "wächter-7", 'the "one"'])
def test_a_batch_item_is_what_the_standard_encoder_writes(npc_id: str) -> None:
    states = [
        NpcState(npc_id=npc_id),
        NpcState(npc_id=npc_id, x=0.1, fear=1 / 3, route=[(1.0, -2.5)], target=(3.0, 4.0), tick=7),
    ]
    for state in states:
        item = _state_item(npc_id, state)
        assert item.isascii()  # send_states counts a frame's size in characters
        assert item == f"{_dumps(npc_id)}:{_dumps(state_to_wire(state))}"


async def test_a_state_json_cannot_carry_is_refused_before_it_is_sent(
    world: tuple[FakeWorld, str],
) -> None:
    fake, url = world
    async with await GameClient.connect(url, "k") as client:
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match="not JSON compliant"):
                await client.send_states({"a": NpcState(npc_id="a", fear=bad)})
    assert not any(isinstance(m, StateBatch) for m in fake.seen)
