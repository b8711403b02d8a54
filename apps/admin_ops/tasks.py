"""Celery tasks of operations: executing approved change requests, expiring open ones."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task

from apps.admin_ops import services

logger = logging.getLogger(__name__)

EXECUTION_SOFT_LIMIT_S = 300
STUCK_AFTER = timedelta(seconds=EXECUTION_SOFT_LIMIT_S * 2)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=EXECUTION_SOFT_LIMIT_S,
    time_limit=EXECUTION_SOFT_LIMIT_S + 30,
)
def execute_change_request(change_request_id: str) -> str | None:
    """Execute one approved change request. Idempotent: the claim lets one delivery run it;
    duplicates and redeliveries find nothing to claim. Never retried (at most once)."""
    change_request = services.change_request_execute(change_request_id=change_request_id)
    if change_request is None:
        logger.info("change request %s is not approved (or already ran)", change_request_id)
        return None
    return str(change_request.status)


@shared_task
def expire_change_requests() -> int:
    """Expire open requests past their expiry; fail ones a lost worker left executing."""
    expired = services.change_requests_expire()
    services.change_requests_fail_stuck(older_than=STUCK_AFTER)
    return expired
