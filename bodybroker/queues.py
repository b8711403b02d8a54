"""Celery queues, named in one place.

- ``bronze``: expert jobs (story arcs, audits, reports) — slow, long-running, retried.
- ``default``: short housekeeping (expiry, roll-ups).
- ``distill``: nightly distillation of Bronze traces into Silver/Gold adapters.
"""

from kombu import Queue

BRONZE_QUEUE = "bronze"
DEFAULT_QUEUE = "default"
DISTILL_QUEUE = "distill"
ALL_QUEUES = (BRONZE_QUEUE, DEFAULT_QUEUE, DISTILL_QUEUE)

CELERY_TASK_QUEUES = tuple(Queue(name, routing_key=name) for name in ALL_QUEUES)
CELERY_TASK_ROUTES = {
    "apps.router.tasks.run_bronze_job": {"queue": BRONZE_QUEUE},
    "apps.router.tasks.fail_stale_jobs": {"queue": DEFAULT_QUEUE},
}
