"""The channel layer that carries pushed intents to game sockets, on Redis as in production."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer

from apps.router.metrics import REGISTRY
from bodybroker.channel_layer import BoundedPubSubChannelLayer


def _dropped() -> float:
    return REGISTRY.get_sample_value("bodybroker_channel_messages_dropped_total") or 0.0


@pytest.fixture
def layer(settings: Any) -> BoundedPubSubChannelLayer:
    if not settings.REDIS_URL:
        pytest.skip("the embedded default uses the in-memory channel layer")
    found = get_channel_layer()
    assert isinstance(found, BoundedPubSubChannelLayer)
    return found


async def test_a_socket_waiting_longer_than_a_redis_read_timeout_does_not_fail(
    layer: BoundedPubSubChannelLayer,
) -> None:
    """A game socket that gets no push for a while keeps waiting; it must not die.

    redis-py 8 times a read out after 5 s by default; with channels-redis' core layer that
    killed every socket without a push for 5 s (``redis.exceptions.TimeoutError``).
    """
    channel = await layer.new_channel()
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(6.5)
    assert not waiting.done(), waiting.exception() if waiting.done() else None
    await layer.send(channel, {"type": "npc.intents", "intents": [{"npc_id": "pell"}]})
    message = await asyncio.wait_for(waiting, 5)
    assert message["intents"] == [{"npc_id": "pell"}]


async def test_one_group_message_reaches_every_socket_of_the_group_in_this_process(
    layer: BoundedPubSubChannelLayer,
) -> None:
    first, second, other = [await layer.new_channel() for _ in range(3)]
    await layer.group_add("npc-intents.test", first)
    await layer.group_add("npc-intents.test", second)

    await layer.group_send("npc-intents.test", {"type": "npc.intents", "intents": []})

    for channel in (first, second):
        message = await asyncio.wait_for(layer.receive(channel), 5)
        assert message["type"] == "npc.intents"
    quiet = asyncio.ensure_future(layer.receive(other))
    await asyncio.sleep(0.3)
    assert not quiet.done()
    quiet.cancel()
    for channel in (first, second):
        await layer.group_discard("npc-intents.test", channel)
        await layer.discard_channel(channel)


async def test_a_socket_that_stops_reading_keeps_only_the_newest_messages(
    layer: BoundedPubSubChannelLayer,
) -> None:
    """A stalled client must not hold every push sent to it: past the capacity the oldest go."""
    channel = await layer.new_channel()
    dropped_before = _dropped()
    capacity = layer.capacity
    for n in range(capacity + 5):
        await layer.send(channel, {"type": "npc.intents", "n": n})
    # Messages arrive through the subscription a moment after they are published.
    queue = layer._get_layer().channels[channel]
    for _ in range(100):
        if _dropped() - dropped_before >= 5:
            break
        await asyncio.sleep(0.05)

    assert queue.qsize() == capacity
    assert _dropped() - dropped_before == 5
    first = await asyncio.wait_for(layer.receive(channel), 5)
    assert first["n"] == 5
    await layer.discard_channel(channel)
    assert channel not in layer._get_layer().channels


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        BoundedPubSubChannelLayer(hosts=["redis://127.0.0.1:6379/0"], capacity=0)
