"""Micro-policies: deterministic, bounded, and choose_intent stays inside allowed intents."""

from __future__ import annotations

import copy
import math
import time

import pytest

from npc_runtime.policies import (
    ANIMATIONS,
    MAX_SPEED,
    POLICIES,
    STANDARD_INTENTS,
    Action,
    Intent,
    NpcState,
    choose_intent,
    run_policy,
)


def _lcg_states(n: int, seed: int = 12345) -> list[NpcState]:
    """Many varied states from a fixed linear congruential generator (no global random)."""
    value = seed
    states = []

    def rnd() -> float:
        nonlocal value
        value = (value * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (value >> 11) / float(1 << 53)

    for i in range(n):
        route = [((rnd() - 0.5) * 40, (rnd() - 0.5) * 40) for _ in range(int(rnd() * 4))]
        states.append(
            NpcState(
                npc_id=f"npc-{i % 7}",
                x=(rnd() - 0.5) * 50,
                y=(rnd() - 0.5) * 50,
                facing=rnd() * math.tau,
                health=rnd(),
                fear=rnd(),
                player_x=(rnd() - 0.5) * 50,
                player_y=(rnd() - 0.5) * 50,
                player_visible=rnd() < 0.5,
                noise=rnd(),
                route=route,
                target=((rnd() - 0.5) * 30, (rnd() - 0.5) * 30) if rnd() < 0.3 else None,
                tick=int(rnd() * 10_000),
            )
        )
    return states


INTENTS = [
    Intent("idle"),
    Intent("patrol", {"route": [[0, 0], [10, 0], [10, 10]]}),
    Intent("patrol"),
    Intent("investigate", {"x": 3.0, "y": -4.0}),
    Intent("investigate"),
    Intent("approach_player"),
    Intent("hide"),
    Intent("flee"),
    Intent("attack"),
    Intent("talk"),
    Intent("follow", {"target": "player"}),
    Intent("follow", {"target": [5, 5]}),
    Intent("dance", {"style": "tango"}),
    Intent("investigate", {"x": "nan", "y": None}),
]


def _snapshot(action: Action) -> tuple[object, ...]:
    return (
        action.move_x,
        action.move_y,
        action.speed,
        action.dest,
        action.look_x,
        action.look_y,
        action.animation,
        action.say,
        action.intent,
    )


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_intent_gives_a_bounded_action_for_many_states(policy: str) -> None:
    for state in _lcg_states(300):
        for intent in INTENTS:
            action = run_policy(policy, intent, state, 1 / 60)
            length = math.hypot(action.move_x, action.move_y)
            assert length == pytest.approx(1.0) or length == 0.0, (policy, intent, state)
            assert 0.0 <= action.speed <= MAX_SPEED
            assert action.animation in ANIMATIONS
            assert math.isfinite(action.look_x) and math.isfinite(action.look_y)
            assert action.intent in STANDARD_INTENTS
            if action.speed > 0:
                assert length == pytest.approx(1.0)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_same_inputs_give_the_same_action_and_memory(policy: str) -> None:
    for state in _lcg_states(150, seed=99):
        twin = copy.deepcopy(state)
        for intent in INTENTS:
            first = run_policy(policy, intent, state, 1 / 30)
            second = run_policy(policy, intent, twin, 1 / 30)
            assert _snapshot(first) == _snapshot(second)
            assert state.memory == twin.memory


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_unknown_intent_falls_back_to_idle(policy: str) -> None:
    state = NpcState(npc_id="x", player_visible=True, player_x=3.0)
    action = run_policy(policy, Intent("moonwalk"), state, 0.016)
    assert action.intent == "idle"
    assert action.speed == 0.0


def test_patrol_walks_the_route_and_advances_waypoints() -> None:
    state = NpcState(npc_id="guard-1", x=0.0, y=0.0)
    intent = Intent("patrol", {"route": [[0, 0], [4, 0]]})
    out = Action()
    visited = []
    for tick in range(400):
        state.tick = tick
        action = run_policy("guard", intent, state, 0.05, out)
        assert action is out
        state.x += action.move_x * action.speed * 0.05
        state.y += action.move_y * action.speed * 0.05
        visited.append(state.memory["wp"])
    assert 0 in visited and 1 in visited
    assert visited.count(1) > 10 and visited[-1] in (0, 1)
    assert -0.5 <= state.x <= 4.5


def test_flee_moves_away_from_player_and_attack_closes_in() -> None:
    state = NpcState(npc_id="c", x=0.0, y=0.0, player_x=5.0, player_y=0.0, player_visible=True)
    flee = run_policy("civilian", Intent("flee"), state, 0.016)
    assert flee.move_x < 0 and flee.speed > 0
    attack = run_policy("guard", Intent("attack"), state, 0.016)
    assert attack.move_x > 0 and attack.animation == "run"
    state.x = 4.0
    strike = run_policy("guard", Intent("attack"), state, 0.016)
    assert strike.animation == "attack" and strike.speed == 0.0


def test_say_line_plays_once_per_intent_episode() -> None:
    state = NpcState(npc_id="c", player_x=1.0, player_visible=True)
    lines = [run_policy("civilian", Intent("talk"), state, 0.016).say for _ in range(5)]
    assert lines == ["civilian.greeting", None, None, None, None]
    run_policy("civilian", Intent("idle"), state, 0.016)
    assert run_policy("civilian", Intent("talk"), state, 0.016).say == "civilian.greeting"


def test_injured_npcs_move_slower() -> None:
    healthy = NpcState(npc_id="g", player_x=10.0, player_visible=True, health=1.0)
    hurt = NpcState(npc_id="g", player_x=10.0, player_visible=True, health=0.0)
    fast = run_policy("guard", Intent("attack"), healthy, 0.016).speed
    slow = run_policy("guard", Intent("attack"), hurt, 0.016).speed
    assert slow == pytest.approx(fast / 2)


def test_stalker_flees_when_afraid_hides_when_seen_close_else_patrols() -> None:
    route = [(0.0, 0.0), (5.0, 0.0)]
    afraid = NpcState(npc_id="s", fear=0.9, route=route)
    assert choose_intent("stalker", afraid).name == "flee"
    seen = NpcState(npc_id="s", player_visible=True, player_x=3.0, route=route)
    assert choose_intent("stalker", seen).name == "hide"
    calm = NpcState(npc_id="s", route=route)
    chosen = choose_intent("stalker", calm)
    assert chosen.name == "patrol" and chosen.args == {"route": [[0.0, 0.0], [5.0, 0.0]]}


def test_choose_intent_only_returns_allowed_intents() -> None:
    allowed_sets: list[list[object]] = [
        ["idle"],
        ["patrol", "talk"],
        [{"name": "hide", "args": []}, {"name": "flee", "args": []}],
        ["investigate"],
        ["attack", "approach_player"],
    ]
    for policy in POLICIES:
        for allowed in allowed_sets:
            names = {a if isinstance(a, str) else a["name"] for a in allowed}  # type: ignore[index]
            for state in _lcg_states(200, seed=7):
                chosen = choose_intent(policy, state, allowed)  # type: ignore[arg-type]
                assert chosen.name in names or chosen.name == "idle"
                if chosen.name not in names:
                    # idle only as the last resort, when no allowed intent has its arguments
                    assert all(a not in names for a in ("hide", "flee", "talk"))


def test_choose_intent_is_deterministic_and_rejects_unknown_policy() -> None:
    for state in _lcg_states(100, seed=3):
        assert choose_intent("guard", state) == choose_intent("guard", copy.deepcopy(state))
    with pytest.raises(KeyError):
        choose_intent("dragon", NpcState(npc_id="x"))


def test_policy_cost_per_frame_is_measured() -> None:
    states = _lcg_states(200, seed=5)
    out = Action()
    frames = 0
    start = time.perf_counter()
    for _ in range(5):
        for state in states:
            for intent in INTENTS[:12]:
                run_policy("guard", intent, state, 1 / 60, out)
                frames += 1
    per_frame = (time.perf_counter() - start) / frames
    start = time.perf_counter()
    for state in states:
        choose_intent("stalker", state, ["idle", "patrol", "hide", "flee", "follow"])
    per_choose = (time.perf_counter() - start) / len(states)
    print(f"\npolicy run_policy: {per_frame * 1e6:.2f} us/frame over {frames} frames")
    print(f"policy choose_intent: {per_choose * 1e6:.2f} us/call")
    assert frames == 5 * 200 * 12
