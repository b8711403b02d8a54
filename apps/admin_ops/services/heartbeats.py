"""Writes for the workers' heartbeats."""

from __future__ import annotations

from django.db import close_old_connections
from django.utils import timezone

from apps.admin_ops.models import WorkerHeartbeat

# --- workers --------------------------------------------------------------------------------


def worker_heartbeat_record(
    *, hostname: str, queues: list[str], active: int = 0
) -> WorkerHeartbeat:
    """Upsert this worker's heartbeat. Called from the worker's timer thread, hence the
    connection hygiene: a dropped database connection must not silence the heartbeat forever."""
    close_old_connections()
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={"queues": queues, "active": active, "last_seen": timezone.now()},
    )
    return heartbeat
