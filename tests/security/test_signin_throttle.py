"""Failed sign-ins are throttled per username and per client address: over the limit the login
page answers 429 (the admin's refuses too), without checking the password, and it is audited."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from apps.admin_ops.models import AuditEvent
from apps.security.signin import signin_failed, signin_refusal

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def limits(settings: Any) -> None:
    settings.BODYBROKER_SIGNIN_FAILURES_PER_USERNAME = 3
    settings.BODYBROKER_SIGNIN_FAILURES_PER_ADDRESS = 6
    settings.BODYBROKER_SIGNIN_WINDOW_S = 300


def fresh_address() -> str:
    """An address no other test (or earlier run sharing Redis) has counted failures for."""
    value = uuid.uuid4().int
    return f"10.{value % 250}.{value // 250 % 250}.{value // 62500 % 250 + 1}"


def person() -> tuple[str, str]:
    username = f"mara-{uuid.uuid4().hex[:8]}"
    User.objects.create_user(username=username, password="lantern-oil")
    return username, "lantern-oil"


def sign_in(address: str, username: str, password: str, path: str = "/accounts/login/") -> Any:
    client = Client(REMOTE_ADDR=address)
    response = client.post(path, {"username": username, "password": password})
    response.signed_in = "_auth_user_id" in client.session
    return response


def test_a_username_that_keeps_failing_is_refused_with_429_even_with_its_password(
    limits: None,
) -> None:
    username, password = person()
    address = fresh_address()
    for _ in range(3):
        wrong = sign_in(address, username, "guess")
        assert wrong.status_code == 200 and not wrong.signed_in
    refused = sign_in(address, username, password)
    assert refused.status_code == 429 and not refused.signed_in
    assert 1 <= int(refused["Retry-After"]) <= 300
    assert "Too many failed sign-ins for this username" in refused.content.decode()
    elsewhere = sign_in(fresh_address(), username, password)  # many addresses, one victim
    assert elsewhere.status_code == 429 and not elsewhere.signed_in
    for _ in range(5):
        assert sign_in(address, username, "guess").status_code == 429

    target = f"user:{username}"
    assert AuditEvent.objects.filter(action="auth.login_failed", target=target).count() == 3
    throttled = AuditEvent.objects.filter(action="auth.login_throttled", target=target)
    assert throttled.count() == 1  # once when the limit is reached, not per refused attempt
    assert throttled.get().after["failures"] == 3


def test_one_address_trying_many_usernames_is_refused_and_others_are_not(limits: None) -> None:
    username, password = person()
    address = fresh_address()
    for n in range(6):
        assert sign_in(address, f"guess-{n}-{uuid.uuid4().hex[:6]}", "x").status_code == 200
    refused = sign_in(address, username, password)
    assert refused.status_code == 429 and not refused.signed_in
    assert "from your address" in refused.content.decode()
    assert AuditEvent.objects.filter(action="auth.login_throttled", target=f"address:{address}")
    welcome = sign_in(fresh_address(), username, password)
    assert welcome.status_code == 302 and welcome.signed_in


def test_a_correct_password_clears_its_usernames_count(limits: None) -> None:
    username, password = person()
    address = fresh_address()
    for _ in range(2):
        sign_in(address, username, "guess")
    assert sign_in(address, username, password).signed_in
    for _ in range(2):
        assert sign_in(address, username, "guess").status_code == 200
    assert sign_in(address, username, password).signed_in


def test_the_admin_sign_in_is_throttled_too(limits: None) -> None:
    User.objects.create_superuser("warden", password="warden-pw")
    address = fresh_address()
    for _ in range(3):
        assert not sign_in(address, "warden", "guess", "/admin/login/").signed_in
    refused = sign_in(address, "warden", "warden-pw", "/admin/login/")
    assert not refused.signed_in and "Too many failed sign-ins" in refused.content.decode()


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="counts are shared through Redis")
def test_failures_counted_by_another_process_count_here() -> None:
    username, address = f"ghost-{uuid.uuid4().hex[:8]}", fresh_address()
    limit = django_settings.BODYBROKER_SIGNIN_FAILURES_PER_USERNAME
    code = (  # one short of the limit there (so that process audits nothing), one more here
        "import django; django.setup()\n"
        "from apps.security.signin import signin_failed\n"
        f"for _ in range({limit - 1}):\n"
        f"    signin_failed(username={username!r}, address={address!r})\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bodybroker.settings.test"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    assert signin_refusal(username=username, address=address) is None
    signin_failed(username=username, address=fresh_address())
    refusal = signin_refusal(username=username, address=fresh_address())
    assert refusal is not None and "this username" in refusal.message
