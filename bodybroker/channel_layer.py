"""The channel layer on Redis: channels-redis' pub/sub layer, with a bound on each channel.

Why pub/sub: the intent updater sends one group message per push group per pass. With
``channels_redis.core`` each ``group_send`` costs three sequential Redis commands (expire old
members, read the members, a script that queues the message for each), so the groups of one
pass go out one after another, and the receiving web process then pops its messages with
BZPOPMIN. With pub/sub a ``group_send`` is one PUBLISH, and each subscribed web process gets
the message pushed once and hands it to its sockets in memory: shorter push delays and less
web CPU per NPC message under ``bench/npcs.py`` (figures in ``docs/npcs.md``).

Why the bound: the pub/sub layer keeps each channel's messages in an unbounded queue, so a
socket that stops reading (a stalled client) would hold every push sent to it. Here a channel
keeps at most ``capacity`` messages (100, as the core layer's default) and drops the oldest:
pushes are current intents, and the newest are the ones worth keeping.

Pub/sub delivers only to processes subscribed at the moment of sending. Everything this
project sends goes to groups of live sockets (intents, job progress, approvals), which is what
that fits.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close
from prometheus_client import Counter

from apps.router.metrics import REGISTRY

DEFAULT_CAPACITY = 100

DROPPED = Counter(
    "bodybroker_channel_messages_dropped",
    "Channel-layer messages dropped because the receiving socket's queue was full",
    registry=REGISTRY,
)


class DropOldestQueue(asyncio.Queue[Any]):
    """A bounded queue whose ``put_nowait`` makes room by dropping the oldest item."""

    def put_nowait(self, item: Any) -> None:
        if self.full():
            self.get_nowait()
            DROPPED.inc()
        super().put_nowait(item)


class _BoundedLoopLayer(RedisPubSubLoopLayer):  # type: ignore[misc]
    def __init__(self, *args: Any, capacity: int = DEFAULT_CAPACITY, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capacity = capacity

    async def _subscribe_to_channel(self, channel: str) -> None:
        self.channels[channel] = DropOldestQueue(maxsize=self.capacity)
        await self._get_shard(channel).subscribe(channel)

    async def discard_channel(self, channel: str) -> None:
        """Forget a channel nobody will receive on again (consumers need not: cancelling their
        ``receive`` does the same)."""
        if self.channels.pop(channel, None) is not None:
            await self._get_shard(channel).unsubscribe(channel)


class BoundedPubSubChannelLayer(RedisPubSubChannelLayer):  # type: ignore[misc]
    """``channels_redis.pubsub.RedisPubSubChannelLayer`` whose channels hold at most
    ``capacity`` messages (``CONFIG: {"capacity": N}``)."""

    def __init__(self, *args: Any, capacity: int = DEFAULT_CAPACITY, **kwargs: Any) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        super().__init__(*args, **kwargs)
        self.capacity = capacity

    async def discard_channel(self, channel: str) -> None:
        await self._get_layer().discard_channel(channel)

    def _get_layer(self) -> _BoundedLoopLayer:
        # As the parent's, with the bounded loop layer: one per event loop, closed with it.
        loop = asyncio.get_running_loop()
        layer: _BoundedLoopLayer | None = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _BoundedLoopLayer(
                *self._args, **self._kwargs, channel_layer=self, capacity=self.capacity
            )
            _wrap_close(self, loop)
        return layer
