"""Pushing events to websocket clients from anywhere: views, services, Celery tasks.

``broadcast(group, event)`` sends to a Channels group once the current database transaction
commits (at once outside a transaction), so clients never hear about a row they cannot read yet,
nor about one a rollback undid. ``event`` is a channel-layer message: a dict whose ``type``
names the consumer method that handles it (``"job.update"`` → ``job_update``).

On the embedded default the channel layer lives in one process, so only consumers in the process
that broadcasts hear it; with ``REDIS_URL`` set every web process does.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def _send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:  # a push is best-effort: the state is already committed and readable
        logger.exception("broadcast to %s failed", group)


def broadcast(group: str, event: dict[str, Any]) -> None:
    """Send ``event`` to ``group`` after the current transaction commits."""
    transaction.on_commit(lambda: _send(group, event))


async def abroadcast(group: str, event: dict[str, Any]) -> None:
    """The same from async code that holds no transaction (consumers, async views)."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, event)
