"""Requests that keep a real CPU engine generating for seconds, and a probe of how long the
engine makes a short request wait: the tests of cancellation drop the first and time the second.

A JSON schema with a long ``minLength`` string makes the model unable to stop early (the grammar
forbids the closing quote), so a long answer really is long on every run.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

LONG_TOKENS = 600
LONG_RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "story",
        "schema": {
            "type": "object",
            "properties": {"story": {"type": "string", "minLength": 5000}},
            "required": ["story"],
        },
    },
}
# The same constraint in the form llama.cpp's server takes directly.
LONG_RESPONSE_FORMAT_CPU: dict[str, Any] = {
    "type": "json_object",
    "schema": LONG_RESPONSE_FORMAT["json_schema"]["schema"],
}
LONG_MESSAGES = [{"role": "user", "content": "Tell the long story of the house on the hill."}]
SHORT_MESSAGES = [{"role": "user", "content": "Say hello."}]
# Dropped or cancelled generations must let the next short request through within this much
# beyond its own time. A generation left running delays it by the rest of a LONG_TOKENS answer,
# many times this.
STOP_WITHIN_S = 1.0


def short_request_s(engine_url: str, model: str) -> float:
    """Seconds an 8-token request to the engine takes, end to end, queueing included."""
    started = time.perf_counter()
    response = httpx.post(
        f"{engine_url}/v1/chat/completions",
        json={"model": model, "messages": SHORT_MESSAGES, "max_tokens": 8, "temperature": 0},
        timeout=60,
    )
    response.raise_for_status()
    return time.perf_counter() - started


def assert_not_delayed(engine_url: str, model: str, alone: float) -> None:
    """A short request now takes no more than ``STOP_WITHIN_S`` beyond its own time.

    Its own time is the slower of ``alone`` (measured before) and a second request right after
    this one, counted twice: the CPU engines run in the idle CPU class, so other work on the
    machine slows them unevenly between measurements, and only a generation still running
    should fail this.
    """
    behind = short_request_s(engine_url, model)
    again = short_request_s(engine_url, model)
    assert behind < 2 * max(alone, again) + STOP_WITHIN_S, (alone, behind, again)
