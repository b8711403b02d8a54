"""Writes for the audit log: one append-only event per action, and the hooks other apps call
to record theirs.
"""

from __future__ import annotations

from typing import Any

from apps.admin_ops.actors import SYSTEM, Actor, current_actor, current_request_id
from apps.admin_ops.models import AuditEvent
from apps.admin_ops.services._common import _summarise
from apps.security.models import ApiKey

# --- audit log ------------------------------------------------------------------------------


def audit_record(
    *,
    action: str,
    target: str = "",
    actor: Actor | None = None,
    before: Any = None,
    after: Any = None,
    summary: str = "",
) -> AuditEvent:
    """Append one audit event. Locks nothing, emits nothing; joins the caller's transaction, so
    a rolled-back action leaves no event behind.

    ``actor`` defaults to the one the current request set (see ``actors.actor_context``), then
    to the system; the request id comes from the same context.
    """
    who = actor or current_actor() or SYSTEM
    return AuditEvent.objects.create(
        actor_type=who.kind,
        actor_label=who.label[:200],
        actor_user=who.user if who.user is not None and who.user.pk else None,
        actor_key=who.key,
        actor_tier=who.tier,
        action=action,
        target=target[:200],
        before=_summarise(before),
        after=_summarise(after),
        summary=summary[:500],
        request_id=current_request_id()[:64],
    )


# --- audit hooks other apps call ------------------------------------------------------------


def audit_api_key(*, key: ApiKey, action: str) -> AuditEvent:
    """Audit a key's creation or revocation: the actor is whoever the current request names
    (a person in the admin, a command), the target the key, never its secret."""
    return audit_record(
        action=action,
        target=f"api_key:{key.prefix}",
        after={
            "name": key.name,
            "scopes": list(key.scopes),
            "owner": key.owner.get_username() if key.owner_id and key.owner else None,
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
            "requests_per_minute": key.requests_per_minute,
            "tokens_per_minute": key.tokens_per_minute,
            "daily_budget_usd": key.daily_budget_usd,
        },
    )


def audit_job_submit(*, job: Any) -> AuditEvent:
    """Audit a Bronze job submission, by the person or key that submitted it."""
    actor = (
        Actor(user=job.submitted_by_user, key=job.submitted_by_key)
        if job.submitted_by_user is not None or job.submitted_by_key is not None
        else None
    )
    return audit_record(
        action="job.submit",
        target=f"job:{job.id}",
        actor=actor,
        after={"kind": job.kind, "max_tokens": job.request.get("max_tokens")},
    )
