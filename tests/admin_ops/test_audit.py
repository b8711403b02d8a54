"""The audit log records logins, keys, job submissions — with the actor and the request id."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from apps.admin_ops.models import AuditEvent
from apps.router.services import InferenceRequest, job_submit
from apps.security.scopes import INFER, JOBS
from apps.security.services import api_key_create, api_key_revoke
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


def test_signing_in_is_audited_and_so_is_a_failed_attempt(client: Client, alice: User) -> None:
    client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    client.post("/accounts/login/", {"username": "alice", "password": "alice-pw"})
    failed, login = AuditEvent.objects.order_by("id")
    assert (failed.action, failed.target) == ("auth.login_failed", "user:alice")
    assert (login.action, login.actor_label, login.actor_user_id) == (
        "auth.login",
        "alice",
        alice.pk,
    )
    assert login.request_id


def test_key_creation_and_revocation_are_audited_without_the_secret(adam: User) -> None:
    key, raw = api_key_create(name="ci", scopes=[JOBS], owner=adam)
    api_key_revoke(key=key)
    api_key_revoke(key=key)  # a second revoke changes nothing and records nothing
    created, revoked = AuditEvent.objects.filter(target=f"api_key:{key.prefix}").order_by("id")
    assert created.action == "api_key.create" and revoked.action == "api_key.revoke"
    assert created.after["scopes"] == ["jobs"] and created.after["owner"] == "adam"
    secret = raw.removeprefix(f"bb_{key.prefix}_")  # token_urlsafe may itself hold "_"
    assert secret and secret != raw
    assert raw not in str(created.after) and secret not in str(revoked.after)


def test_a_key_created_during_a_request_names_its_person_and_request_id(adam: User) -> None:
    from apps.admin_ops.actors import actor_context, actor_for

    with actor_context(actor=actor_for(user=adam), request_id="req-123"):
        key, _ = api_key_create(name="made by adam", scopes=[INFER])
    event = AuditEvent.objects.get(target=f"api_key:{key.prefix}")
    assert (event.actor_label, event.request_id) == ("adam", "req-123")


def test_job_submission_is_audited_with_whoever_submitted(
    api: APIClient, make_key: Callable[..., str], otto: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.router import tasks

    monkeypatch.setattr(tasks.run_bronze_job, "delay", lambda *a: None)
    job = job_submit(
        request=InferenceRequest(messages=[{"role": "user", "content": "hi"}], sla="async"),
        submitted_by_user=otto,
    )
    event = AuditEvent.objects.get(action="job.submit")
    assert (event.target, event.actor_label) == (f"job:{job.id}", "otto")


def test_a_request_id_sent_by_the_caller_is_kept_and_echoed(
    api: APIClient, make_key: Callable[..., str]
) -> None:
    response = api.get("/api/v1/audit/", HTTP_X_REQUEST_ID="trace-42", **bearer(make_key("admin")))
    assert response["X-Request-ID"] == "trace-42"
    odd = api.get("/api/v1/audit/", HTTP_X_REQUEST_ID="<script>", **bearer(make_key("admin")))
    assert odd["X-Request-ID"] != "<script>" and len(odd["X-Request-ID"]) == 32
