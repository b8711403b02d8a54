"""Change requests: the two-person rule, revisions, expiry, at-most-once execution, and the
audit trail each transition leaves."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from apps.admin_ops import services
from apps.admin_ops.actors import Actor
from apps.admin_ops.models import AuditEvent, ChangeRequest, ChangeRequestStatus
from apps.admin_ops.tasks import execute_change_request, expire_change_requests
from apps.npcs.models import GameStateEvent, WorldState
from apps.npcs.services import game_state_apply
from apps.security.selectors import user_scopes
from apps.security.services import api_key_create

pytestmark = pytest.mark.django_db


def open_request(author: User, **overrides: Any) -> ChangeRequest:
    fields: dict[str, Any] = {
        "kind": "game_state.write",
        "target": "world:crypt",
        "payload": {"set": {"alarm": "ringing"}},
        "reason": "The player tripped the wire.",
    }
    fields.update(overrides)
    return services.change_request_create(
        **fields, actor=Actor(user=author), scopes=user_scopes(author)
    )


def approve(change_request: ChangeRequest, user: User, comment: str = "") -> ChangeRequest:
    return services.change_request_approve(
        change_request_id=change_request.id, user=user, scopes=user_scopes(user), comment=comment
    )


def actions(change_request: ChangeRequest) -> list[str]:
    return list(
        AuditEvent.objects.filter(target=f"change_request:{change_request.id}")
        .order_by("at", "id")
        .values_list("action", flat=True)
    )


@pytest.fixture
def amy(db: None) -> User:
    """A second admin, for the two-person rule."""
    from tests.conftest import _person

    return _person("amy", "admin")


def test_a_new_request_is_pending_with_a_diff_against_the_current_state(otto: User) -> None:
    game_state_apply(subject="world:crypt", changes={"set": {"alarm": "silent"}}, by="test")
    change_request = open_request(otto)
    assert change_request.status == ChangeRequestStatus.PENDING
    assert change_request.required_approvals == 1
    assert '-  "alarm": "silent"' in change_request.diff
    assert '+  "alarm": "ringing"' in change_request.diff
    assert WorldState.objects.get(region="crypt").state == {"alarm": "silent"}  # untouched


def test_the_author_can_never_approve_their_own_request(adam: User) -> None:
    change_request = open_request(adam)
    with pytest.raises(services.ChangeRequestError, match="you wrote this request") as caught:
        approve(change_request, adam)
    assert caught.value.code == "forbidden"
    change_request.refresh_from_db()
    assert change_request.status == ChangeRequestStatus.PENDING


def test_a_request_made_through_someones_key_cannot_be_approved_by_them(adam: User) -> None:
    key, _ = api_key_create(name="adam's bot", scopes=["admin"], owner=adam)
    change_request = services.change_request_create(
        kind="game_state.write",
        target="npc:warden",
        payload={"set": {"mood": "calm"}},
        reason="bot",
        actor=Actor(key=key, tier="bronze"),
        scopes=frozenset(key.scopes),
    )
    assert change_request.author_label.startswith("bronze via key:adam's bot")
    with pytest.raises(services.ChangeRequestError, match="you wrote this request"):
        approve(change_request, adam)


def test_security_writes_need_two_approvers_other_than_the_author(
    adam: User, amy: User, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from tests.conftest import _person

    sent: list[str] = []
    monkeypatch.setattr(execute_change_request, "delay", sent.append)
    third = _person("ash", "admin")
    change_request = open_request(
        adam, kind="security.write", target="security:keys/rotate", payload={"rotate": "all"}
    )
    assert change_request.required_approvals == 2
    with django_capture_on_commit_callbacks(execute=True):
        approve(change_request, amy, "looks right")
    change_request.refresh_from_db()
    assert change_request.status == ChangeRequestStatus.PENDING and sent == []
    with pytest.raises(services.ChangeRequestError, match="already approved"):
        approve(change_request, amy)
    with django_capture_on_commit_callbacks(execute=True):
        approve(change_request, third, "agreed")
    change_request.refresh_from_db()
    assert change_request.status == ChangeRequestStatus.APPROVED
    assert change_request.executed_on_behalf_of == third
    assert sent == [str(change_request.id)]  # queued once, after the approval committed


def test_an_approval_counts_only_for_the_revision_it_was_given_on(adam: User, amy: User) -> None:
    from tests.conftest import _person

    third = _person("ash", "admin")
    change_request = open_request(
        adam, kind="security.write", target="security:keys/rotate", payload={"rotate": "all"}
    )
    approve(change_request, amy)
    first_revision = change_request.revision
    revised = services.change_request_revise(
        change_request_id=change_request.id,
        actor=Actor(user=adam),
        scopes=user_scopes(adam),
        payload={"rotate": "game keys only"},
    )
    assert revised.revision != first_revision
    assert services.current_approvals(revised) == []
    approve(revised, third)
    revised.refresh_from_db()
    assert revised.status == ChangeRequestStatus.PENDING  # amy's approval no longer counts
    assert "change_request.reset" in actions(revised)


def test_only_the_author_may_amend_the_payload(otto: User, adam: User) -> None:
    change_request = open_request(otto)
    with pytest.raises(services.ChangeRequestError, match="only the author") as caught:
        services.change_request_revise(
            change_request_id=change_request.id,
            actor=Actor(user=adam),
            scopes=user_scopes(adam),
            payload={"set": {"alarm": "off"}},
        )
    assert caught.value.code == "forbidden"


def test_a_changed_target_blocks_approval_until_the_diff_is_refreshed(
    otto: User, adam: User
) -> None:
    change_request = open_request(otto)
    game_state_apply(subject="world:crypt", changes={"set": {"fog": "thick"}}, by="someone")
    with pytest.raises(services.ChangeRequestError, match="stale revision") as caught:
        approve(change_request, adam)
    assert caught.value.code == "conflict"
    refreshed = services.change_request_revise(
        change_request_id=change_request.id, actor=Actor(user=adam), scopes=user_scopes(adam)
    )
    assert '"fog": "thick"' in refreshed.diff
    approve(refreshed, adam)
    refreshed.refresh_from_db()
    assert refreshed.status == ChangeRequestStatus.APPROVED


def test_an_expired_request_cannot_be_approved(otto: User, adam: User) -> None:
    change_request = open_request(otto)
    ChangeRequest.objects.filter(pk=change_request.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    change_request.refresh_from_db()
    with pytest.raises(services.ChangeRequestError, match="expired") as caught:
        approve(change_request, adam)
    assert caught.value.code == "conflict"


def test_the_expiry_sweep_closes_open_requests_and_their_events(otto: User) -> None:
    change_request = open_request(otto)
    event = GameStateEvent.objects.create(
        subject="world:crypt",
        kind="write",
        changes={"set": {"alarm": "ringing"}},
        status="pending",
        source="test",
        change_request_id=change_request.id,
    )
    ChangeRequest.objects.filter(pk=change_request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert expire_change_requests() == 1
    change_request.refresh_from_db()
    event.refresh_from_db()
    assert change_request.status == ChangeRequestStatus.EXPIRED
    assert event.status == "expired"
    assert actions(change_request)[-1] == "change_request.expire"
    assert expire_change_requests() == 0


def test_an_approved_request_that_expires_before_running_does_not_run(
    otto: User, adam: User
) -> None:
    change_request = open_request(otto)
    approve(change_request, adam)
    ChangeRequest.objects.filter(pk=change_request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert execute_change_request(str(change_request.id)) == "expired"
    assert not WorldState.objects.filter(region="crypt").exists()


def test_execution_applies_the_change_once_on_behalf_of_the_approver(
    otto: User, adam: User
) -> None:
    change_request = open_request(otto)
    approve(change_request, adam, "ok")
    assert execute_change_request(str(change_request.id)) == "executed"
    assert execute_change_request(str(change_request.id)) is None  # the duplicate finds nothing
    change_request.refresh_from_db()
    crypt = WorldState.objects.get(region="crypt")
    assert crypt.state == {"alarm": "ringing"} and crypt.version == 1
    assert change_request.execution_runs == 1
    assert change_request.executed_on_behalf_of == adam
    assert change_request.result["version"] == 1
    assert "approved by adam" in crypt.updated_by
    effect = AuditEvent.objects.get(action="game_state.write")
    assert effect.actor_label == "adam" and effect.target == "world:crypt"


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_tasks_execute_at_most_once(otto: User, adam: User) -> None:
    change_request = open_request(otto)
    with pytest.MonkeyPatch.context() as patch:
        # Keep the real task out of the broker: this test delivers it itself, twice at once.
        patch.setattr(execute_change_request, "delay", lambda *a: None)
        approve(change_request, adam)
    barrier = threading.Barrier(4)
    outcomes: list[str | None] = []

    def deliver() -> None:
        barrier.wait()
        try:
            outcomes.append(execute_change_request(str(change_request.id)))
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes, key=str) == [None, None, None, "executed"]
    assert WorldState.objects.get(region="crypt").version == 1


def test_execution_resets_approvals_when_the_target_changed_after_approval(
    otto: User, adam: User
) -> None:
    change_request = open_request(otto)
    approve(change_request, adam)
    game_state_apply(subject="world:crypt", changes={"set": {"fog": "thick"}}, by="someone")
    assert execute_change_request(str(change_request.id)) == "pending"
    change_request.refresh_from_db()
    assert services.current_approvals(change_request) == []
    assert "target changed" in change_request.error
    assert WorldState.objects.get(region="crypt").state == {"fog": "thick"}
    assert actions(change_request)[-1] == "change_request.reset"


def test_a_kind_without_an_executor_fails_with_a_clear_error(adam: User, amy: User) -> None:
    from tests.conftest import _person

    change_request = open_request(
        adam, kind="adapter.deploy", target="adapter:silver/v3", payload={"adapter": "v3"}
    )
    approve(change_request, amy)
    approve(change_request, _person("ash", "admin"))
    assert execute_change_request(str(change_request.id)) == "failed"
    change_request.refresh_from_db()
    assert "no executor is registered for 'adapter.deploy'" in change_request.error
    assert actions(change_request)[-1] == "change_request.fail"


def test_a_failing_executor_leaves_the_target_untouched(otto: User, adam: User) -> None:
    from apps.admin_ops.kinds import get_kind

    change_request = open_request(otto)
    approve(change_request, adam)
    kind = get_kind("game_state.write")
    real = kind.executor

    def explode(**kwargs: Any) -> dict[str, Any]:
        assert real is not None
        real(**kwargs)  # writes, then fails: the write must roll back with it
        raise RuntimeError("the crypt door is jammed")

    kind.executor = explode
    try:
        assert execute_change_request(str(change_request.id)) == "failed"
    finally:
        kind.executor = real
    change_request.refresh_from_db()
    assert "the crypt door is jammed" in change_request.error
    assert not WorldState.objects.filter(region="crypt").exists()


def test_rejection_is_final_and_closes_the_event(otto: User, adam: User) -> None:
    change_request = open_request(otto)
    with pytest.raises(services.ChangeRequestError, match="say why") as caught:
        services.change_request_reject(
            change_request_id=change_request.id, user=adam, scopes=user_scopes(adam), comment=" "
        )
    assert caught.value.field == "comment"
    services.change_request_reject(
        change_request_id=change_request.id,
        user=adam,
        scopes=user_scopes(adam),
        comment="Not during the tutorial.",
    )
    change_request.refresh_from_db()
    assert change_request.status == ChangeRequestStatus.REJECTED
    with pytest.raises(services.ChangeRequestError, match="rejected, not pending"):
        approve(change_request, adam)


def test_every_transition_leaves_an_audit_event(otto: User, adam: User) -> None:
    change_request = open_request(otto)
    approve(change_request, adam, "fine")
    execute_change_request(str(change_request.id))
    trail = AuditEvent.objects.filter(target=f"change_request:{change_request.id}").order_by(
        "at", "id"
    )
    assert [(e.action, e.actor_label) for e in trail] == [
        ("change_request.create", "otto"),
        ("change_request.approve", "adam"),
        ("change_request.approved", "adam"),
        ("change_request.execute", "adam"),
    ]
    assert trail[0].after["payload"] == {"set": {"alarm": "ringing"}}
    assert trail[1].summary == "fine"


def test_bad_input_names_the_field(otto: User) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "nope.nope"}, "kind"),
        ({"target": "crypt"}, "target"),
        ({"target": "npc:Bad Id!"}, "target"),
        ({"payload": {"set": {}}}, "payload"),
        ({"reason": "  "}, "reason"),
    ]
    for overrides, field in cases:
        with pytest.raises(services.ChangeRequestError) as caught:
            open_request(otto, **overrides)
        assert caught.value.field == field, overrides


def test_an_operator_cannot_ask_to_publish_lore_but_a_writer_can(otto: User, alice: User) -> None:
    from apps.story.services import lore_entry_create

    lore_entry_create(
        fields={"title": "The Crypt", "kind": "location"}, slug="the-crypt", author=alice
    )
    with pytest.raises(services.ChangeRequestError, match="needs the 'lore' scope") as caught:
        open_request(otto, kind="lore.publish", target="lore:the-crypt", payload={"revision": 1})
    assert caught.value.code == "forbidden"
    change_request = open_request(
        alice, kind="lore.publish", target="lore:the-crypt", payload={"revision": 1}
    )
    assert change_request.status == ChangeRequestStatus.PENDING


def test_only_deciders_may_approve(otto: User, alice: User, erin: User) -> None:
    change_request = open_request(otto)
    for person in (alice, erin):
        with pytest.raises(services.ChangeRequestError, match="'admin' scope") as caught:
            approve(change_request, person)
        assert caught.value.code == "forbidden"


def test_registering_an_executor_for_an_undeclared_kind_is_refused() -> None:
    from apps.admin_ops.kinds import UnknownKindError, register_executor

    with pytest.raises(UnknownKindError):
        register_executor("lore.unpublish", lambda **kw: {})


def test_other_apps_can_attach_an_executor_to_a_declared_kind(alice: User, adam: User) -> None:
    from apps.admin_ops.kinds import get_kind, register_executor

    kind = get_kind("lore.publish")
    saved = (kind.executor, kind.read_target, kind.preview, kind.validate, kind.on_closed)
    published: list[dict[str, Any]] = []
    try:
        register_executor(
            "lore.publish",
            lambda **kw: published.append(kw) or {"published": kw["payload"]["revision"]},
            read_target=lambda target: {"published_revision": 2},
            preview=lambda target, payload, current: {"published_revision": payload["revision"]},
        )
        change_request = open_request(
            alice, kind="lore.publish", target="lore:the-crypt", payload={"revision": 3}
        )
        assert '+  "published_revision": 3' in change_request.diff
        approve(change_request, adam)
        assert execute_change_request(str(change_request.id)) == "executed"
    finally:
        (kind.executor, kind.read_target, kind.preview, kind.validate, kind.on_closed) = saved
    assert published[0]["on_behalf_of"] == adam
    assert AuditEvent.objects.filter(action="lore.publish", target="lore:the-crypt").exists()


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_a_duplicated_task_on_a_real_worker_executes_once(
    celery_worker: Any, otto: User, adam: User
) -> None:
    import time

    change_request = open_request(otto)
    approve(change_request, adam)  # sends the task once on commit…
    execute_change_request.delay(str(change_request.id))  # …and a duplicate delivery
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        change_request.refresh_from_db()
        if change_request.status == ChangeRequestStatus.EXECUTED:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # give the duplicate time to be consumed too
    change_request.refresh_from_db()
    assert change_request.status == ChangeRequestStatus.EXECUTED
    assert change_request.execution_runs == 1
    assert WorldState.objects.get(region="crypt").version == 1
