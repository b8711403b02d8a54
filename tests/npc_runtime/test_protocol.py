"""Protocol v1 and v2: every documented example parses, every kind of bad frame gets its code and
ref, and the batch messages exist only in version 2."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from npc_runtime import protocol
from npc_runtime.policies import NpcState
from npc_runtime.protocol import (
    CLIENT_TYPES,
    ERROR_CODES,
    MAX_BATCH,
    MAX_FRAME_BYTES,
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
    StateBatch,
    StateUpdate,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    encode,
    parse_client_message,
    parse_server_message,
    state_from_wire,
    state_to_wire,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _doc_examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)
    return [json.loads(block) for block in blocks]


def test_docs_have_an_example_of_every_message_type() -> None:
    types = {example["type"] for example in _doc_examples()}
    server = {
        "welcome",
        "npc.subscribed",
        "npc.unsubscribed",
        "intent",
        "intents",
        "dialogue.token",
        "dialogue.done",
        "pong",
        "error",
    }
    assert types == set(CLIENT_TYPES) | server


def test_every_documented_example_parses_and_round_trips() -> None:
    for example in _doc_examples():
        raw = json.dumps(example)
        if example["type"] in CLIENT_TYPES:
            message: Any = parse_client_message(raw)
            again: Any = parse_client_message(encode(message))
        else:
            message = parse_server_message(raw)
            again = parse_server_message(encode(message))
        assert again == message
        assert message.type == example["type"]
        assert message.ref == example.get("ref")


def test_documented_error_codes_are_the_known_codes() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOC.read_text(), flags=re.M))
    assert documented == set(ERROR_CODES)


CLIENT_MESSAGES: list[Any] = [
    Hello(protocol=1, ref="a"),
    Hello(protocol=1, api_key="k", ref=5),
    Subscribe(npc_id="n", ref="b"),
    Unsubscribe(npc_id="n"),
    StateUpdate(npc_id="n", state={"pos": [1.0, 2.0], "fear": 0.5}, world={"a": [1]}, ref=9),
    IntentGet(npc_id="n", ref="r"),
    StateBatch(states={"a": {"pos": [1.0, 2.0]}, "b": {"pos": [0, 0], "tick": 3}}, ref="b1"),
    StateBatch(states={"a": {"pos": [1.0, 2.0]}}, world={"alarm": True}),
    IntentsGet(npc_ids=["a", "b"], ref=7),
    DialogueSay(npc_id="n", text="hi there", conversation_id="c1", ref="s"),
    DialogueCancel(conversation_id="c1"),
    DialogueCancel(ref="s"),
    Ping(ref=1),
    Ping(ref=2**64 - 1),  # integer refs are exact across 64 bits, as orjson encodes them
    Ping(ref=-(2**63)),
]


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=lambda m: m.type)
def test_client_messages_round_trip(message: Any) -> None:
    assert parse_client_message(encode(message)) == message
    assert parse_client_message(encode(message).encode()) == message


SERVER_MESSAGES: list[Any] = [
    Welcome(protocol=1, server_time=1.5, rate_per_s=60, ref="a"),
    Subscribed(npc_id="n", policy="guard", allowed_intents=["idle"], ref="b"),
    Unsubscribed(npc_id="n", ref=None),
    IntentMessage(
        npc_id="n",
        intent="investigate",
        args={"x": 1, "y": 2},
        source="cache",
        generated_at=3.25,
        ttl_ms=2000,
    ),
    IntentsMessage(
        intents=[
            IntentMessage(
                npc_id=npc, intent="idle", args={}, source="policy", generated_at=1.0, ttl_ms=500
            )
            for npc in ("a", "b")
        ],
        ref=None,
    ),
    DialogueToken(conversation_id="c", text="He", ref="s"),
    DialogueDone(conversation_id="c", text="Hello", source="template", cancelled=True, ref="s"),
    Pong(server_time=2.0, ref=4),
    ErrorMessage(code="bad_field", message="m", ref="x", field="npc_id"),
]


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=lambda m: m.type)
def test_server_messages_round_trip(message: Any) -> None:
    assert parse_server_message(encode(message)) == message


def test_answers_always_carry_ref_and_client_frames_omit_a_missing_one() -> None:
    assert json.loads(encode(Pong(server_time=1.0)))["ref"] is None
    assert "ref" not in json.loads(encode(Ping()))


def _update(state: str) -> str:
    return '{"type": "state.update", "npc_id": "n", "state": ' + state + ', "ref": "s"}'


BAD_FRAMES: list[tuple[str | bytes, str, Any, str | None]] = [
    ("{not json", "invalid_json", None, None),
    (b"\xff\xfe", "invalid_json", None, None),
    ("[1, 2]", "bad_frame", None, None),
    ('"ping"', "bad_frame", None, None),
    ('{"ref": "r1"}', "bad_frame", "r1", "type"),
    ('{"type": 5, "ref": 7}', "bad_frame", 7, "type"),
    ('{"type": "npc.explode", "ref": "r2"}', "unknown_type", "r2", "type"),
    ('{"type": "npc.subscribe", "ref": "r3"}', "missing_field", "r3", "npc_id"),
    ('{"type": "npc.subscribe", "npc_id": 12, "ref": "r4"}', "bad_field", "r4", "npc_id"),
    ('{"type": "npc.subscribe", "npc_id": "", "ref": "r4"}', "bad_field", "r4", "npc_id"),
    ('{"type": "npc.subscribe", "npc_id": "a", "npcid": "a", "ref": 4}', "bad_field", 4, "npcid"),
    ('{"type": "hello", "ref": "h"}', "missing_field", "h", "protocol"),
    ('{"type": "hello", "protocol": "1", "ref": "h"}', "bad_field", "h", "protocol"),
    ('{"type": "hello", "protocol": true, "ref": "h"}', "bad_field", "h", "protocol"),
    ('{"type": "state.update", "npc_id": "n", "ref": "s"}', "missing_field", "s", "state"),
    (
        '{"type": "state.update", "npc_id": "n", "state": {}, "ref": "s"}',
        "missing_field",
        "s",
        "state.pos",
    ),
    ('{"type": "state.update", "npc_id": "n", "state": [], "ref": "s"}', "bad_field", "s", "state"),
    (
        '{"type": "state.update", "npc_id": "n", "state": {"pos": [1]}, "ref": "s"}',
        "bad_field",
        "s",
        "state.pos",
    ),
    (
        '{"type": "state.update", "npc_id": "n", "state": {"pos": [1, "a"]}, "ref": "s"}',
        "bad_field",
        "s",
        "state.pos",
    ),
    (
        '{"type": "state.update", "npc_id": "n", "state": {"pos": [1, 2], "fear": 2}, "ref": "s"}',
        "bad_field",
        "s",
        "state.fear",
    ),
    (
        '{"type": "state.update", "npc_id": "n", "state": {"pos": [1, 2], "hp": 2}, "ref": "s"}',
        "bad_field",
        "s",
        "state.hp",
    ),
    (
        _update('{"pos": [1, 2], "player": {"visible": 1}}'),
        "bad_field",
        "s",
        "state.player.visible",
    ),
    (
        _update('{"pos": [1, 2], "route": [[0, 0], [1]]}'),
        "bad_field",
        "s",
        "state.route",
    ),
    (
        '{"type": "state.update", "npc_id": "n", "state": {"pos": [1, 2], "tick": -1}, "ref": "s"}',
        "bad_field",
        "s",
        "state.tick",
    ),
    (
        '{"type": "state.update", "npc_id": "n", "state": {"pos": [1, 2]}, "world": 3, "ref": "s"}',
        "bad_field",
        "s",
        "world",
    ),
    (
        '{"type": "state.update", "npc_id": "n", "state": {"pos": [NaN, 2]}, "ref": "s"}',
        "bad_field",
        "s",
        "state.pos",
    ),
    (_update('{"pos": [1, 2], "facing": 1' + "0" * 400 + "}"), "bad_field", "s", "state.facing"),
    (_update('{"pos": [1' + "0" * 400 + ", 2]}"), "bad_field", "s", "state.pos"),
    ('{"type": "dialogue.say", "npc_id": "n", "ref": "d"}', "missing_field", "d", "text"),
    (
        '{"type": "dialogue.say", "npc_id": "n", "text": "   ", "ref": "d"}',
        "bad_field",
        "d",
        "text",
    ),
    (
        '{"type": "dialogue.say", "npc_id": "n", "text": "hi", "conversation_id": 3, "ref": "d"}',
        "bad_field",
        "d",
        "conversation_id",
    ),
    ('{"type": "dialogue.cancel"}', "missing_field", None, "conversation_id"),
    ('{"type": "ping", "ref": {"a": 1}}', "bad_field", None, "ref"),
    ('{"type": "ping", "ref": "r", "extra": 1}', "bad_field", "r", "extra"),
    ('{"type": "intent.get", "ref": 42}', "missing_field", 42, "npc_id"),
    ('{"type": "state.batch", "ref": "b"}', "missing_field", "b", "states"),
    ('{"type": "state.batch", "states": {}, "ref": "b"}', "bad_field", "b", "states"),
    ('{"type": "state.batch", "states": [], "ref": "b"}', "bad_field", "b", "states"),
    ('{"type": "state.batch", "states": {"": {"pos": [0, 0]}}}', "bad_field", None, "states"),
    (
        '{"type": "state.batch", "states": {"a": {"pos": [0, 0]}, "b": {}}, "ref": "b"}',
        "missing_field",
        "b",
        "states.b.pos",
    ),
    (
        '{"type": "state.batch", "states": {"a": {"pos": [0, 0], "fear": 9}}, "ref": "b"}',
        "bad_field",
        "b",
        "states.a.fear",
    ),
    ('{"type": "state.batch", "states": {"a": 3}, "ref": "b"}', "bad_field", "b", "states.a"),
    (
        '{"type": "state.batch", "states": {"a": {"pos": [0, 0]}}, "world": [], "ref": "b"}',
        "bad_field",
        "b",
        "world",
    ),
    (
        '{"type": "state.batch", "states": {"a": {"pos": [0, 0]}}, "npc_id": "a", "ref": "b"}',
        "bad_field",
        "b",
        "npc_id",
    ),
    # integers past 64 bits, anywhere: bad_field naming the field, ref kept when it is readable
    ('{"type": "intent.get", "npc_id": "n", "ref": 1' + "0" * 30 + "}", "bad_field", None, "ref"),
    (
        '{"type": "intents.get", "npc_ids": ["a"], "ref": 2' + "0" * 400 + "}",
        "bad_field",
        None,
        "ref",
    ),
    ('{"type": "ping", "ref": 18446744073709551616}', "bad_field", None, "ref"),
    ('{"type": "ping", "ref": -9223372036854775809}', "bad_field", None, "ref"),
    ('{"type": "hello", "protocol": 1' + "0" * 25 + ', "ref": "h"}', "bad_field", "h", "protocol"),
    (
        '{"type": "state.batch", "states": {"a": {"pos": [0, 0], "tick": 18446744073709551616}},'
        ' "ref": "b"}',
        "bad_field",
        "b",
        "states.a.tick",
    ),
    (
        _update('{"pos": [1, 2], "route": [[0, 0], [0, 1' + "0" * 20 + "]]}"),
        "bad_field",
        "s",
        "state.route",
    ),
    (
        '{"type": "ping", "ref": "r", "pad": ' + "[" * 65 + "]" * 65 + "}",
        "invalid_json",
        None,
        None,
    ),
    ('{"type": "intents.get", "ref": "g"}', "missing_field", "g", "npc_ids"),
    ('{"type": "intents.get", "npc_ids": [], "ref": "g"}', "bad_field", "g", "npc_ids"),
    ('{"type": "intents.get", "npc_ids": "a", "ref": "g"}', "bad_field", "g", "npc_ids"),
    ('{"type": "intents.get", "npc_ids": ["a", 2], "ref": "g"}', "bad_field", "g", "npc_ids"),
]


@pytest.mark.parametrize(("raw", "code", "ref", "field"), BAD_FRAMES)
def test_bad_frames_are_rejected_with_their_code_ref_and_field(
    raw: str | bytes, code: str, ref: Any, field: str | None
) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw)
    error = caught.value
    assert (error.code, error.ref, error.field) == (code, ref, field)
    assert error.code in ERROR_CODES
    frame = json.loads(encode(error.to_error()))
    assert frame["type"] == "error" and frame["code"] == code and frame["ref"] == ref


def _state_variants() -> list[Any]:
    """Well-formed states and, from each, one field at a time made wrong in every way a JSON
    frame (or the standard parser's NaN and Infinity) can make it."""
    good = [
        state_to_wire(NpcState(npc_id="n")),
        state_to_wire(NpcState(npc_id="n", x=3, player_visible=True, route=[(1.0, 2.0)])),
        {"pos": [1, 2]},
        {"pos": [1.5, -2], "player": {"visible": True}},
        {"pos": [0, 0], "player": {"pos": [3, 4]}, "target": [1, 1], "tick": 0},
    ]
    wrong: list[Any] = [
        None, True, False, "1", [], {}, 0, 1, 0.5, 2, -1, -0.0, 1.5e308, 10**400,
        float("nan"), float("inf"), -float("inf"), [1.0], [1.0, 2.0], [1.0, "a"],
        [True, 1.0], [1.0, float("nan")], [1.0, float("inf")], [1.0, 2.0, 3.0], [[0, 0]],
        {"pos": [0, 0]}, {"visible": 1}, {"visible": True, "x": 1}, {"pos": [1]},
    ]  # fmt: skip
    fields = ["pos", "facing", "health", "fear", "noise", "tick", "player", "route", "target"]
    variants: list[Any] = [*good, None, [], "state", {"pos": [0, 0], "hp": 1}]
    for base in good:
        for name in fields:
            variants.append({k: v for k, v in base.items() if k != name})
            variants.extend({**base, name: value} for value in wrong)
        variants.extend({**base, "player": {**base.get("player", {}), "pos": v}} for v in wrong)
        variants.extend({**base, "player": {"visible": v}} for v in wrong)
    return variants


def test_the_one_pass_state_check_never_accepts_what_the_field_by_field_check_refuses() -> None:
    variants = _state_variants()
    taken = 0
    for state in variants:
        if protocol._state_is_plain(state):
            taken += 1
            assert protocol._state_checked(state, None) is state, state
    # Game states as the client library sends them take the fast path; the rest are checked
    # field by field (and named when wrong, as the bad-frame tests above check).
    assert protocol._state_is_plain(state_to_wire(NpcState(npc_id="n", player_visible=True)))
    assert 100 < taken < len(variants) - 500


def test_intent_items_with_a_wrong_field_are_refused_by_the_client() -> None:
    item = {
        "npc_id": "n",
        "intent": "idle",
        "args": {},
        "source": "model",
        "generated_at": 1.5,
        "ttl_ms": 2000,
    }
    frame = {"type": "intents", "ref": "r", "intents": [item]}
    assert parse_server_message(json.dumps(frame)) == IntentsMessage(
        intents=[IntentMessage("n", "idle", {}, "model", 1.5, 2000, "r")], ref="r"
    )
    for name, value in [
        ("npc_id", 3), ("intent", None), ("source", ["model"]), ("args", [1]),
        ("generated_at", "now"), ("generated_at", True), ("ttl_ms", False), ("ttl_ms", None),
    ]:  # fmt: skip
        bad = {**frame, "intents": [{**item, name: value}]}
        with pytest.raises(ProtocolError) as caught:
            parse_server_message(json.dumps(bad))
        assert caught.value.code == "bad_field", (name, value)


def test_batches_are_limited_in_size() -> None:
    states = {f"n{i}": {"pos": [0, 0]} for i in range(MAX_BATCH + 1)}
    raw = json.dumps({"type": "state.batch", "states": states, "ref": "b"})
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw, max_bytes=1 << 20)
    assert (caught.value.code, caught.value.field) == ("bad_field", "states")
    ids = json.dumps({"type": "intents.get", "npc_ids": list(states), "ref": "g"})
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(ids)
    assert (caught.value.code, caught.value.field) == ("bad_field", "npc_ids")
    del states["n0"]
    batch = parse_client_message(json.dumps({"type": "state.batch", "states": states}))
    assert isinstance(batch, StateBatch) and len(batch.states) == MAX_BATCH


def test_batch_messages_need_protocol_2() -> None:
    for raw in (
        '{"type": "state.batch", "states": {"a": {"pos": [0, 0]}}, "ref": "b"}',
        '{"type": "intents.get", "npc_ids": ["a"], "ref": "b"}',
    ):
        with pytest.raises(ProtocolError) as caught:
            parse_client_message(raw, version=1)
        assert (caught.value.code, caught.value.ref, caught.value.field) == (
            "unknown_type",
            "b",
            "type",
        )
        assert parse_client_message(raw, version=2).ref == "b"
    # Everything of version 1 is still version 2.
    for message in CLIENT_MESSAGES:
        if message.type not in ("state.batch", "intents.get"):
            assert parse_client_message(encode(message), version=1) == message


def test_items_of_an_intents_answer_carry_its_ref() -> None:
    raw = json.dumps(
        {
            "type": "intents",
            "intents": [
                {
                    "npc_id": "a",
                    "intent": "hide",
                    "args": {},
                    "source": "cache",
                    "generated_at": 1,
                    "ttl_ms": 9,
                }
            ],
            "ref": "g1",
        }
    )
    answer = parse_server_message(raw)
    assert isinstance(answer, IntentsMessage)
    assert [(item.npc_id, item.ref) for item in answer.intents] == [("a", "g1")]
    with pytest.raises(ProtocolError):
        parse_server_message('{"type": "intents", "intents": [1], "ref": null}')


def test_frames_over_the_size_limit_are_too_large() -> None:
    big = json.dumps({"type": "dialogue.say", "npc_id": "n", "text": "x" * MAX_FRAME_BYTES})
    for raw in (big, big.encode()):
        with pytest.raises(ProtocolError) as caught:
            parse_client_message(raw)
        assert caught.value.code == "too_large"
    # multi-byte characters count as bytes, not characters
    wide = json.dumps({"type": "ping", "ref": "r"})[:-1] + ', "pad": "' + "é" * 9000 + '"}'
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(wide)
    assert caught.value.code == "too_large"
    with pytest.raises(ProtocolError) as caught:
        parse_client_message('{"type": "ping"}', max_bytes=5)
    assert caught.value.code == "too_large"


def test_deeply_nested_json_is_invalid_not_a_crash() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message("[" * 5000 + "]" * 5000, max_bytes=20_000)
    assert caught.value.code in ("invalid_json", "bad_frame")


def test_npc_state_travels_through_state_update() -> None:
    state = NpcState(
        npc_id="n",
        x=1.0,
        y=2.0,
        facing=0.5,
        health=0.8,
        fear=0.3,
        player_x=4.0,
        player_y=5.0,
        player_visible=True,
        noise=0.2,
        route=[(0.0, 0.0), (3.0, 4.0)],
        target=(9.0, 9.0),
        tick=77,
    )
    state.memory["wp"] = 1
    frame = encode(StateUpdate(npc_id="n", state=state_to_wire(state), ref="s"))
    parsed = parse_client_message(frame)
    assert isinstance(parsed, StateUpdate)
    back = state_from_wire("n", parsed.state)
    state.memory.clear()
    assert back == state
    kept = NpcState(npc_id="n", memory={"wp": 3})
    assert state_from_wire("n", {"pos": [7, 8]}, into=kept).memory == {"wp": 3}
    assert (kept.x, kept.y) == (7.0, 8.0)


def test_parse_cost_per_message_is_measured() -> None:
    frames = [
        encode(
            StateUpdate(
                npc_id="night-watchman",
                state={
                    "pos": [12.5, -3.0],
                    "facing": 1.5,
                    "health": 0.9,
                    "fear": 0.1,
                    "player": {"pos": [20.0, -1.0], "visible": True},
                    "noise": 0.3,
                    "tick": 4512,
                },
                ref=17,
            )
        ),
        encode(IntentGet(npc_id="night-watchman", ref=18)),
        encode(Ping(ref=19)),
    ]
    results = {}
    for frame in frames:
        n = 20_000
        start = time.perf_counter()
        for _ in range(n):
            parse_client_message(frame)
        results[json.loads(frame)["type"]] = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(20_000):
        json.loads(frames[0])
    bare = (time.perf_counter() - start) / 20_000 * 1e6
    print()
    for kind, cost in results.items():
        print(f"protocol parse {kind}: {cost:.2f} us/message")
    print(f"(json.loads alone of the state.update: {bare:.2f} us)")
    assert set(results) == {"state.update", "intent.get", "ping"}
