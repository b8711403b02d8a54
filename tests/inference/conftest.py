"""Fixtures for the inference tests: the real llama.cpp engine, started once per session.

The real engine (``gold_engine``) is started once per test session with ``EngineProcess``; it
needs ``scripts/install_cpu_engine.sh .venv`` to have run, and errors (it does not skip) when the
engine is missing, so a CI run cannot pass without exercising it.

Behaviour a real engine will not produce on demand (a stream that goes quiet, a mid-stream
error event, a dropped connection) is tested with ``tests.support.scripted_engine.ScriptedEngine``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inference.process import EngineProcess


@pytest.fixture(scope="session")
def gold_engine() -> Iterator[EngineProcess]:
    """The real gold CPU engine (llama.cpp + SmolLM2-135M) on a free port, for the session."""
    engine = EngineProcess("gold", "cpu", startup_timeout=60.0)
    with engine:
        yield engine
