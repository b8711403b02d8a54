"""The channel layer that carries pushed intents to game sockets, on Redis as in production."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer


async def test_a_socket_waiting_longer_than_one_blocking_pop_does_not_fail(settings: Any) -> None:
    """A game socket that gets no push for a while keeps waiting; it must not die.

    channels-redis waits with BZPOPMIN for ``brpop_timeout`` (5 s) at a time; with redis-py's
    default 5 s read timeout the read timed out first and the socket died with
    ``redis.exceptions.TimeoutError``.
    """
    if not settings.REDIS_URL:
        pytest.skip("the in-memory channel layer of the embedded default has no read timeout")
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(layer.brpop_timeout + 1.5)  # past one whole blocking pop
    assert not waiting.done(), waiting.exception() if waiting.done() else None
    await layer.send(channel, {"type": "npc.intents", "intents": [{"npc_id": "pell"}]})
    message = await asyncio.wait_for(waiting, 5)
    assert message["intents"] == [{"npc_id": "pell"}]
