"""EngineClient end to end against a real llama.cpp server (SmolLM2-135M, CPU)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from inference.client import EngineClient, Timeouts
from inference.errors import EngineHTTPError, EngineTimeout, EngineUnavailable
from inference.process import EngineProcess, free_port

pytestmark = [pytest.mark.asyncio, pytest.mark.engine]

GREETING = [
    {"role": "system", "content": "You are a terse innkeeper."},
    {"role": "user", "content": "Greet the traveller."},
]


@pytest_asyncio.fixture
async def gold(gold_engine: EngineProcess) -> AsyncIterator[EngineClient]:
    client = EngineClient(
        gold_engine.base_url,
        gold_engine.served_model_name,
        Timeouts(connect=1.0, first_token=10.0, total=30.0),
        engine="cpu",
    )
    yield client
    await client.aclose()


async def test_chat_answers_with_text_finish_reason_and_token_counts(gold: EngineClient) -> None:
    completion = await gold.chat(GREETING, max_tokens=8, temperature=0)

    assert completion.text.strip()
    assert completion.finish_reason in ("stop", "length")
    assert completion.model == "gold"
    assert completion.prompt_tokens and completion.prompt_tokens > 5
    assert 0 < (completion.completion_tokens or 0) <= 8
    assert completion.latency_ms > 0
    assert completion.tool_calls == ()


async def test_streamed_chunks_join_to_the_non_streamed_answer(gold: EngineClient) -> None:
    whole = await gold.chat(GREETING, max_tokens=12, temperature=0)

    chunks = [c async for c in gold.stream_chat(GREETING, max_tokens=12, temperature=0)]

    texts = [c.text for c in chunks if c.text]
    assert len(texts) >= 3
    assert "".join(texts) == whole.text
    assert chunks[-1].finish_reason == whole.finish_reason
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert 0 < chunks[0].elapsed_ms <= chunks[-1].elapsed_ms


async def test_health_of_the_running_engine_is_ok(gold: EngineClient) -> None:
    result = await gold.health()

    assert result.ok, result.detail
    assert result.detail == "ok"
    assert 0 < result.latency_ms < 1000


async def test_models_lists_the_tier_alias(gold: EngineClient) -> None:
    assert await gold.models() == ["gold"]


async def test_health_of_a_dead_port_is_not_ok_and_does_not_raise() -> None:
    async with EngineClient(f"http://127.0.0.1:{free_port()}", "gold") as client:
        result = await client.health()

    assert not result.ok
    assert "Connect" in result.detail


async def test_chat_to_a_closed_port_raises_engine_unavailable() -> None:
    async with EngineClient(f"http://127.0.0.1:{free_port()}", "gold") as client:
        with pytest.raises(EngineUnavailable) as exc_info:
            await client.chat(GREETING, max_tokens=4)
        assert exc_info.value.retryable
        with pytest.raises(EngineUnavailable):
            async for _ in client.stream_chat(GREETING, max_tokens=4):
                pass


async def test_prompt_longer_than_the_context_is_a_non_retryable_http_error(
    gold: EngineClient,
) -> None:
    huge = [{"role": "user", "content": "word " * 5000}]  # n_ctx is 4096

    with pytest.raises(EngineHTTPError) as exc_info:
        await gold.chat(huge, max_tokens=4)

    assert exc_info.value.status == 400
    assert "context_length_exceeded" in exc_info.value.body
    assert not exc_info.value.retryable


async def test_stream_the_engine_aborts_raises_instead_of_ending_empty(gold: EngineClient) -> None:
    # Streaming, llama.cpp answers 200 and then closes the stream without a single event when
    # the prompt does not fit; the client must not pass that off as an empty answer.
    huge = [{"role": "user", "content": "word " * 5000}]

    with pytest.raises(EngineUnavailable, match="ended before the answer finished"):
        async for _ in gold.stream_chat(huge, max_tokens=4):
            pass


JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "schema": {
            "type": "object",
            "properties": {"hostile": {"type": "boolean"}},
            "required": ["hostile"],
        },
    },
}


async def test_json_schema_response_format_yields_parseable_json_on_llama_cpp(
    gold: EngineClient,
) -> None:
    messages = [{"role": "user", "content": "Is a dragon hostile? Answer in JSON."}]

    completion = await gold.chat(
        messages, max_tokens=16, temperature=0, response_format=JSON_SCHEMA_FORMAT
    )

    verdict = json.loads(completion.text)
    assert isinstance(verdict["hostile"], bool)


async def test_untranslated_json_schema_is_what_llama_cpp_rejects(
    gold_engine: EngineProcess,
) -> None:
    # Documents why translate_response_format exists: without engine="cpu" the OpenAI form
    # reaches llama.cpp as is and fails with a retryable-looking 500.
    async with EngineClient(gold_engine.base_url, "gold") as raw:
        with pytest.raises(EngineHTTPError) as exc_info:
            await raw.chat(
                [{"role": "user", "content": "Answer in JSON."}],
                max_tokens=8,
                response_format=JSON_SCHEMA_FORMAT,
            )
    assert exc_info.value.status == 500


async def test_tiny_first_token_timeout_raises_engine_timeout(
    gold_engine: EngineProcess,
) -> None:
    # A long prompt takes tens of milliseconds to prefill; 2 ms is never enough.
    long_prompt = [{"role": "user", "content": "The road to the keep is long. " * 60}]
    timeouts = Timeouts(connect=1.0, first_token=0.002, total=30.0)

    async with EngineClient(gold_engine.base_url, "gold", timeouts) as client:
        with pytest.raises(EngineTimeout) as exc_info:
            async for _ in client.stream_chat(long_prompt, max_tokens=8):
                pass
        assert exc_info.value.phase == "first_token"
        assert exc_info.value.text == ""

        # The engine finishes the abandoned request (one at a time), then answers again.
        deadline = asyncio.get_running_loop().time() + 15
        while not (await client.health()).ok:
            assert asyncio.get_running_loop().time() < deadline, "the engine never recovered"


async def test_tiny_total_timeout_on_chat_raises_engine_timeout(
    gold_engine: EngineProcess,
) -> None:
    timeouts = Timeouts(connect=1.0, first_token=10.0, total=0.005)

    async with EngineClient(gold_engine.base_url, "gold", timeouts) as client:
        with pytest.raises(EngineTimeout) as exc_info:
            await client.chat(GREETING, max_tokens=16)

    assert exc_info.value.phase == "total"


async def test_named_tool_choice_returns_a_tool_call(gold: EngineClient) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "open_door",
                "description": "Open a door",
                "parameters": {
                    "type": "object",
                    "properties": {"door": {"type": "string", "maxLength": 4}},
                    "required": ["door"],
                },
            },
        }
    ]

    completion = await gold.chat(
        [{"role": "user", "content": "Open the north door."}],
        max_tokens=16,
        temperature=0,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "open_door"}},
    )

    assert [call.name for call in completion.tool_calls] == ["open_door"]
    assert completion.tool_calls[0].id


def _voluntary_switches(pid: int) -> int:
    """How often the threads of a process have gone to sleep so far (preemptions not counted:
    they depend on whatever else the machine runs)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


async def test_the_cpu_engine_reads_a_prompt_on_one_thread(
    gold: EngineClient, gold_engine: EngineProcess
) -> None:
    """With one engine thread configured, prompt processing must stay on one thread: the
    server's default for prompt threads is every core, and those threads woke each other at
    every step, thousands of times a second, beside the game's processes."""
    assert gold_engine.pid is not None
    lore = " ".join(f"Keeper {i} saw a pale figure near the morgue." for i in range(40))
    messages = [{"role": "system", "content": lore}, *GREETING]
    before = _voluntary_switches(gold_engine.pid)
    completion = await gold.chat(messages, max_tokens=1, temperature=0)
    sleeps = _voluntary_switches(gold_engine.pid) - before

    assert (completion.prompt_tokens or 0) > 300
    # Measured for this prompt: about 60 with one thread, about 3,700 with two.
    assert sleeps < 500, f"the engine's threads went to sleep {sleeps} times for one prompt"
