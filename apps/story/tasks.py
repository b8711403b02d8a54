"""Celery tasks of the lore workspace: indexing published lore, collecting storyteller jobs."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings

from apps.story import services

logger = logging.getLogger(__name__)

COLLECT_EVERY_S = 2.0


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=5,
    soft_time_limit=300,
    time_limit=330,
)
def index_lore_entry(self: Any, entry_id: int) -> int:
    """Index the published revision of one entry. Idempotent: passages are replaced whole, so a
    redelivery or a second publish only redoes the same work."""
    try:
        return services.lore_entry_index(entry_id=entry_id)
    except (ConnectionError, TimeoutError) as exc:  # a backend server away for a moment
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc


@shared_task(bind=True, acks_late=True, max_retries=None, soft_time_limit=60, time_limit=90)
def collect_story_job(self: Any, story_job_id: str) -> str:
    """Turn a storyteller job's finished Bronze job into its draft or report.

    Until the router can call back when a job of a kind finishes, this re-schedules itself
    (a countdown, not a sleeping worker) while the Bronze job runs, for at most three Bronze
    timeouts; the job's own expiry ends it after that. Idempotent (the service locks the row).
    """
    story_job = services.storyteller_job_collect(story_job_id=story_job_id)
    if story_job.collected_at is not None:
        return story_job.state
    give_up_after = settings.BODYBROKER_BRONZE_TIMEOUT_S * 3 / COLLECT_EVERY_S
    if self.request.retries >= give_up_after:
        logger.warning("storyteller job %s: its Bronze job never finished", story_job_id)
        return story_job.state
    raise self.retry(countdown=COLLECT_EVERY_S)
