"""``make bench-npcs`` judges its runs against the targets of the NPC system (bench/npcs.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "npcs.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_npcs", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(npcs: int, p99: float | None, **fields: Any) -> dict[str, Any]:
    """One run's result as the bench writes it, with only what the verdicts read."""
    return {
        "npcs": npcs,
        "outage": False,
        "intent_get_ms": {"p99": p99},
        "errors": 0,
        "dropped": 0,
        "fresh_share": 1.0,
        **fields,
    }


def by_target(verdicts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {verdict["target"].split()[0]: verdict for verdict in verdicts}


def test_the_p99_target_is_judged_on_every_round_trip_of_the_200_npc_runs(
    bench: ModuleType,
) -> None:
    fast = [1.0] * 990 + [4.0] * 10  # p99 4.0 ms
    slow_tail = [1.0] * 980 + [6.0] * 20  # p99 6.0 ms
    results = [run(200, 4.0), run(200, 6.0), run(10, 9.0)]

    met = by_target(bench.verdicts(results, {200: fast + fast, 10: slow_tail}))["intents.get"]
    assert (met["met"], met["p99_ms"], met["round_trips"]) == (True, 4.0, 2000)
    assert (met["runs_p99_ms"], met["runs_over"]) == ([4.0, 6.0], 1)  # shown, not hidden

    missed = by_target(bench.verdicts(results, {200: fast + slow_tail + slow_tail}))
    assert missed["intents.get"]["met"] is False and missed["intents.get"]["p99_ms"] == 6.0
    assert by_target(bench.verdicts([run(200, None)], {}))["intents.get"]["met"] is False


def test_a_crowd_with_an_error_or_a_dropped_connection_misses(bench: ModuleType) -> None:
    clean = by_target(bench.verdicts([run(1000, 30.0)], {}))
    assert clean["1,000"]["met"] is True
    for spoiled in ({"errors": 1}, {"dropped": 1}):
        assert by_target(bench.verdicts([run(1000, 30.0, **spoiled)], {}))["1,000"]["met"] is False
    assert "1,000" not in by_target(
        bench.verdicts([run(200, 3.0)], {200: [3.0]})
    )  # not measured: not judged


def test_an_outage_is_met_only_by_policy_and_cache_intents_for_every_npc(
    bench: ModuleType,
) -> None:
    def outage(**fields: Any) -> dict[str, Any]:
        return by_target(bench.verdicts([run(200, 3.0, outage=True, **fields)], {}))["engines"]

    assert outage(sources_in_outage={"policy": 900, "cache": 40})["met"] is True
    assert outage(sources_in_outage={"policy": 900, "model": 1})["met"] is False
    assert outage(sources_in_outage={})["met"] is False  # nothing arrived at all
    assert outage(sources_in_outage={"policy": 900}, errors=1)["met"] is False
    assert outage(sources_in_outage={"policy": 900}, fresh_share=0.99)["met"] is False


def test_the_largest_fresh_count_skips_counts_where_an_npc_went_stale(bench: ModuleType) -> None:
    results = [run(10, 1.0), run(200, 3.0), run(1000, 20.0, fresh_share=0.97)]
    fresh = by_target(bench.verdicts(results, {}))["largest"]
    assert (fresh["npcs"], fresh["of_counts_run"]) == (200, [10, 200, 1000])
