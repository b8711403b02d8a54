"""The game-client websocket protocol, versions 1 and 2 (see ``docs/protocol.md``).

One module shared by the server consumer and the Python client: message dataclasses, a fast
hand-written validator for client frames (:func:`parse_client_message`), a tolerant one for server
frames (:func:`parse_server_message`) and :func:`encode`. No Django, no pydantic: parsing runs for
every frame of every client.

Client frames are strict: unknown ``type`` or unknown fields are errors. Server frames are read
tolerantly (unknown fields ignored) so a server may add informational fields within a version.

Version 2 is version 1 plus batches: ``state.batch`` (many NPCs' states in one frame),
``intents.get`` (many NPCs' intents in one request) and its answer ``intents``. A game sends one
frame per game frame instead of one per NPC, which is what lets one connection drive hundreds
of NPCs at 30 Hz.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from typing import Any

from npc_runtime.bounded_json import MAX_DEPTH, TOO_DEEP, JsonRefused, read_json
from npc_runtime.policies import NpcState

PROTOCOL_VERSION = 2
SUPPORTED_PROTOCOLS: frozenset[int] = frozenset({1, 2})
MAX_FRAME_BYTES = 16 * 1024
MAX_ID_CHARS = 100
MAX_REF_CHARS = 64
MAX_TEXT_CHARS = 2000
MAX_ROUTE_POINTS = 64
MAX_BATCH = 256  # NPCs in one state.batch or intents.get

INTENT_SOURCES: frozenset[str] = frozenset({"model", "cache", "prediction", "policy"})
DIALOGUE_SOURCES: frozenset[str] = frozenset({"model", "cache", "prediction", "template", "safety"})

# Error codes raised by the parser.
INVALID_JSON = "invalid_json"
BAD_FRAME = "bad_frame"
UNKNOWN_TYPE = "unknown_type"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
TOO_LARGE = "too_large"
# Error codes the server uses for valid frames it cannot serve.
UNSUPPORTED_VERSION = "unsupported_version"
UNAUTHORIZED = "unauthorized"
KEY_REVOKED = "key_revoked"  # then the server closes the socket (code KEY_REVOKED_CLOSE_CODE)
UNKNOWN_NPC = "unknown_npc"
NOT_SUBSCRIBED = "not_subscribed"
RATE_LIMITED = "rate_limited"
UNAVAILABLE = "unavailable"
INTERNAL = "internal"

ERROR_CODES: frozenset[str] = frozenset(
    {
        INVALID_JSON,
        BAD_FRAME,
        UNKNOWN_TYPE,
        MISSING_FIELD,
        BAD_FIELD,
        TOO_LARGE,
        UNSUPPORTED_VERSION,
        UNAUTHORIZED,
        KEY_REVOKED,
        UNKNOWN_NPC,
        NOT_SUBSCRIBED,
        RATE_LIMITED,
        UNAVAILABLE,
        INTERNAL,
    }
)

# The websocket close code after ``key_revoked``: 4000 + HTTP 401. Reconnecting with the same
# key is refused (HTTP 403 on the handshake).
KEY_REVOKED_CLOSE_CODE = 4401

Ref = str | int | None


class ProtocolError(Exception):
    """A frame the protocol rejects: ``code`` (stable), ``message``, the frame's ``ref`` (if it
    could be read) and the offending ``field`` (if one)."""

    def __init__(self, code: str, message: str, ref: Ref = None, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.field = field

    def to_error(self) -> ErrorMessage:
        """The ``error`` frame that answers this problem."""
        return ErrorMessage(code=self.code, message=self.message, ref=self.ref, field=self.field)


# ----------------------------------------------------------------------------------------------
# Client → server messages


@dataclass(slots=True)
class Hello:
    """First frame of a session: the protocol version and, optionally, the API key."""

    protocol: int
    api_key: str | None = None
    ref: Ref = None
    type: str = dataclasses.field(default="hello", init=False)


@dataclass(slots=True)
class Subscribe:
    """Ask for pushed intents of one NPC."""

    npc_id: str
    ref: Ref = None
    type: str = dataclasses.field(default="npc.subscribe", init=False)


@dataclass(slots=True)
class Unsubscribe:
    """Stop pushed intents of one NPC."""

    npc_id: str
    ref: Ref = None
    type: str = dataclasses.field(default="npc.unsubscribe", init=False)


@dataclass(slots=True)
class StateUpdate:
    """The latest state of one NPC (see :func:`state_to_wire`) and optional free-form world."""

    npc_id: str
    state: dict[str, Any]
    world: dict[str, Any] | None = None
    ref: Ref = None
    type: str = dataclasses.field(default="state.update", init=False)


@dataclass(slots=True)
class IntentGet:
    """Ask for the current intent of one NPC; answered from the cache at once."""

    npc_id: str
    ref: Ref = None
    type: str = dataclasses.field(default="intent.get", init=False)


@dataclass(slots=True)
class StateBatch:
    """Version 2: the latest state of many NPCs (``npc_id`` → state) and optional world."""

    states: dict[str, dict[str, Any]]
    world: dict[str, Any] | None = None
    ref: Ref = None
    type: str = dataclasses.field(default="state.batch", init=False)


@dataclass(slots=True)
class IntentsGet:
    """Version 2: ask for the current intents of many NPCs; answered with one ``intents``."""

    npc_ids: list[str]
    ref: Ref = None
    type: str = dataclasses.field(default="intents.get", init=False)


@dataclass(slots=True)
class DialogueSay:
    """The player says ``text`` to an NPC; the reply streams as dialogue.token … dialogue.done."""

    npc_id: str
    text: str
    conversation_id: str | None = None
    ref: Ref = None
    type: str = dataclasses.field(default="dialogue.say", init=False)


@dataclass(slots=True)
class DialogueCancel:
    """Stop a streaming reply, named by ``conversation_id`` or by the ``ref`` of its say."""

    conversation_id: str | None = None
    ref: Ref = None
    type: str = dataclasses.field(default="dialogue.cancel", init=False)


@dataclass(slots=True)
class Ping:
    """Liveness and clock check; answered with ``pong``."""

    ref: Ref = None
    type: str = dataclasses.field(default="ping", init=False)


ClientMessage = (
    Hello
    | Subscribe
    | Unsubscribe
    | StateUpdate
    | IntentGet
    | StateBatch
    | IntentsGet
    | DialogueSay
    | DialogueCancel
    | Ping
)


# ----------------------------------------------------------------------------------------------
# Server → client messages


@dataclass(slots=True)
class Welcome:
    """Answer to ``hello``: the agreed protocol and the connection's limits."""

    protocol: int
    server_time: float
    max_frame_bytes: int = MAX_FRAME_BYTES
    rate_per_s: int = 0
    ref: Ref = None
    type: str = dataclasses.field(default="welcome", init=False)


@dataclass(slots=True)
class Subscribed:
    """Answer to ``npc.subscribe``: what the client needs to run the NPC's micro-policy."""

    npc_id: str
    policy: str
    allowed_intents: list[str]
    default_intent: str = "idle"
    ref: Ref = None
    type: str = dataclasses.field(default="npc.subscribed", init=False)


@dataclass(slots=True)
class Unsubscribed:
    """Answer to ``npc.unsubscribe``."""

    npc_id: str
    ref: Ref = None
    type: str = dataclasses.field(default="npc.unsubscribed", init=False)


@dataclass(slots=True)
class IntentMessage:
    """An NPC's intent, pushed or answering ``intent.get``; valid ``ttl_ms`` after receipt."""

    npc_id: str
    intent: str
    args: dict[str, Any]
    source: str
    generated_at: float
    ttl_ms: int
    ref: Ref = None
    type: str = dataclasses.field(default="intent", init=False)


@dataclass(slots=True)
class IntentsMessage:
    """Version 2: the answer to ``intents.get``; each item has an ``intent`` frame's fields
    (``npc_id``, ``intent``, ``args``, ``source``, ``generated_at``, ``ttl_ms``)."""

    intents: list[IntentMessage]
    ref: Ref = None
    type: str = dataclasses.field(default="intents", init=False)


@dataclass(slots=True)
class DialogueToken:
    """One piece of a streaming reply."""

    conversation_id: str
    text: str
    ref: Ref = None
    type: str = dataclasses.field(default="dialogue.token", init=False)


@dataclass(slots=True)
class DialogueDone:
    """End of a reply: the whole ``text``, who produced it, and whether it was cancelled."""

    conversation_id: str
    text: str
    source: str
    cancelled: bool = False
    ref: Ref = None
    type: str = dataclasses.field(default="dialogue.done", init=False)


@dataclass(slots=True)
class Pong:
    """Answer to ``ping``."""

    server_time: float
    protocol: int = PROTOCOL_VERSION
    ref: Ref = None
    type: str = dataclasses.field(default="pong", init=False)


@dataclass(slots=True)
class ErrorMessage:
    """A frame the server could not accept; the socket stays open."""

    code: str
    message: str
    ref: Ref = None
    field: str | None = None
    type: str = dataclasses.field(default="error", init=False)


ServerMessage = (
    Welcome
    | Subscribed
    | Unsubscribed
    | IntentMessage
    | IntentsMessage
    | DialogueToken
    | DialogueDone
    | Pong
    | ErrorMessage
)
Message = ClientMessage | ServerMessage


# ----------------------------------------------------------------------------------------------
# Encoding

_ALWAYS: frozenset[str] = frozenset({"ref"})


def to_wire(message: Message) -> dict[str, Any]:
    """The JSON object for ``message``: ``type`` first, ``None`` optionals left out.

    ``ref`` is left out of client frames when ``None``; server frames that answer a request always
    carry it (``null`` when the request had none) so a client can tell answers from pushes.
    """
    out: dict[str, Any] = {"type": message.type}
    server = isinstance(message, _SERVER_TYPES)
    for name in message.__slots__:
        if name == "type":
            continue
        value = getattr(message, name)
        if value is None and not (server and name in _ALWAYS):
            continue
        out[name] = value
    if isinstance(message, IntentsMessage):
        out["intents"] = [_intent_item(item) for item in message.intents]
    return out


def _intent_item(item: IntentMessage) -> dict[str, Any]:
    return {
        "npc_id": item.npc_id,
        "intent": item.intent,
        "args": item.args,
        "source": item.source,
        "generated_at": item.generated_at,
        "ttl_ms": item.ttl_ms,
    }


def encode(message: Message) -> str:
    """Compact JSON text of ``message``."""
    return json.dumps(to_wire(message), separators=(",", ":"), allow_nan=False)


# ----------------------------------------------------------------------------------------------
# Parsing client frames (strict, fast)

_RESERVED: frozenset[str] = frozenset({"type", "ref"})


def _ref(raw: dict[str, Any]) -> Ref:
    ref = raw.get("ref")
    if ref is None:
        return None
    if isinstance(ref, str) and len(ref) <= MAX_REF_CHARS:
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    raise ProtocolError(
        BAD_FIELD,
        f"'ref' must be a string of at most {MAX_REF_CHARS} chars or an integer",
        None,
        "ref",
    )


def _check_fields(raw: dict[str, Any], allowed: frozenset[str], ref: Ref, kind: str) -> None:
    if len(raw) > len(allowed) + 2 or not raw.keys() <= allowed | _RESERVED:
        extra = sorted(set(raw) - allowed - _RESERVED)
        raise ProtocolError(BAD_FIELD, f"unknown field {extra[0]!r} in {kind}", ref, extra[0])


def _required(raw: dict[str, Any], name: str, ref: Ref) -> Any:
    try:
        return raw[name]
    except KeyError:
        raise ProtocolError(MISSING_FIELD, f"'{name}' is required", ref, name) from None


def _id(raw: dict[str, Any], name: str, ref: Ref, required: bool = True) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise ProtocolError(MISSING_FIELD, f"'{name}' is required", ref, name)
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise ProtocolError(
            BAD_FIELD,
            f"'{name}' must be a non-empty string of at most {MAX_ID_CHARS} chars",
            ref,
            name,
        )
    return value


_LARGEST = sys.float_info.max
_PLAIN_NUMBERS = (float, int)  # by exact type: bool is an int subclass and is refused


def _finite(value: float) -> bool:
    """NaN and ±inf fail, and so does an integer past float's range (the standard parser
    reads one, where ``math.isfinite`` would raise ``OverflowError``)."""
    return -_LARGEST <= value <= _LARGEST


def _number(
    value: Any, name: str, ref: Ref, low: float | None = None, high: float | None = None
) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not _finite(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        bounds = f" in {low}..{high}" if low is not None and high is not None else ""
        raise ProtocolError(BAD_FIELD, f"'{name}' must be a finite number{bounds}", ref, name)
    return float(value)


def _point(value: Any, name: str, ref: Ref) -> list[float]:
    if not isinstance(value, list) or len(value) != 2:
        raise ProtocolError(BAD_FIELD, f"'{name}' must be [x, y]", ref, name)
    return [_number(value[0], name, ref), _number(value[1], name, ref)]


_STATE_FIELDS: frozenset[str] = frozenset(
    {"pos", "facing", "health", "fear", "player", "noise", "route", "target", "tick"}
)
_PLAYER_FIELDS: frozenset[str] = frozenset({"pos", "visible"})


def _finite_pair(value: Any) -> bool:
    # _finite() written out: this runs for every NPC of every frame
    return (
        type(value) is list
        and len(value) == 2
        and type(value[0]) in _PLAIN_NUMBERS
        and -_LARGEST <= value[0] <= _LARGEST
        and type(value[1]) in _PLAIN_NUMBERS
        and -_LARGEST <= value[1] <= _LARGEST
    )


_ABSENT = object()


def _state_is_plain(value: Any) -> bool:
    """The common state, checked in one pass: the fields a game sends every frame, each of the
    right type and range. ``False`` says only "look closer": :func:`_state` then finds and
    names what is wrong, or accepts what this check does not cover."""
    if type(value) is not dict or not value.keys() <= _STATE_FIELDS:
        return False
    if not _finite_pair(value.get("pos")):
        return False
    for key in ("health", "fear", "noise"):
        number = value.get(key, 0.0)
        if type(number) not in _PLAIN_NUMBERS or not 0.0 <= number <= 1.0:
            return False
    facing = value.get("facing", 0.0)
    if type(facing) not in _PLAIN_NUMBERS or not -_LARGEST <= facing <= _LARGEST:
        return False
    tick = value.get("tick", 0)
    if type(tick) is not int or tick < 0:
        return False
    player = value.get("player", _ABSENT)
    if player is not _ABSENT and (
        type(player) is not dict
        or not player.keys() <= _PLAYER_FIELDS
        or ("pos" in player and not _finite_pair(player["pos"]))
        or type(player.get("visible", False)) is not bool
    ):
        return False
    if "route" in value or value.get("target") is not None:
        return False  # rarer, and longer: checked point by point below
    return True


def _state(value: Any, ref: Ref) -> dict[str, Any]:
    """A client's ``state`` object, validated: most states take the one-pass check, about
    twice as fast as the field-by-field one it falls back to (docs/npcs.md)."""
    if _state_is_plain(value):
        return value  # type: ignore[no-any-return]
    return _state_checked(value, ref)


def _state_checked(value: Any, ref: Ref) -> dict[str, Any]:
    """Field by field, naming the first field that is wrong."""
    if not isinstance(value, dict):
        raise ProtocolError(BAD_FIELD, "'state' must be an object", ref, "state")
    if not value.keys() <= _STATE_FIELDS:
        extra = sorted(set(value) - _STATE_FIELDS)[0]
        raise ProtocolError(BAD_FIELD, f"unknown field 'state.{extra}'", ref, f"state.{extra}")
    if "pos" not in value:
        raise ProtocolError(MISSING_FIELD, "'state.pos' is required", ref, "state.pos")
    _point(value["pos"], "state.pos", ref)
    for key in ("health", "fear", "noise"):
        if key in value:
            _number(value[key], f"state.{key}", ref, 0.0, 1.0)
    if "facing" in value:
        _number(value["facing"], "state.facing", ref)
    if "tick" in value:
        tick = value["tick"]
        if isinstance(tick, bool) or not isinstance(tick, int) or tick < 0:
            raise ProtocolError(
                BAD_FIELD, "'state.tick' must be a non-negative integer", ref, "state.tick"
            )
    if "player" in value:
        player = value["player"]
        if not isinstance(player, dict) or not player.keys() <= _PLAYER_FIELDS:
            raise ProtocolError(
                BAD_FIELD,
                "'state.player' must be an object with 'pos' and 'visible'",
                ref,
                "state.player",
            )
        if "pos" in player:
            _point(player["pos"], "state.player.pos", ref)
        if "visible" in player and not isinstance(player["visible"], bool):
            raise ProtocolError(
                BAD_FIELD, "'state.player.visible' must be a boolean", ref, "state.player.visible"
            )
    if "route" in value:
        route = value["route"]
        if not isinstance(route, list) or len(route) > MAX_ROUTE_POINTS:
            raise ProtocolError(
                BAD_FIELD,
                f"'state.route' must be a list of at most {MAX_ROUTE_POINTS} points",
                ref,
                "state.route",
            )
        for point in route:
            _point(point, "state.route", ref)
    if "target" in value and value["target"] is not None:
        _point(value["target"], "state.target", ref)
    return value


def _hello(raw: dict[str, Any], ref: Ref) -> Hello:
    _check_fields(raw, _F_HELLO, ref, "hello")
    protocol = _required(raw, "protocol", ref)
    if isinstance(protocol, bool) or not isinstance(protocol, int) or protocol < 1:
        raise ProtocolError(BAD_FIELD, "'protocol' must be a positive integer", ref, "protocol")
    api_key = raw.get("api_key")
    if api_key is not None and (not isinstance(api_key, str) or not api_key or len(api_key) > 200):
        raise ProtocolError(BAD_FIELD, "'api_key' must be a non-empty string", ref, "api_key")
    return Hello(protocol=protocol, api_key=api_key, ref=ref)


def _subscribe(raw: dict[str, Any], ref: Ref) -> Subscribe:
    _check_fields(raw, _F_NPC, ref, "npc.subscribe")
    return Subscribe(npc_id=_id(raw, "npc_id", ref) or "", ref=ref)


def _unsubscribe(raw: dict[str, Any], ref: Ref) -> Unsubscribe:
    _check_fields(raw, _F_NPC, ref, "npc.unsubscribe")
    return Unsubscribe(npc_id=_id(raw, "npc_id", ref) or "", ref=ref)


def _intent_get(raw: dict[str, Any], ref: Ref) -> IntentGet:
    _check_fields(raw, _F_NPC, ref, "intent.get")
    return IntentGet(npc_id=_id(raw, "npc_id", ref) or "", ref=ref)


def _state_update(raw: dict[str, Any], ref: Ref) -> StateUpdate:
    _check_fields(raw, _F_STATE, ref, "state.update")
    npc_id = _id(raw, "npc_id", ref) or ""
    state = _state(_required(raw, "state", ref), ref)
    world = raw.get("world")
    if world is not None and not isinstance(world, dict):
        raise ProtocolError(BAD_FIELD, "'world' must be an object", ref, "world")
    return StateUpdate(npc_id=npc_id, state=state, world=world, ref=ref)


def _state_batch(raw: dict[str, Any], ref: Ref) -> StateBatch:
    _check_fields(raw, _F_BATCH, ref, "state.batch")
    states = _required(raw, "states", ref)
    if not isinstance(states, dict) or not 1 <= len(states) <= MAX_BATCH:
        raise ProtocolError(
            BAD_FIELD,
            f"'states' must be an object of 1 to {MAX_BATCH} NPC ids to states",
            ref,
            "states",
        )
    for npc_id, state in states.items():
        if not npc_id or len(npc_id) > MAX_ID_CHARS:
            raise ProtocolError(
                BAD_FIELD,
                f"'states' keys must be NPC ids of 1 to {MAX_ID_CHARS} chars",
                ref,
                "states",
            )
        try:
            _state(state, ref)
        except ProtocolError as exc:  # name the NPC whose state is wrong
            field = f"states.{npc_id}{(exc.field or 'state')[5:]}"
            raise ProtocolError(exc.code, f"{npc_id}: {exc.message}", ref, field) from None
    world = raw.get("world")
    if world is not None and not isinstance(world, dict):
        raise ProtocolError(BAD_FIELD, "'world' must be an object", ref, "world")
    return StateBatch(states=states, world=world, ref=ref)


def _intents_get(raw: dict[str, Any], ref: Ref) -> IntentsGet:
    _check_fields(raw, _F_IDS, ref, "intents.get")
    npc_ids = _required(raw, "npc_ids", ref)
    if (
        not isinstance(npc_ids, list)
        or not 1 <= len(npc_ids) <= MAX_BATCH
        or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_CHARS for i in npc_ids)
    ):
        raise ProtocolError(
            BAD_FIELD,
            f"'npc_ids' must be a list of 1 to {MAX_BATCH} NPC ids",
            ref,
            "npc_ids",
        )
    return IntentsGet(npc_ids=npc_ids, ref=ref)


def _dialogue_say(raw: dict[str, Any], ref: Ref) -> DialogueSay:
    _check_fields(raw, _F_SAY, ref, "dialogue.say")
    npc_id = _id(raw, "npc_id", ref) or ""
    text = _required(raw, "text", ref)
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(
            BAD_FIELD,
            f"'text' must be a non-blank string of at most {MAX_TEXT_CHARS} chars",
            ref,
            "text",
        )
    return DialogueSay(
        npc_id=npc_id, text=text, conversation_id=_id(raw, "conversation_id", ref, False), ref=ref
    )


def _dialogue_cancel(raw: dict[str, Any], ref: Ref) -> DialogueCancel:
    _check_fields(raw, _F_CANCEL, ref, "dialogue.cancel")
    conversation_id = _id(raw, "conversation_id", ref, False)
    if conversation_id is None and ref is None:
        raise ProtocolError(
            MISSING_FIELD,
            "'conversation_id' (or the 'ref' of the dialogue.say) is required",
            ref,
            "conversation_id",
        )
    return DialogueCancel(conversation_id=conversation_id, ref=ref)


def _ping(raw: dict[str, Any], ref: Ref) -> Ping:
    _check_fields(raw, _F_NONE, ref, "ping")
    return Ping(ref=ref)


_F_HELLO = frozenset({"protocol", "api_key"})
_F_NPC = frozenset({"npc_id"})
_F_STATE = frozenset({"npc_id", "state", "world"})
_F_BATCH = frozenset({"states", "world"})
_F_IDS = frozenset({"npc_ids"})
_F_SAY = frozenset({"npc_id", "text", "conversation_id"})
_F_CANCEL = frozenset({"conversation_id"})
_F_NONE: frozenset[str] = frozenset()

_CLIENT_PARSERS: dict[str, Any] = {
    "hello": _hello,
    "npc.subscribe": _subscribe,
    "npc.unsubscribe": _unsubscribe,
    "state.update": _state_update,
    "intent.get": _intent_get,
    "state.batch": _state_batch,
    "intents.get": _intents_get,
    "dialogue.say": _dialogue_say,
    "dialogue.cancel": _dialogue_cancel,
    "ping": _ping,
}
CLIENT_TYPES: frozenset[str] = frozenset(_CLIENT_PARSERS)
# The client frame types of each protocol version.
CLIENT_TYPES_BY_VERSION: dict[int, frozenset[str]] = {
    1: CLIENT_TYPES - {"state.batch", "intents.get"},
    2: CLIENT_TYPES,
}


def _decode(raw: str | bytes, max_bytes: int) -> dict[str, Any]:
    # len(str) <= bytes <= 4*len(str): a text frame is only encoded when it could matter.
    if len(raw) > max_bytes or (
        isinstance(raw, str) and len(raw) * 4 > max_bytes and len(raw.encode()) > max_bytes
    ):
        raise ProtocolError(TOO_LARGE, f"frames are limited to {max_bytes} bytes")
    try:
        # NaN and Infinity are let through so that the field checks name the field holding one.
        obj = read_json(raw, allow_nan=True)
    except JsonRefused as exc:
        raise _refused(exc) from None
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_FRAME, "a frame is a JSON object with a string 'type'")
    return obj


def _refused(exc: JsonRefused) -> ProtocolError:
    if exc.reason == TOO_DEEP:
        return ProtocolError(INVALID_JSON, f"frames nest at most {MAX_DEPTH} levels")
    if exc.path is None:
        return ProtocolError(INVALID_JSON, f"frame is {exc.message}")  # "not valid JSON: …"
    # A number no field can hold (an integer past 64 bits, or past a double): named like the
    # field checks name fields ("states.<npc>.pos", list indices left out), with the frame's
    # ref when that is not the number itself.
    field = ".".join(part for part in exc.path if isinstance(part, str))
    ref: Ref = None
    if isinstance(exc.document, dict):
        try:
            ref = _ref(exc.document)
        except ProtocolError:
            ref = None
    return ProtocolError(BAD_FIELD, f"'{field}': {exc.message}", ref, field)


def parse_client_message(
    raw: str | bytes, max_bytes: int = MAX_FRAME_BYTES, version: int = PROTOCOL_VERSION
) -> ClientMessage:
    """Validate one client frame of protocol ``version`` and return its message.

    Raises :class:`ProtocolError` with code ``too_large``, ``invalid_json``, ``bad_frame`` (not a
    JSON object with a string ``type``), ``unknown_type``, ``missing_field`` or ``bad_field``; the
    error carries the frame's ``ref`` whenever the frame got far enough to have one.
    """
    obj = _decode(raw, max_bytes)
    kind = obj.get("type")
    ref = _ref(obj)
    if not isinstance(kind, str):
        raise ProtocolError(BAD_FRAME, "a frame is a JSON object with a string 'type'", ref, "type")
    parser = _CLIENT_PARSERS.get(kind)
    if parser is None:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}", ref, "type")
    if kind not in CLIENT_TYPES_BY_VERSION[version]:
        raise ProtocolError(
            UNKNOWN_TYPE, f"{kind!r} needs protocol 2 (say so in hello)", ref, "type"
        )
    message: ClientMessage = parser(obj, ref)
    return message


# ----------------------------------------------------------------------------------------------
# Parsing server frames (tolerant: unknown fields ignored)


def _s_str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise ProtocolError(
            BAD_FIELD, f"server frame {obj.get('type')!r}: {name!r} must be a string"
        )
    return value


def _s_num(obj: dict[str, Any], name: str) -> float:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(
            BAD_FIELD, f"server frame {obj.get('type')!r}: {name!r} must be a number"
        )
    return float(value)


def _s_intent(obj: dict[str, Any], ref: Ref) -> IntentMessage:
    args: Any = obj.get("args") or {}
    generated_at: Any = obj.get("generated_at")
    ttl_ms: Any = obj.get("ttl_ms")
    npc_id, intent, source = obj.get("npc_id"), obj.get("intent"), obj.get("source")
    if (  # the usual item, in one pass: an answer is read in well under half the time
        type(npc_id) is str
        and type(intent) is str
        and type(source) is str
        and type(args) is dict
        and type(generated_at) in _PLAIN_NUMBERS
        and type(ttl_ms) in _PLAIN_NUMBERS
    ):
        return IntentMessage(npc_id, intent, args, source, float(generated_at), int(ttl_ms), ref)
    if not isinstance(args, dict):
        raise ProtocolError(BAD_FIELD, "server frame 'intent': 'args' must be an object")
    return IntentMessage(
        npc_id=_s_str(obj, "npc_id"),
        intent=_s_str(obj, "intent"),
        args=args,
        source=_s_str(obj, "source"),
        generated_at=_s_num(obj, "generated_at"),
        ttl_ms=int(_s_num(obj, "ttl_ms")),
        ref=ref,
    )


def parse_server_message(raw: str | bytes, max_bytes: int = 1 << 20) -> ServerMessage:
    """Read one server frame (used by the client library). Raises :class:`ProtocolError`."""
    obj = _decode(raw, max_bytes)
    kind = obj.get("type")
    ref = obj.get("ref")
    if not (ref is None or isinstance(ref, str | int)):
        ref = None
    if kind == "intent":
        return _s_intent(obj, ref)
    if kind == "intents":
        items = obj.get("intents")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ProtocolError(BAD_FIELD, "server frame 'intents': 'intents' must be objects")
        # Each item carries the answer's ref, so a client can tell answered intents from pushes.
        return IntentsMessage(intents=[_s_intent(item, ref) for item in items], ref=ref)
    if kind == "dialogue.token":
        return DialogueToken(
            conversation_id=_s_str(obj, "conversation_id"), text=_s_str(obj, "text"), ref=ref
        )
    if kind == "dialogue.done":
        return DialogueDone(
            conversation_id=_s_str(obj, "conversation_id"),
            text=_s_str(obj, "text"),
            source=_s_str(obj, "source"),
            cancelled=obj.get("cancelled") is True,
            ref=ref,
        )
    if kind == "error":
        fld = obj.get("field")
        return ErrorMessage(
            code=_s_str(obj, "code"),
            message=_s_str(obj, "message"),
            ref=ref,
            field=fld if isinstance(fld, str) else None,
        )
    if kind == "pong":
        return Pong(
            server_time=_s_num(obj, "server_time"), protocol=int(_s_num(obj, "protocol")), ref=ref
        )
    if kind == "welcome":
        return Welcome(
            protocol=int(_s_num(obj, "protocol")),
            server_time=_s_num(obj, "server_time"),
            max_frame_bytes=int(obj.get("max_frame_bytes") or MAX_FRAME_BYTES),
            rate_per_s=int(obj.get("rate_per_s") or 0),
            ref=ref,
        )
    if kind == "npc.subscribed":
        allowed = obj.get("allowed_intents")
        if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
            raise ProtocolError(
                BAD_FIELD, "server frame 'npc.subscribed': 'allowed_intents' must be strings"
            )
        return Subscribed(
            npc_id=_s_str(obj, "npc_id"),
            policy=_s_str(obj, "policy"),
            allowed_intents=allowed,
            default_intent=str(obj.get("default_intent") or "idle"),
            ref=ref,
        )
    if kind == "npc.unsubscribed":
        return Unsubscribed(npc_id=_s_str(obj, "npc_id"), ref=ref)
    raise ProtocolError(UNKNOWN_TYPE, f"unknown server message type {kind!r}")


_SERVER_TYPES = (
    Welcome,
    Subscribed,
    Unsubscribed,
    IntentMessage,
    IntentsMessage,
    DialogueToken,
    DialogueDone,
    Pong,
    ErrorMessage,
)


# ----------------------------------------------------------------------------------------------
# NpcState <-> wire


def state_to_wire(state: NpcState) -> dict[str, Any]:
    """The ``state`` object of a ``state.update`` for ``state`` (memory stays local)."""
    wire: dict[str, Any] = {
        "pos": [state.x, state.y],
        "facing": state.facing,
        "health": state.health,
        "fear": state.fear,
        "player": {"pos": [state.player_x, state.player_y], "visible": state.player_visible},
        "noise": state.noise,
        "tick": state.tick,
    }
    if state.route:
        wire["route"] = [[x, y] for x, y in state.route]
    if state.target is not None:
        wire["target"] = [state.target[0], state.target[1]]
    return wire


def state_from_wire(npc_id: str, wire: dict[str, Any], into: NpcState | None = None) -> NpcState:
    """An :class:`NpcState` from a validated ``state`` object; updates ``into`` (keeping its
    memory) when given, so the server can keep one state per NPC."""
    state = into if into is not None else NpcState(npc_id=npc_id)
    pos = wire["pos"]
    state.x, state.y = float(pos[0]), float(pos[1])
    state.facing = float(wire.get("facing", state.facing))
    state.health = float(wire.get("health", state.health))
    state.fear = float(wire.get("fear", state.fear))
    state.noise = float(wire.get("noise", state.noise))
    state.tick = int(wire.get("tick", state.tick))
    player = wire.get("player")
    if player is not None:
        if "pos" in player:
            state.player_x, state.player_y = float(player["pos"][0]), float(player["pos"][1])
        state.player_visible = bool(player.get("visible", False))
    if "route" in wire:
        state.route = [(float(p[0]), float(p[1])) for p in wire["route"]]
    if "target" in wire:
        target = wire["target"]
        state.target = (float(target[0]), float(target[1])) if target is not None else None
    return state
