"""``/ws/jobs/``: live progress and completion of Bronze jobs.

Client frames: ``{"type": "job.subscribe", "job_id": …}`` and ``job.unsubscribe``; the server
answers with ``job.update`` frames (the same shape as ``GET /api/v1/jobs/<id>``'s summary) now
and at each transition. Workers announce transitions through the channel layer; on the embedded
default that layer lives in one process, so the consumer also re-reads its subscribed jobs every
second and sends what changed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer

from apps.router import selectors, services
from apps.security.scopes import ADMIN, JOBS
from apps.security.websocket import KeyBoundConsumer

MAX_SUBSCRIPTIONS = 50
POLL_S = 1.0


@database_sync_to_async
def _job_event(scope: dict[str, Any], job_id: str) -> dict[str, Any] | None:
    user = scope.get("user")
    key = scope.get("api_key")
    jobs = selectors.jobs_visible_to(
        user=None if key else user, key=key, sees_all=ADMIN in scope.get("scopes", ())
    )
    job = jobs.filter(pk=job_id).first()
    return None if job is None else services.job_event(job)


class JobConsumer(KeyBoundConsumer):
    async def connect(self) -> None:
        if JOBS not in self.scope.get("scopes", frozenset()):
            await self.close()
            return
        self.jobs: dict[str, dict[str, Any]] = {}
        self.poller: asyncio.Task[None] | None = None
        await self.follow_key()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "poller", None) is not None:
            self.poller.cancel()  # type: ignore[union-attr]
        for job_id in list(getattr(self, "jobs", {})):
            await self.channel_layer.group_discard(services.job_group(job_id), self.channel_name)
        await self.unfollow_key()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data or "")
        except json.JSONDecodeError:
            await self._error("invalid_json", "frames are JSON objects")
            return
        if not isinstance(message, dict):
            await self._error("bad_frame", "frames are JSON objects")
            return
        kind, job_id, ref = message.get("type"), message.get("job_id"), message.get("ref")
        if kind not in ("job.subscribe", "job.unsubscribe"):
            await self._error("unknown_type", f"unknown message type {kind!r}", ref)
            return
        if not isinstance(job_id, str) or not _is_uuid(job_id):
            await self._error("bad_field", "'job_id' must be a job's id", ref)
            return
        if kind == "job.unsubscribe":
            self.jobs.pop(job_id, None)
            await self.channel_layer.group_discard(services.job_group(job_id), self.channel_name)
            return
        if len(self.jobs) >= MAX_SUBSCRIPTIONS:
            await self._error("too_many", f"at most {MAX_SUBSCRIPTIONS} jobs per socket", ref)
            return
        event = await _job_event(self.scope, job_id)
        if event is None:
            await self._error("not_found", "no such job", ref)
            return
        self.jobs[job_id] = event
        await self.channel_layer.group_add(services.job_group(job_id), self.channel_name)
        await self._send(event)
        if isinstance(self.channel_layer, InMemoryChannelLayer) and self.poller is None:
            self.poller = asyncio.create_task(self._poll())

    async def job_update(self, event: dict[str, Any]) -> None:
        job_id = event["job_id"]
        if job_id in self.jobs and self.jobs[job_id] != event:
            self.jobs[job_id] = event
            await self._send(event)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            for job_id in list(self.jobs):
                event = await _job_event(self.scope, job_id)
                if event is not None:
                    await self.job_update(event)

    async def _send(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(event))

    async def _error(self, code: str, message: str, ref: Any = None) -> None:
        await self._send({"type": "error", "code": code, "message": message, "ref": ref})


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
