"""Writes for change requests: checks, opening, deciding, revising, executing, expiring.

Change request rules (the approval gate of ARCHITECTURE.md): the author never approves; an
approval counts only for the revision it was given on; expired requests never execute;
execution is a Celery task that claims the request once and re-checks the target first.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.admin_ops.actors import SYSTEM, Actor
from apps.admin_ops.kinds import (
    TARGET_PATTERN,
    ChangeKind,
    UnknownKindError,
    canonical_json,
    content_hash,
    get_kind,
)
from apps.admin_ops.models import (
    OPEN_STATUSES,
    ChangeRequest,
    ChangeRequestDecision,
    ChangeRequestStatus,
    Decision,
)
from apps.admin_ops.services._common import _summarise
from apps.admin_ops.services.audit import audit_record
from apps.security.models import ApiKey
from apps.security.scopes import ADMIN
from bodybroker.broadcast import broadcast

logger = logging.getLogger(__name__)


APPROVALS_GROUP = "approvals"
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_REASON_CHARS = 2000
MAX_COMMENT_CHARS = 2000


class ChangeRequestError(Exception):
    """A change request action that cannot be done; ``code`` maps to an HTTP status.

    ``invalid`` → 400 (``field`` names the input), ``forbidden`` → 403, ``conflict`` → 409.
    """

    def __init__(self, message: str, *, code: str = "invalid", field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


# --- change requests: checks ----------------------------------------------------------------


def _kind(name: str) -> ChangeKind:
    try:
        return get_kind(name)
    except UnknownKindError:
        from apps.admin_ops.kinds import KINDS

        raise ChangeRequestError(
            f"unknown kind {name!r}; choose from {', '.join(sorted(KINDS))}", field="kind"
        ) from None


def check_may_request(*, kind: str, scopes: frozenset[str]) -> ChangeKind:
    """The caller's scopes must include the kind's ``request_scope`` (``admin`` may ask for any)."""
    declared = _kind(kind)
    if declared.request_scope not in scopes and ADMIN not in scopes:
        raise ChangeRequestError(
            f"requesting '{kind}' needs the '{declared.request_scope}' scope",
            code="forbidden",
        )
    return declared


def check_may_reject(change_request: ChangeRequest, *, user: Any, scopes: frozenset[str]) -> None:
    """A person rejects: one holding the kind's ``decide_scope``, or the author withdrawing."""
    kind = _kind(change_request.kind)
    if not getattr(user, "pk", None):
        raise ChangeRequestError("decisions are made by a person", code="forbidden")
    if kind.decide_scope not in scopes and not is_author(change_request, user):
        raise ChangeRequestError(
            f"deciding needs the '{kind.decide_scope}' scope", code="forbidden"
        )


def check_may_revise(
    change_request: ChangeRequest, *, actor: Actor, scopes: frozenset[str], amending: bool
) -> None:
    """Only the author amends the payload; the author or a decider refreshes the diff."""
    kind = _kind(change_request.kind)
    person = actor.person
    own = (actor.key is not None and actor.key.pk == change_request.author_key_id) or (
        person is not None and is_author(change_request, person)
    )
    if amending and not own:
        raise ChangeRequestError("only the author can amend the payload", code="forbidden")
    if not own and kind.decide_scope not in scopes:
        raise ChangeRequestError("refreshing needs the author or a decider", code="forbidden")


def _check_input(kind: ChangeKind, target: str, payload: Any, reason: str | None) -> dict[str, Any]:
    if not TARGET_PATTERN.match(target) or target.split(":", 1)[0] not in kind.target_prefixes:
        raise ChangeRequestError(
            f"a '{kind.name}' target looks like {kind.target_help}", field="target"
        )
    if not isinstance(payload, dict):
        raise ChangeRequestError("the payload is a JSON object", field="payload")
    if len(canonical_json(payload).encode()) > MAX_PAYLOAD_BYTES:
        raise ChangeRequestError(
            f"the payload is limited to {MAX_PAYLOAD_BYTES} bytes", field="payload"
        )
    if reason is not None and not reason.strip():
        raise ChangeRequestError("say why this change is needed", field="reason")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise ChangeRequestError(f"at most {MAX_REASON_CHARS} characters", field="reason")
    if kind.validate is not None:
        try:
            kind.validate(target, payload)
        except ValueError as exc:
            raise ChangeRequestError(str(exc), field="payload") from exc
    return payload


def _read_target(kind: ChangeKind, target: str) -> Any:
    if kind.read_target is None:
        return None
    try:
        return kind.read_target(target)
    except ChangeRequestError:
        raise
    except Exception as exc:
        raise ChangeRequestError(
            f"could not read the current state of {target}: {exc}", code="conflict", field="target"
        ) from exc


# The diff of a request that would change nothing: such a request is refused when it is asked
# for, and one that became a no-op (its target moved to what it proposes) cannot be approved.
NO_CHANGE_DIFF = "(no change)\n"


def _pretty(value: Any) -> list[str]:
    """The state as indented JSON, except that a string of several lines (a lore body, a
    prompt) is written out line by line between triple quotes, so a diff shows which of its
    lines changed instead of one long line."""
    if value is None:
        return []
    texts: list[str] = []
    # Each multi-line string is swapped for a marker no input can forge (a fresh nonce).
    nonce = secrets.token_hex(8)

    def mark(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: mark(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [mark(v) for v in item]
        if isinstance(item, str) and "\n" in item:
            texts.append(item)
            return f"{nonce}:{len(texts) - 1}"
        return item

    marker = re.compile(rf'"{nonce}:(\d+)"')
    lines: list[str] = []
    for line in json.dumps(mark(value), indent=2, sort_keys=True, default=str).splitlines():
        found = marker.search(line)
        if found is None:
            lines.append(line + "\n")
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        lines.append(line[: found.start()] + '"""\n')
        text = texts[int(found.group(1))]
        lines.extend(f"{indent}{part}".rstrip() + "\n" for part in text.split("\n"))
        lines.append(indent[:-2] + '"""' + line[found.end() :] + "\n")
    return lines


def _snapshot(kind: ChangeKind, target: str, payload: dict[str, Any]) -> dict[str, str]:
    """The diff and revisions of ``payload`` against the target as it is now."""
    current = _read_target(kind, target)
    proposed = kind.preview(target, payload, current) if kind.preview is not None else payload
    diff = "".join(
        difflib.unified_diff(
            _pretty(current),
            _pretty(proposed),
            fromfile=f"{target} (current)",
            tofile=f"{target} (proposed)",
        )
    )
    base = content_hash(current)
    revision = content_hash({"kind": kind.name, "target": target, "payload": payload, "base": base})
    return {"diff": diff or NO_CHANGE_DIFF, "base_revision": base, "revision": revision}


def changes_nothing(change_request: ChangeRequest) -> bool:
    """Whether the request's diff is empty: approving it would change nothing."""
    return change_request.diff in ("", NO_CHANGE_DIFF)


def target_is_stale(change_request: ChangeRequest) -> bool:
    """Whether the target changed since the request's diff was made."""
    kind = _kind(change_request.kind)
    return content_hash(_read_target(kind, change_request.target)) != change_request.base_revision


def is_author(change_request: ChangeRequest, user: Any) -> bool:
    """Whether ``user`` wrote the request, directly or through a key they own."""
    if user is None or not user.pk:
        return False
    if change_request.author_user_id == user.pk:
        return True
    key = change_request.author_key
    return key is not None and key.owner_id == user.pk


@dataclass(frozen=True)
class Blocker:
    """Why someone cannot approve: ``forbidden`` for who they are, else the request's state."""

    reason: str
    forbidden: bool = False

    def __str__(self) -> str:
        return self.reason


def approval_blockers(
    change_request: ChangeRequest, user: Any, scopes: frozenset[str]
) -> list[Blocker]:
    """Every reason ``user`` cannot approve ``change_request`` now; empty if they can."""
    blockers: list[Blocker] = []
    kind = _kind(change_request.kind)
    is_person = user is not None and bool(getattr(user, "pk", None))
    if not is_person:
        blockers.append(Blocker("decisions are made by a person (this key has no owner)", True))
    if kind.decide_scope not in scopes:
        blockers.append(
            Blocker(f"deciding needs the '{kind.decide_scope}' scope, which your role lacks", True)
        )
    if is_author(change_request, user):
        blockers.append(Blocker("you wrote this request; someone else must approve it", True))
    if change_request.status != ChangeRequestStatus.PENDING:
        blockers.append(Blocker(f"it is {change_request.status}, not pending"))
        return blockers
    if change_request.expires_at <= timezone.now():
        blockers.append(Blocker(f"it expired at {change_request.expires_at:%Y-%m-%d %H:%M} UTC"))
    if changes_nothing(change_request):
        blockers.append(
            Blocker("it changes nothing: the target already is as it proposes; reject it instead")
        )
    if (
        is_person
        and ChangeRequestDecision.objects.filter(
            change_request=change_request,
            user=user,
            revision=change_request.revision,
            decision=Decision.APPROVE,
        ).exists()
    ):
        blockers.append(Blocker("you already approved this revision"))
    try:
        stale = target_is_stale(change_request)
    except ChangeRequestError as exc:
        blockers.append(Blocker(exc.message))
    else:
        if stale:
            blockers.append(
                Blocker(
                    "stale revision: the target changed since this diff was made; "
                    "refresh it (approvals reset)"
                )
            )
    return blockers


def current_approvals(change_request: ChangeRequest) -> list[ChangeRequestDecision]:
    """Approvals given on the request's current revision (earlier ones no longer count)."""
    return list(
        change_request.decisions.filter(
            decision=Decision.APPROVE, revision=change_request.revision
        ).select_related("user")
    )


# --- change requests: writes ----------------------------------------------------------------


def _notify(change_request: ChangeRequest, event: str) -> None:
    broadcast(
        APPROVALS_GROUP,
        {
            "type": "approvals.update",
            "event": event,
            "id": str(change_request.id),
            "kind": change_request.kind,
            "status": change_request.status,
        },
    )


def _state(change_request: ChangeRequest) -> dict[str, Any]:
    return {
        "status": change_request.status,
        "revision": change_request.revision,
        "approvals": len(current_approvals(change_request)),
        "required": change_request.required_approvals,
    }


def change_request_create(
    *,
    kind: str,
    target: str,
    payload: dict[str, Any],
    reason: str,
    actor: Actor,
    scopes: frozenset[str],
) -> ChangeRequest:
    """Open a pending change request with its diff against the target as it is now.

    Checks the actor may request the kind (``scopes``) and the input, and refuses a request
    that would change nothing (``conflict``); reads the target (no lock: the revision hash
    catches any later change). Emits an ``approvals.update`` broadcast
    and a ``change_request.create`` audit event. Never executes anything.
    """
    declared = check_may_request(kind=kind, scopes=scopes)
    _check_input(declared, target, payload, reason)
    snap = _snapshot(declared, target, payload)
    if snap["diff"] == NO_CHANGE_DIFF:
        raise ChangeRequestError(
            f"this request changes nothing: {target} already is as the payload proposes",
            code="conflict",
            field="payload",
        )
    with transaction.atomic():
        change_request = ChangeRequest.objects.create(
            kind=kind,
            target=target,
            payload=payload,
            reason=reason.strip(),
            required_approvals=declared.required_approvals,
            author_user=actor.user if actor.user is not None and actor.user.pk else None,
            author_key=actor.key,
            author_tier=actor.tier,
            author_label=actor.label[:200],
            expires_at=timezone.now() + declared.lifetime,
            **snap,
        )
        audit_record(
            action="change_request.create",
            target=f"change_request:{change_request.id}",
            actor=actor,
            after={"kind": kind, "target": target, "payload": payload, **_state(change_request)},
            summary=reason.strip()[:500],
        )
        _notify(change_request, "created")
    return change_request


def _locked(change_request_id: Any) -> ChangeRequest:
    change_request = (
        ChangeRequest.objects.select_for_update(of=("self",))
        .select_related("author_key", "author_user")
        .filter(pk=change_request_id)
        .first()
    )
    if change_request is None:
        raise ChangeRequestError("no such change request", code="not_found")
    return change_request


def change_request_approve(
    *,
    change_request_id: Any,
    user: Any,
    scopes: frozenset[str],
    comment: str = "",
    via_key: ApiKey | None = None,
) -> ChangeRequest:
    """Record ``user``'s approval of the current revision; at quorum, queue the execution.

    Locks the change request row (SELECT … FOR UPDATE) so two approvers cannot both complete
    the quorum. Raises ``ChangeRequestError`` with every blocker (author, expired, stale, not
    pending, no scope). Emits ``change_request.approve`` (and ``change_request.approved`` at
    quorum) audit events, an ``approvals.update`` broadcast, and — on commit — the execution task.
    """
    if len(comment) > MAX_COMMENT_CHARS:
        raise ChangeRequestError(f"at most {MAX_COMMENT_CHARS} characters", field="comment")
    with transaction.atomic():
        change_request = _locked(change_request_id)
        blockers = approval_blockers(change_request, user, scopes)
        if blockers:
            raise ChangeRequestError(
                "cannot approve: " + "; ".join(b.reason for b in blockers),
                code="forbidden" if any(b.forbidden for b in blockers) else "conflict",
            )
        ChangeRequestDecision.objects.create(
            change_request=change_request,
            decision=Decision.APPROVE,
            user=user,
            via_key=via_key,
            revision=change_request.revision,
            comment=comment.strip(),
        )
        actor = Actor(user=user, key=via_key)
        approvals = current_approvals(change_request)
        audit_record(
            action="change_request.approve",
            target=f"change_request:{change_request.id}",
            actor=actor,
            after=_state(change_request),
            summary=comment.strip()[:500],
        )
        if len({a.user_id for a in approvals}) >= change_request.required_approvals:
            before = _state(change_request)
            change_request.status = ChangeRequestStatus.APPROVED
            change_request.approved_at = timezone.now()
            change_request.executed_on_behalf_of = user
            change_request.save(
                update_fields=["status", "approved_at", "executed_on_behalf_of", "updated_at"]
            )
            audit_record(
                action="change_request.approved",
                target=f"change_request:{change_request.id}",
                actor=actor,
                before=before,
                after=_state(change_request),
                summary=f"approved by {', '.join(a.user.get_username() for a in approvals)}",
            )
            from apps.admin_ops.tasks import execute_change_request

            request_id = str(change_request.id)
            transaction.on_commit(lambda: execute_change_request.delay(request_id))
        _notify(change_request, "approved")
    return change_request


def change_request_reject(
    *,
    change_request_id: Any,
    user: Any,
    scopes: frozenset[str],
    comment: str,
    via_key: ApiKey | None = None,
) -> ChangeRequest:
    """Reject a pending or approved (not yet running) request, for good, with a comment.

    The author may reject (withdraw) their own request. Locks the row. Emits a
    ``change_request.reject`` audit event, an ``approvals.update`` broadcast and the kind's
    ``on_closed`` hooks.
    """
    with transaction.atomic():
        change_request = _locked(change_request_id)
        kind = _kind(change_request.kind)
        # Who may reject comes first: a caller who may not gets 403 whatever the comment.
        check_may_reject(change_request, user=user, scopes=scopes)
        if not comment.strip():
            raise ChangeRequestError("say why it is rejected", field="comment")
        if len(comment) > MAX_COMMENT_CHARS:
            raise ChangeRequestError(f"at most {MAX_COMMENT_CHARS} characters", field="comment")
        if change_request.status not in OPEN_STATUSES:
            raise ChangeRequestError(
                f"cannot reject: it is {change_request.status}", code="conflict"
            )
        # One decision per person and revision (the table enforces it): an approver who
        # changed their mind leaves the rejection to another decider or the author.
        if ChangeRequestDecision.objects.filter(
            change_request=change_request, user=user, revision=change_request.revision
        ).exists():
            raise ChangeRequestError(
                f"you already approved revision {change_request.revision}; another decider "
                "or the author can reject it",
                code="conflict",
            )
        before = _state(change_request)
        ChangeRequestDecision.objects.create(
            change_request=change_request,
            decision=Decision.REJECT,
            user=user,
            via_key=via_key,
            revision=change_request.revision,
            comment=comment.strip(),
        )
        change_request.status = ChangeRequestStatus.REJECTED
        change_request.save(update_fields=["status", "updated_at"])
        audit_record(
            action="change_request.reject",
            target=f"change_request:{change_request.id}",
            actor=Actor(user=user, key=via_key),
            before=before,
            after=_state(change_request),
            summary=comment.strip()[:500],
        )
        _closed(kind, change_request)
        _notify(change_request, "rejected")
    return change_request


def _closed(kind: ChangeKind, change_request: ChangeRequest) -> None:
    for hook in kind.on_closed:
        hook(
            target=change_request.target,
            payload=change_request.payload,
            status=change_request.status,
            change_request_id=change_request.id,
        )


def _rebase(change_request: ChangeRequest, payload: dict[str, Any], actor: Actor, why: str) -> bool:
    """Re-make the diff against the target as it is now; True if the revision changed, which
    resets approvals (they are tied to the old revision) and sends the request back to pending."""
    kind = _kind(change_request.kind)
    snap = _snapshot(kind, change_request.target, payload)
    before = _state(change_request)
    changed = snap["revision"] != change_request.revision
    change_request.payload = payload
    change_request.diff = snap["diff"]
    change_request.base_revision = snap["base_revision"]
    change_request.revision = snap["revision"]
    fields = ["payload", "diff", "base_revision", "revision", "updated_at"]
    if changed:
        change_request.status = ChangeRequestStatus.PENDING
        change_request.approved_at = None
        change_request.executed_on_behalf_of = None
        fields += ["status", "approved_at", "executed_on_behalf_of"]
    change_request.save(update_fields=fields)
    if changed:
        audit_record(
            action="change_request.reset",
            target=f"change_request:{change_request.id}",
            actor=actor,
            before=before,
            after=_state(change_request),
            summary=why,
        )
    return changed


def change_request_revise(
    *,
    change_request_id: Any,
    actor: Actor,
    scopes: frozenset[str],
    payload: dict[str, Any] | None = None,
) -> ChangeRequest:
    """Amend the payload (author only) or, with no payload, refresh the diff against the
    target's current state (author or a decider). A new revision resets approvals.

    Locks the row. Emits ``change_request.reset`` when the revision changed, and a broadcast.
    """
    with transaction.atomic():
        change_request = _locked(change_request_id)
        kind = _kind(change_request.kind)
        check_may_revise(change_request, actor=actor, scopes=scopes, amending=payload is not None)
        if change_request.status not in OPEN_STATUSES:
            raise ChangeRequestError(f"it is {change_request.status}", code="conflict")
        if change_request.expires_at <= timezone.now():
            raise ChangeRequestError("it has expired", code="conflict")
        new_payload = payload if payload is not None else change_request.payload
        _check_input(kind, change_request.target, new_payload, None)
        why = "payload amended" if payload is not None else "refreshed against the target"
        _rebase(change_request, new_payload, actor, why)
        _notify(change_request, "revised")
    return change_request


def change_request_execute(*, change_request_id: Any) -> ChangeRequest | None:
    """Run an approved request's executor, at most once. Called by the execution task.

    Claims the request with a conditional UPDATE (``approved`` → ``executing``), so a duplicated
    or redelivered task finds nothing to claim and returns None. Before running it re-checks the
    expiry and the target's revision: an expired request becomes ``expired``; a changed target
    gets a fresh diff and goes back to ``pending`` with its approvals reset. The executor runs
    in a transaction with the ``executed`` record, on behalf of the approver who completed the
    quorum. Emits audit events for the transition and the effect, and broadcasts (once claimed,
    and once finished).
    """
    now = timezone.now()
    claimed = ChangeRequest.objects.filter(
        pk=change_request_id, status=ChangeRequestStatus.APPROVED
    ).update(
        status=ChangeRequestStatus.EXECUTING,
        execution_started_at=now,
        execution_runs=F("execution_runs") + 1,
        updated_at=now,
    )
    if not claimed:
        return None
    change_request = ChangeRequest.objects.select_related("executed_on_behalf_of").get(
        pk=change_request_id
    )
    _notify(change_request, "executing")  # pages waiting on "queued for a worker" move on
    kind = _kind(change_request.kind)
    on_behalf_of = change_request.executed_on_behalf_of
    actor = Actor(user=on_behalf_of) if on_behalf_of is not None else SYSTEM
    target = f"change_request:{change_request.id}"
    if change_request.expires_at <= now:
        with transaction.atomic():
            change_request.status = ChangeRequestStatus.EXPIRED
            change_request.error = "expired before it could run"
            change_request.save(update_fields=["status", "error", "updated_at"])
            audit_record(action="change_request.expire", target=target, actor=SYSTEM)
            _closed(kind, change_request)
            _notify(change_request, "expired")
        return change_request
    try:
        stale = target_is_stale(change_request)
    except ChangeRequestError as exc:
        return _execution_failed(change_request, kind, actor, exc.message)
    if stale:
        with transaction.atomic():
            _rebase(
                change_request,
                change_request.payload,
                SYSTEM,
                "the target changed before execution; approvals reset",
            )
            # A new base always means a new revision, so _rebase sent it back to pending.
            change_request.status = ChangeRequestStatus.PENDING
            change_request.error = "the target changed before execution; review the new diff"
            change_request.save(update_fields=["status", "error", "updated_at"])
            _notify(change_request, "reset")
        return change_request
    if kind.executor is None:
        return _execution_failed(
            change_request, kind, actor, f"no executor is registered for '{kind.name}' yet"
        )
    try:
        with transaction.atomic():
            result = kind.executor(
                target=change_request.target,
                payload=change_request.payload,
                on_behalf_of=on_behalf_of,
                change_request_id=change_request.id,
            )
            change_request.status = ChangeRequestStatus.EXECUTED
            change_request.executed_at = timezone.now()
            change_request.result = _summarise(result)
            change_request.error = ""
            change_request.save(
                update_fields=["status", "executed_at", "result", "error", "updated_at"]
            )
            audit_record(
                action="change_request.execute",
                target=target,
                actor=actor,
                before={"status": ChangeRequestStatus.APPROVED},
                after={"status": change_request.status, "result": change_request.result},
            )
            audit_record(
                action=change_request.kind,
                target=change_request.target,
                actor=actor,
                after=change_request.payload,
                summary=f"executed change request {change_request.short_id}",
            )
            _notify(change_request, "executed")
    except Exception as exc:
        logger.exception("change request %s failed", change_request.id)
        return _execution_failed(change_request, kind, actor, f"{type(exc).__name__}: {exc}")
    return change_request


def _execution_failed(
    change_request: ChangeRequest, kind: ChangeKind, actor: Actor, error: str
) -> ChangeRequest:
    with transaction.atomic():
        change_request.status = ChangeRequestStatus.FAILED
        change_request.executed_at = timezone.now()
        change_request.error = error[:2000]
        change_request.save(update_fields=["status", "executed_at", "error", "updated_at"])
        audit_record(
            action="change_request.fail",
            target=f"change_request:{change_request.id}",
            actor=actor,
            after={"status": change_request.status},
            summary=error[:500],
        )
        _notify(change_request, "failed")
    return change_request


def change_requests_expire(*, now: Any = None) -> int:
    """Mark open requests past their expiry ``expired``; returns how many.

    Each row is moved with a conditional UPDATE (so a request being approved at the same moment
    is either approved first or expired, never both). Emits a ``change_request.expire`` audit
    event, the kind's ``on_closed`` hooks and a broadcast per request.
    """
    now = now or timezone.now()
    count = 0
    due = ChangeRequest.objects.filter(status__in=OPEN_STATUSES, expires_at__lte=now)
    for change_request in due.only("id", "kind", "status"):
        with transaction.atomic():
            moved = ChangeRequest.objects.filter(
                pk=change_request.pk, status__in=OPEN_STATUSES, expires_at__lte=now
            ).update(status=ChangeRequestStatus.EXPIRED, updated_at=now)
            if not moved:
                continue
            fresh = ChangeRequest.objects.get(pk=change_request.pk)
            audit_record(
                action="change_request.expire",
                target=f"change_request:{fresh.id}",
                actor=SYSTEM,
                before={"status": change_request.status},
                after={"status": fresh.status},
            )
            _closed(_kind(fresh.kind), fresh)
            _notify(fresh, "expired")
            count += 1
    return count


def change_requests_fail_stuck(*, older_than: timedelta) -> int:
    """Fail requests left ``executing`` by a lost worker. They are not re-run: execution is at
    most once, and whether the lost run took effect is for a person to check."""
    cutoff = timezone.now() - older_than
    count = 0
    for change_request in ChangeRequest.objects.filter(
        status=ChangeRequestStatus.EXECUTING, execution_started_at__lt=cutoff
    ):
        _execution_failed(
            change_request,
            _kind(change_request.kind),
            SYSTEM,
            "the worker running it was lost; it is not re-run (at most once) — check the target",
        )
        count += 1
    return count
