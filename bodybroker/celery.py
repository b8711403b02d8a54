"""The Celery application: configured from Django settings (``CELERY_*``), tasks autodiscovered.

The worker also runs :class:`HeartbeatStep`, which records that it is alive every few seconds so
``/health/`` can tell a running worker from a reachable-but-unattended broker on every broker,
including the filesystem broker of the embedded default that has no remote control.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bodybroker.settings.base")

app = Celery("bodybroker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class HeartbeatStep(bootsteps.StartStopStep):
    """Writes this worker's heartbeat row on start and then every BODYBROKER_WORKER_HEARTBEAT_S."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        from django.conf import settings

        self._beat(worker)
        self.tref = worker.timer.call_repeatedly(
            settings.BODYBROKER_WORKER_HEARTBEAT_S, self._beat, (worker,), priority=10
        )

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def _beat(self, worker: Any) -> None:
        from celery.worker import state

        from apps.admin_ops.services import worker_heartbeat_record

        queues = sorted(q.name for q in worker.app.amqp.queues.consume_from.values())
        worker_heartbeat_record(
            hostname=worker.hostname, queues=queues, active=len(state.active_requests)
        )


app.steps["worker"].add(HeartbeatStep)
