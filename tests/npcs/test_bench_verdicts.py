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


def test_the_p99_target_holds_only_when_every_200_npc_run_meets_it(bench: ModuleType) -> None:
    met = by_target(bench.verdicts([run(200, 3.1), run(200, 4.9), run(10, 9.0)]))
    assert met["intents.get"]["met"] is True and met["intents.get"]["p99_ms"] == [3.1, 4.9]

    one_slow_run = by_target(bench.verdicts([run(200, 3.1), run(200, 5.2), run(200, 4.0)]))
    assert one_slow_run["intents.get"]["met"] is False

    no_answers = by_target(bench.verdicts([run(200, None)]))
    assert no_answers["intents.get"]["met"] is False


def test_a_crowd_with_an_error_or_a_dropped_connection_misses(bench: ModuleType) -> None:
    clean = by_target(bench.verdicts([run(1000, 30.0)]))
    assert clean["1,000"]["met"] is True
    for spoiled in ({"errors": 1}, {"dropped": 1}):
        assert by_target(bench.verdicts([run(1000, 30.0, **spoiled)]))["1,000"]["met"] is False
    assert "1,000" not in by_target(bench.verdicts([run(200, 3.0)]))  # not measured: not judged


def test_an_outage_is_met_only_by_policy_and_cache_intents_for_every_npc(
    bench: ModuleType,
) -> None:
    def outage(**fields: Any) -> dict[str, Any]:
        return by_target(bench.verdicts([run(200, 3.0, outage=True, **fields)]))["engines"]

    assert outage(sources_in_outage={"policy": 900, "cache": 40})["met"] is True
    assert outage(sources_in_outage={"policy": 900, "model": 1})["met"] is False
    assert outage(sources_in_outage={})["met"] is False  # nothing arrived at all
    assert outage(sources_in_outage={"policy": 900}, errors=1)["met"] is False
    assert outage(sources_in_outage={"policy": 900}, fresh_share=0.99)["met"] is False


def test_the_largest_fresh_count_skips_counts_where_an_npc_went_stale(bench: ModuleType) -> None:
    results = [run(10, 1.0), run(200, 3.0), run(1000, 20.0, fresh_share=0.97)]
    fresh = by_target(bench.verdicts(results))["largest"]
    assert (fresh["npcs"], fresh["of_counts_run"]) == (200, [10, 200, 1000])
