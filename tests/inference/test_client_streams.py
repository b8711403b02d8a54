"""EngineClient against scripted engines: stalls, deadlines, SSE framing, broken streams.

A real engine will not stall or drop a stream on demand, so these use ``ScriptedEngine`` (a raw
asyncio server, tests/support/scripted_engine.py) that sends exactly the bytes each test needs.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from inference.client import Chunk, EngineClient, Timeouts, get_client, translate_response_format
from inference.errors import (
    EngineHTTPError,
    EngineProtocolError,
    EngineStalled,
    EngineTimeout,
    EngineUnavailable,
)
from inference.process import free_port
from tests.support.scripted_engine import SSE_HEAD, ScriptedEngine, json_response, sse_event

HELLO = [{"role": "user", "content": "hello"}]
QUICK = Timeouts(connect=1.0, first_token=2.0, total=10.0, stall=0.2)


async def _collect(client: EngineClient, into: list[Chunk]) -> None:
    async for chunk in client.stream_chat(HELLO, max_tokens=8):
        into.append(chunk)


@pytest.mark.asyncio
async def test_stream_that_goes_quiet_after_tokens_raises_stalled_with_the_partial_text() -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + sse_event("Hel") + sse_event("lo"))
        await writer.drain()
        await asyncio.sleep(3600)

    chunks: list[Chunk] = []
    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", QUICK) as client,
    ):
        started = time.perf_counter()
        with pytest.raises(EngineStalled) as exc_info:
            await _collect(client, chunks)
        waited = time.perf_counter() - started

    assert [c.text for c in chunks] == ["Hel", "lo"]
    assert exc_info.value.text == "Hello"
    assert exc_info.value.retryable
    assert 0.15 < waited < 1.5  # the stall timeout (0.2 s), not first_token or total


@pytest.mark.asyncio
async def test_keepalive_pings_do_not_hold_off_the_stall_timeout() -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + sse_event("Hi"))
        for _ in range(200):
            await asyncio.sleep(0.05)
            writer.write(b": ping - 2026-01-01 00:00:00\n\n")
            await writer.drain()

    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", QUICK) as client,
    ):
        with pytest.raises(EngineStalled) as exc_info:
            await _collect(client, [])

    assert exc_info.value.text == "Hi"


@pytest.mark.asyncio
async def test_no_token_before_first_token_deadline_raises_timeout() -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD)
        await writer.drain()
        await asyncio.sleep(3600)

    timeouts = Timeouts(connect=1.0, first_token=0.2, total=10.0, stall=5.0)
    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", timeouts) as c,
    ):
        started = time.perf_counter()
        with pytest.raises(EngineTimeout) as exc_info:
            await _collect(c, [])

    assert exc_info.value.phase == "first_token"
    assert time.perf_counter() - started < 1.5


@pytest.mark.asyncio
async def test_total_deadline_cuts_a_stream_that_keeps_trickling() -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD)
        for _ in range(1000):
            writer.write(sse_event("la "))
            await writer.drain()
            await asyncio.sleep(0.05)

    timeouts = Timeouts(connect=1.0, first_token=1.0, total=0.4, stall=1.0)
    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", timeouts) as c,
    ):
        with pytest.raises(EngineTimeout) as exc_info:
            await _collect(c, [])

    assert exc_info.value.phase == "total"
    assert exc_info.value.text.startswith("la la ")


@pytest.mark.asyncio
async def test_sse_events_split_across_writes_with_crlf_comments_and_fields_are_parsed() -> None:
    first = sse_event("Well ").replace(b"\n", b"\r\n")
    multi_line = b'data: {"choices":[{"index":0,\ndata: "delta":{"content":"met"}}]}\n\n'

    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + b": comment\n" + b"event: message\nid: 1\n")
        for piece in (first[:7], first[7:30], first[30:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(multi_line + sse_event("", finish_reason="stop") + b"data: [DONE]\n\n")
        await writer.drain()
        await asyncio.sleep(3600)  # the client must stop at [DONE], not wait for EOF

    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", QUICK) as client,
    ):
        chunks: list[Chunk] = []
        await _collect(client, chunks)

    assert [c.text for c in chunks] == ["Well ", "met", ""]
    assert chunks[-1].finish_reason == "stop"
    assert engine.requests[0]["stream"] is True
    assert engine.requests[0]["model"] == "gold"


@pytest.mark.asyncio
async def test_error_event_mid_stream_raises_http_error_with_the_partial_text() -> None:
    error = {"error": {"message": "engine overloaded", "type": "server_error", "code": 503}}

    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + sse_event("a") + b"data: " + json.dumps(error).encode() + b"\n\n")

    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", QUICK) as client,
    ):
        with pytest.raises(EngineHTTPError) as exc_info:
            await _collect(client, [])

    assert exc_info.value.status == 503
    assert exc_info.value.retryable
    assert exc_info.value.text == "a"


@pytest.mark.asyncio
async def test_stream_cut_before_the_answer_finished_raises_unavailable() -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + sse_event("half an ans"))

    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", QUICK) as client,
    ):
        with pytest.raises(EngineUnavailable) as exc_info:
            await _collect(client, [])

    assert exc_info.value.text == "half an ans"


@pytest.mark.asyncio
async def test_stream_closed_after_finish_reason_without_done_is_complete() -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + sse_event("ok") + sse_event(finish_reason="stop"))

    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", QUICK) as client,
    ):
        chunks: list[Chunk] = []
        await _collect(client, chunks)

    assert "".join(c.text for c in chunks) == "ok"


@pytest.mark.asyncio
async def test_garbage_in_a_200_answer_is_a_protocol_error() -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(json_response(200, b"<html>proxy login</html>", "OK"))

    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", QUICK) as client,
    ):
        with pytest.raises(EngineProtocolError):
            await client.chat(HELLO, max_tokens=4)


@pytest.mark.asyncio
async def test_chat_sends_only_the_fields_given_and_parses_tool_calls() -> None:
    answer = {
        "model": "silver",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "open_door", "arguments": '{"door":"N"}'},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7},
    }

    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(json_response(200, answer, "OK"))

    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url + "/v1/", "silver", QUICK, api_key="k", engine="vllm") as c,
    ):
        completion = await c.chat(HELLO, max_tokens=4, stop=["\n"], extra={"seed": 7})

    assert engine.requests == [
        {"model": "silver", "messages": HELLO, "max_tokens": 4, "stop": ["\n"], "seed": 7}
    ]
    assert completion.text == ""
    assert completion.finish_reason == "tool_calls"
    assert [(t.id, t.name, t.arguments) for t in completion.tool_calls] == [
        ("call_1", "open_door", '{"door":"N"}')
    ]
    assert (completion.prompt_tokens, completion.completion_tokens) == (12, 7)


@pytest.mark.asyncio
async def test_health_of_an_engine_answering_503_is_not_ok() -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(json_response(503, {"detail": "loading"}, "Service Unavailable"))

    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", QUICK) as client,
    ):
        result = await client.health()

    assert not result.ok and not result.timed_out
    assert result.detail.startswith("HTTP 503")


@pytest.mark.asyncio
async def test_health_of_an_engine_that_never_answers_times_out_without_raising() -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    timeouts = Timeouts(health=0.2)
    async with (
        ScriptedEngine(script) as engine,
        EngineClient(engine.base_url, "gold", timeouts) as c,
    ):
        result = await c.health()
        # Busy, not gone: its port still takes connections.
        port = await c.listening()

    assert not result.ok and result.timed_out
    assert result.latency_ms < 1000
    assert port.ok


@pytest.mark.asyncio
async def test_a_port_nobody_listens_on_is_not_listening() -> None:
    async with EngineClient(f"http://127.0.0.1:{free_port()}", "gold", QUICK) as client:
        result = await client.listening()

    assert not result.ok and not result.timed_out
    assert "refused" in result.detail.lower()


def test_json_schema_is_rewritten_for_llama_cpp_only() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    openai_form = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}

    assert translate_response_format("cpu", openai_form) == {
        "type": "json_object",
        "schema": schema,
    }
    assert translate_response_format("vllm", openai_form) is openai_form
    assert translate_response_format("trtllm", openai_form) is openai_form
    assert translate_response_format("cpu", {"type": "text"}) == {"type": "text"}
    assert translate_response_format("cpu", None) is None
    with pytest.raises(ValueError, match="sglang"):
        translate_response_format("sglang", openai_form)


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (404, False), (408, True), (429, True), (500, True)]
)
def test_only_server_side_http_errors_are_retryable(status: int, retryable: bool) -> None:
    assert EngineHTTPError(status, "").retryable is retryable


def test_get_client_pools_per_event_loop_and_never_across_loops() -> None:
    async def twice() -> tuple[EngineClient, EngineClient, EngineClient]:
        a = get_client("http://127.0.0.1:1", "gold", QUICK)
        b = get_client("http://127.0.0.1:1", "gold", QUICK)
        other = get_client("http://127.0.0.1:1", "silver", QUICK)
        return a, b, other

    first, same, other_model = asyncio.run(twice())
    second, _, _ = asyncio.run(twice())

    assert first is same
    assert other_model is not first
    assert second is not first  # a new loop (as async_to_sync may create) gets its own pool


def test_get_client_replaces_a_closed_client() -> None:
    async def scenario() -> tuple[EngineClient, EngineClient]:
        old = get_client("http://127.0.0.1:1", "gold", QUICK)
        await old.aclose()
        return old, get_client("http://127.0.0.1:1", "gold", QUICK)

    old, new = asyncio.run(scenario())

    assert new is not old
    assert not new.closed


def test_get_client_outside_an_event_loop_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        get_client("http://127.0.0.1:1", "gold", QUICK)


def test_client_for_a_vllm_profile_probes_health_and_keeps_openai_response_format() -> None:
    from inference.profiles import get_profile

    async def build() -> tuple[str, str, str | None, str]:
        async with EngineClient.from_profile(get_profile("silver", "vllm"), QUICK, port=9102) as c:
            return c.base_url, c.model, c.engine, c.health_path

    assert asyncio.run(build()) == ("http://127.0.0.1:9102", "silver", "vllm", "/health")
