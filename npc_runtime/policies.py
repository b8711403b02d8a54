"""Micro-policies: deterministic per-frame NPC behaviour on the latest cached intent.

A micro-policy is a plain function ``(intent, state, dt, out) -> Action`` that a game client (or the
server) runs every frame. Policies never touch the network, never read the clock and never use the
global random generator: the same intent, state and ``dt`` always give the same action, and any
variation comes from a hash of the NPC id and ``state.tick``. They write into a caller-owned
:class:`Action` so a frame allocates nothing but a few floats.

``choose_intent`` is the other half: the intent a policy picks by itself when no model intent is
cached (the Gold tier's last fallback), restricted to the NPC's allowed intents.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

STANDARD_INTENTS: tuple[str, ...] = (
    "idle",
    "patrol",
    "investigate",
    "approach_player",
    "hide",
    "flee",
    "attack",
    "talk",
    "follow",
)

#: Every animation name a policy may return.
ANIMATIONS: frozenset[str] = frozenset(
    {"idle", "look_around", "walk", "sneak", "run", "crouch", "search", "attack", "shove", "talk"}
)

#: Upper bound of ``Action.speed`` for any policy (metres per second).
MAX_SPEED = 5.0

ARRIVE_RADIUS = 0.5
ATTACK_REACH = 1.5
TALK_DISTANCE = 2.0
FOLLOW_DISTANCE = 2.5
APPROACH_DISTANCE = 1.5
IDLE_LOOK_PERIOD = 90  # ticks between idle head turns


@dataclass(slots=True)
class Intent:
    """An intent from an NPC's closed vocabulary, e.g. ``Intent("patrol", {"route": [...]})``."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class NpcState:
    """What a policy knows about one NPC and its surroundings in the current frame.

    Positions are metres in the world's ground plane, ``facing`` is radians, ``health``, ``fear``
    and ``noise`` are 0..1. ``memory`` belongs to the policy: it keeps small per-NPC values there
    (route index, last seen player position, which lines were said) between frames.
    """

    npc_id: str
    x: float = 0.0
    y: float = 0.0
    facing: float = 0.0
    health: float = 1.0
    fear: float = 0.0
    player_x: float = 0.0
    player_y: float = 0.0
    player_visible: bool = False
    noise: float = 0.0
    route: list[tuple[float, float]] = field(default_factory=list)
    target: tuple[float, float] | None = None
    tick: int = 0
    memory: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.seed:
            self.seed = zlib.crc32(self.npc_id.encode()) or 1

    @property
    def player_distance(self) -> float:
        return math.hypot(self.player_x - self.x, self.player_y - self.y)


@dataclass(slots=True)
class Action:
    """What an NPC does this frame.

    ``move_x``/``move_y`` is a unit (or zero) direction, ``speed`` metres per second (0..MAX_SPEED),
    ``dest`` the point it is heading for (or ``None``), ``look_x``/``look_y`` the point it faces,
    ``animation`` one of :data:`ANIMATIONS`, ``say`` a line key to play once, or ``None``.
    """

    move_x: float = 0.0
    move_y: float = 0.0
    speed: float = 0.0
    dest: tuple[float, float] | None = None
    look_x: float = 0.0
    look_y: float = 0.0
    animation: str = "idle"
    say: str | None = None
    intent: str = "idle"


Policy = Callable[[Intent, NpcState, float, Action], Action]


# ----------------------------------------------------------------------------------------------
# Small helpers (no allocation beyond floats)


def _noise01(seed: int, tick: int, salt: int) -> float:
    """Deterministic pseudo-random float in [0, 1) from NPC seed, tick and a salt (splitmix64)."""
    z = (seed * 0x9E3779B97F4A7C15 + tick * 0xBF58476D1CE4E5B9 + salt) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return (z >> 11) / 9007199254740992.0


def _clamp(value: float, low: float, high: float) -> float:
    if value != value:  # NaN
        return low
    return low if value < low else high if value > high else value


def _reset(out: Action, state: NpcState, name: str) -> Action:
    out.move_x = 0.0
    out.move_y = 0.0
    out.speed = 0.0
    out.dest = None
    out.look_x = state.x + math.cos(state.facing)
    out.look_y = state.y + math.sin(state.facing)
    out.animation = "idle"
    out.say = None
    out.intent = name
    return out


def _vigour(state: NpcState) -> float:
    """Injured NPCs move slower: 0.5 at zero health, 1.0 at full health."""
    return 0.5 + 0.5 * _clamp(state.health, 0.0, 1.0)


def _move_towards(
    out: Action, state: NpcState, tx: float, ty: float, speed: float, animation: str
) -> float:
    """Head for (tx, ty); returns the distance left. Stops (speed 0) when already there."""
    dx = tx - state.x
    dy = ty - state.y
    dist = math.hypot(dx, dy)
    out.dest = (tx, ty)
    out.look_x = tx
    out.look_y = ty
    if dist <= 1e-9:
        return 0.0
    out.move_x = dx / dist
    out.move_y = dy / dist
    out.speed = _clamp(speed * _vigour(state), 0.0, MAX_SPEED)
    out.animation = animation
    return dist


def _move_away(
    out: Action, state: NpcState, fx: float, fy: float, speed: float, animation: str
) -> None:
    """Run directly away from (fx, fy); when on top of it, pick a seeded direction."""
    dx = state.x - fx
    dy = state.y - fy
    dist = math.hypot(dx, dy)
    if dist <= 1e-9:
        angle = _noise01(state.seed, state.tick // 30, 7) * math.tau
        dx, dy, dist = math.cos(angle), math.sin(angle), 1.0
    out.move_x = dx / dist
    out.move_y = dy / dist
    out.speed = _clamp(speed * _vigour(state), 0.0, MAX_SPEED)
    out.animation = animation
    out.look_x = state.x + out.move_x
    out.look_y = state.y + out.move_y
    out.dest = None


def _say_once(out: Action, state: NpcState, key: str) -> None:
    """Set ``out.say`` the first frame of an intent episode only."""
    if state.memory.get("said") != key:
        state.memory["said"] = key
        out.say = key


def _point_arg(args: Mapping[str, Any], xkey: str, ykey: str) -> tuple[float, float] | None:
    x = args.get(xkey)
    y = args.get(ykey)
    if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
        if math.isfinite(x) and math.isfinite(y):
            return float(x), float(y)
    return None


def _as_point(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        x, y = value
        if isinstance(x, int | float) and isinstance(y, int | float):
            if not isinstance(x, bool) and not isinstance(y, bool):
                if math.isfinite(x) and math.isfinite(y):
                    return float(x), float(y)
    return None


def _remember_player(state: NpcState) -> None:
    if state.player_visible:
        state.memory["last_seen"] = (state.player_x, state.player_y)


def _begin(intent: Intent, state: NpcState) -> None:
    """Per-frame bookkeeping shared by all policies: intent episodes and last seen player."""
    memory = state.memory
    if memory.get("intent") != intent.name:
        memory["intent"] = intent.name
        memory.pop("said", None)
        memory.pop("arrived", None)
    _remember_player(state)


# ----------------------------------------------------------------------------------------------
# Behaviours shared by the policies, parameterised by speeds and animations


def _idle(out: Action, state: NpcState) -> None:
    phase = state.tick // IDLE_LOOK_PERIOD
    if _noise01(state.seed, phase, 1) < 0.3:
        angle = state.facing + (_noise01(state.seed, phase, 2) - 0.5) * math.pi
        out.look_x = state.x + math.cos(angle)
        out.look_y = state.y + math.sin(angle)
        out.animation = "look_around"


def _patrol(intent: Intent, out: Action, state: NpcState, speed: float, animation: str) -> bool:
    """Walk the route in a loop. Returns False when there is no route (caller falls back)."""
    route: Any = intent.args.get("route")
    if not isinstance(route, list | tuple) or not route:
        route = state.route
    n = len(route)
    if n == 0:
        return False
    index = state.memory.get("wp", 0)
    if not isinstance(index, int) or index >= n or index < 0:
        index = 0
    point = _as_point(route[index])
    if point is None:
        return False
    if math.hypot(point[0] - state.x, point[1] - state.y) <= ARRIVE_RADIUS:
        index = (index + 1) % n
        point = _as_point(route[index])
        if point is None:
            return False
    state.memory["wp"] = index
    _move_towards(out, state, point[0], point[1], speed, animation)
    return True


def _investigate(
    intent: Intent, out: Action, state: NpcState, speed: float, animation: str
) -> bool:
    point = _point_arg(intent.args, "x", "y") or state.target or state.memory.get("last_seen")
    if point is None:
        return False
    if _move_towards(out, state, point[0], point[1], speed, animation) <= ARRIVE_RADIUS:
        out.move_x = out.move_y = out.speed = 0.0
        out.animation = "search"
        angle = state.facing + math.sin(state.tick * 0.05) * 1.2
        out.look_x = state.x + math.cos(angle)
        out.look_y = state.y + math.sin(angle)
    return True


def _player_or_last_seen(state: NpcState) -> tuple[float, float] | None:
    if state.player_visible:
        return state.player_x, state.player_y
    last = state.memory.get("last_seen")
    return last if isinstance(last, tuple) else None


def _approach(out: Action, state: NpcState, speed: float, animation: str, stop: float) -> bool:
    point = _player_or_last_seen(state)
    if point is None:
        return False
    if _move_towards(out, state, point[0], point[1], speed, animation) <= stop:
        out.move_x = out.move_y = out.speed = 0.0
        out.animation = "idle"
    return True


def _threat(state: NpcState) -> tuple[float, float]:
    point = _player_or_last_seen(state)
    if point is not None:
        return point
    if state.target is not None:
        return state.target
    return state.x, state.y


def _hide(out: Action, state: NpcState, speed: float) -> None:
    if state.player_visible:
        _move_away(out, state, state.player_x, state.player_y, speed, "sneak")
    else:
        out.animation = "crouch"
        point = _player_or_last_seen(state)
        if point is not None:
            out.look_x, out.look_y = point


def _follow(intent: Intent, out: Action, state: NpcState, speed: float, animation: str) -> bool:
    raw = intent.args.get("target")
    point: tuple[float, float] | None
    if raw == "player" or raw is None and state.target is None:
        point = _player_or_last_seen(state)
    else:
        point = _as_point(raw) or state.target
    if point is None:
        return False
    if _move_towards(out, state, point[0], point[1], speed, animation) <= FOLLOW_DISTANCE:
        out.move_x = out.move_y = out.speed = 0.0
        out.animation = "idle"
    return True


def _talk(out: Action, state: NpcState, line: str) -> None:
    out.animation = "talk"
    out.look_x = state.player_x
    out.look_y = state.player_y
    if state.player_distance <= TALK_DISTANCE * 2:
        _say_once(out, state, line)


# ----------------------------------------------------------------------------------------------
# The three policies


def guard_policy(intent: Intent, state: NpcState, dt: float, out: Action) -> Action:
    """A guard walks its rounds, investigates noises and fights; it only flees when told to."""
    _begin(intent, state)
    name = intent.name
    _reset(out, state, name)
    if name == "patrol":
        if _patrol(intent, out, state, 1.4, "walk"):
            return out
    elif name == "investigate":
        if _investigate(intent, out, state, 2.0, "walk"):
            return out
    elif name == "approach_player":
        if _approach(out, state, 2.5, "walk", APPROACH_DISTANCE):
            _say_once(out, state, "guard.halt")
            return out
    elif name == "attack":
        point = _player_or_last_seen(state)
        if point is not None:
            if _move_towards(out, state, point[0], point[1], 4.0, "run") <= ATTACK_REACH:
                out.move_x = out.move_y = out.speed = 0.0
                out.animation = "attack"
            _say_once(out, state, "guard.attack")
            return out
    elif name == "hide":
        _hide(out, state, 1.0)
        return out
    elif name == "flee":
        fx, fy = _threat(state)
        _move_away(out, state, fx, fy, 4.0, "run")
        return out
    elif name == "talk":
        _talk(out, state, "guard.greeting")
        return out
    elif name == "follow":
        if _follow(intent, out, state, 1.6, "walk"):
            return out
    # idle, unknown intents and intents missing what they need: stand watch
    out.intent = "idle"
    _idle(out, state)
    return out


def civilian_policy(intent: Intent, state: NpcState, dt: float, out: Action) -> Action:
    """A civilian strolls, talks, hides and flees; told to attack it only shoves at arm's length."""
    _begin(intent, state)
    name = intent.name
    _reset(out, state, name)
    fear = _clamp(state.fear, 0.0, 1.0)
    if name == "patrol":
        if _patrol(intent, out, state, 1.1, "walk"):
            return out
    elif name == "investigate":
        if _investigate(intent, out, state, 1.0, "walk"):
            return out
    elif name == "approach_player":
        if _approach(out, state, 1.2, "walk", TALK_DISTANCE):
            return out
    elif name == "attack":
        if state.player_visible and state.player_distance <= ATTACK_REACH:
            out.animation = "shove"
            out.look_x, out.look_y = state.player_x, state.player_y
            _say_once(out, state, "civilian.get_away")
            return out
        fx, fy = _threat(state)
        _move_away(out, state, fx, fy, 2.0 + 2.0 * fear, "run")
        return out
    elif name == "hide":
        _hide(out, state, 0.9)
        return out
    elif name == "flee":
        fx, fy = _threat(state)
        _move_away(out, state, fx, fy, 2.5 + 2.0 * fear, "run")
        if fear > 0.5:
            _say_once(out, state, "civilian.scream")
        return out
    elif name == "talk":
        _talk(out, state, "civilian.greeting")
        return out
    elif name == "follow":
        if _follow(intent, out, state, 1.3, "walk"):
            return out
    out.intent = "idle"
    _idle(out, state)
    return out


def stalker_policy(intent: Intent, state: NpcState, dt: float, out: Action) -> Action:
    """A stalker sneaks, keeps its distance while watched and strikes from close behind."""
    _begin(intent, state)
    name = intent.name
    _reset(out, state, name)
    if name == "patrol":
        if _patrol(intent, out, state, 0.9, "sneak"):
            return out
    elif name == "investigate":
        if _investigate(intent, out, state, 1.2, "sneak"):
            return out
    elif name == "approach_player":
        if _approach(out, state, 1.0, "sneak", APPROACH_DISTANCE):
            return out
    elif name == "attack":
        point = _player_or_last_seen(state)
        if point is not None:
            if _move_towards(out, state, point[0], point[1], 4.5, "run") <= ATTACK_REACH:
                out.move_x = out.move_y = out.speed = 0.0
                out.animation = "attack"
                _say_once(out, state, "stalker.hiss")
            return out
    elif name == "hide":
        _hide(out, state, 1.2)
        return out
    elif name == "flee":
        fx, fy = _threat(state)
        _move_away(out, state, fx, fy, 4.5, "run")
        return out
    elif name == "talk":
        _talk(out, state, "stalker.whisper")
        return out
    elif name == "follow":
        # Keeps further back than the others; freezes while the player looks its way.
        if _follow(intent, out, state, 1.1, "sneak"):
            if state.player_visible and state.player_distance < 8.0:
                out.move_x = out.move_y = out.speed = 0.0
                out.animation = "crouch"
            return out
    out.intent = "idle"
    _idle(out, state)
    return out


POLICIES: dict[str, Policy] = {
    "guard": guard_policy,
    "civilian": civilian_policy,
    "stalker": stalker_policy,
}


def run_policy(
    name: str, intent: Intent, state: NpcState, dt: float, out: Action | None = None
) -> Action:
    """Run policy ``name`` for one frame. Pass ``out`` to reuse one Action across frames.

    Raises ``KeyError`` for an unknown policy name.
    """
    return POLICIES[name](intent, state, dt, out if out is not None else Action())


# ----------------------------------------------------------------------------------------------
# Choosing an intent without a model


def allowed_names(allowed: Iterable[str | Mapping[str, Any]] | None) -> frozenset[str]:
    """Intent names from an NPC's ``allowed_intents`` (``["idle", ...]`` or ``[{"name": ...}]``)."""
    if allowed is None:
        return frozenset(STANDARD_INTENTS)
    names: set[str] = set()
    for item in allowed:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            names.add(item["name"])
    return frozenset(names)


def _preferences(policy_name: str, state: NpcState) -> list[str]:
    visible = state.player_visible
    dist = state.player_distance
    fear = state.fear
    prefs: list[str] = []
    if policy_name == "guard":
        if state.health < 0.25:
            prefs.append("flee")
        if visible and dist <= ATTACK_REACH:
            prefs.append("attack")
        if visible and dist < 12.0:
            prefs += ["approach_player", "attack"]
        if state.noise > 0.5 or "last_seen" in state.memory:
            prefs.append("investigate")
        prefs += ["patrol", "idle"]
    elif policy_name == "civilian":
        if fear > 0.6:
            prefs += ["flee", "hide"]
        if state.noise > 0.7:
            prefs += ["hide", "flee"]
        if visible and dist < 3.0 and fear < 0.3:
            prefs.append("talk")
        prefs += ["patrol", "idle"]
    else:  # stalker
        if fear > 0.8:
            prefs.append("flee")
        if visible and dist < 6.0:
            prefs += ["hide", "flee"]
        if visible:
            prefs.append("follow")
        if state.noise > 0.4 or "last_seen" in state.memory:
            prefs.append("investigate")
        prefs += ["patrol", "idle"]
    return prefs


def _args_for(name: str, state: NpcState) -> dict[str, Any] | None:
    """Arguments for a self-chosen intent, or ``None`` when the state cannot supply them."""
    if name == "patrol":
        return {"route": [list(p) for p in state.route]} if state.route else None
    if name == "investigate":
        point = state.target or state.memory.get("last_seen")
        if point is None and state.player_visible:
            point = (state.player_x, state.player_y)
        return {"x": point[0], "y": point[1]} if point is not None else None
    if name == "follow":
        return {"target": "player"} if state.player_visible else None
    if name in ("approach_player", "attack"):
        return {} if state.player_visible or "last_seen" in state.memory else None
    return {}


def intent_args(name: str, state: NpcState) -> dict[str, Any] | None:
    """The arguments an intent named ``name`` takes in ``state`` (e.g. the point to investigate),
    or ``None`` when the state cannot supply them. Servers use it to complete an intent a model
    chose by name."""
    return _args_for(name, state)


def choose_intent(
    policy_name: str, state: NpcState, allowed: Iterable[str | Mapping[str, Any]] | None = None
) -> Intent:
    """The intent policy ``policy_name`` picks by itself for ``state``, among ``allowed`` only.

    Deterministic: depends on the state and the policy's preference order only. Falls back to
    ``idle`` when allowed, else to the first allowed intent it can supply arguments for, else
    ``idle`` (the safe no-op every policy understands).
    """
    if policy_name not in POLICIES:
        raise KeyError(policy_name)
    names = allowed_names(allowed)
    for name in _preferences(policy_name, state):
        if name in names:
            args = _args_for(name, state)
            if args is not None:
                return Intent(name, args)
    for name in sorted(names):
        args = _args_for(name, state)
        if args is not None:
            return Intent(name, args)
    return Intent("idle", {})
