"""Operational state the processes share through the database."""

from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    """The last time each Celery worker said it was alive, and which queues it consumes."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ("-last_seen",)

    def __str__(self) -> str:
        return f"{self.hostname} @ {self.last_seen:%H:%M:%S}"
