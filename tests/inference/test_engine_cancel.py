"""A caller that goes away stops the real CPU engine's generation (``inference.llama_server``).

The engine serves one request at a time, so a generation nobody waits for delays every request
behind it: each test starts a long answer, drops it, and times a short request queued behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from inference.client import EngineClient, Timeouts
from inference.errors import EngineTimeout
from inference.process import EngineProcess
from tests.support.long_answers import (
    LONG_MESSAGES,
    LONG_RESPONSE_FORMAT,
    LONG_TOKENS,
    assert_not_delayed,
    short_request_s,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.engine]


@pytest_asyncio.fixture
async def gold(gold_engine: EngineProcess) -> AsyncIterator[EngineClient]:
    client = EngineClient(
        gold_engine.base_url,
        gold_engine.served_model_name,
        Timeouts(connect=1.0, first_token=30.0, total=60.0),
        engine="cpu",
    )
    yield client
    await client.aclose()


async def _short(engine: EngineProcess) -> float:
    return await asyncio.to_thread(short_request_s, engine.base_url, engine.served_model_name)


async def _not_delayed(engine: EngineProcess, alone: float) -> None:
    await asyncio.to_thread(assert_not_delayed, engine.base_url, engine.served_model_name, alone)


async def test_a_cancelled_whole_answer_stops_the_engine(
    gold: EngineClient, gold_engine: EngineProcess
) -> None:
    alone = await _short(gold_engine)
    long = asyncio.create_task(
        gold.chat(LONG_MESSAGES, max_tokens=LONG_TOKENS, response_format=LONG_RESPONSE_FORMAT)
    )
    await asyncio.sleep(1.0)  # generating by now: the prompt is a few tokens
    long.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await long

    await _not_delayed(gold_engine, alone)

    assert "stopped early" in gold_engine.output_tail(400)


async def test_a_whole_answer_past_its_timeout_stops_the_engine(
    gold_engine: EngineProcess,
) -> None:
    alone = await _short(gold_engine)
    async with EngineClient(
        gold_engine.base_url,
        gold_engine.served_model_name,
        Timeouts(connect=1.0, first_token=1.0, total=1.0),
        engine="cpu",
    ) as impatient:
        with pytest.raises(EngineTimeout):
            await impatient.chat(
                LONG_MESSAGES, max_tokens=LONG_TOKENS, response_format=LONG_RESPONSE_FORMAT
            )

    await _not_delayed(gold_engine, alone)


async def test_a_stream_closed_after_a_few_chunks_stops_the_engine(
    gold: EngineClient, gold_engine: EngineProcess
) -> None:
    alone = await _short(gold_engine)
    chunks = 0
    stream = gold.stream_chat(
        LONG_MESSAGES, max_tokens=LONG_TOKENS, response_format=LONG_RESPONSE_FORMAT
    )
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for _chunk in stream:
            chunks += 1
            if chunks == 5:
                break

    assert chunks == 5
    await _not_delayed(gold_engine, alone)
