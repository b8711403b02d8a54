"""The browser console: sign-in, navigation, jobs pages, the demo seed."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from apps.router.models import Job
from apps.security.selectors import api_key_authenticate

pytestmark = pytest.mark.django_db
SECTIONS = ("/lore/", "/npcs/", "/jobs/", "/approvals/", "/dashboards/")


@pytest.mark.parametrize("path", ("/", *SECTIONS))
def test_pages_need_a_signed_in_person(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_signing_in_shows_the_navigation(client: Client, alice: User) -> None:
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "alice-pw"}, follow=True
    )
    page = response.content.decode()
    assert response.status_code == 200
    for label in ("Lore", "NPCs", "Jobs", "Approvals", "Dashboards"):
        assert f">{label}</a>" in page
    assert "alice" in page


def test_a_wrong_password_is_shown_inline(client: Client, alice: User) -> None:
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "didn't match" in html.unescape(response.content.decode())


@pytest.mark.parametrize("path", ("/lore/", "/npcs/", "/jobs/", "/approvals/", "/dashboards/"))
def test_each_section_renders(client: Client, adam: User, path: str) -> None:
    client.force_login(adam)
    response = client.get(path)
    assert response.status_code == 200
    assert 'aria-current="page"' in response.content.decode()


def test_static_files_are_served(client: Client) -> None:
    response = client.get("/static/css/app.css")
    assert response.status_code == 200


def test_an_operator_submits_a_job_from_the_jobs_page(client: Client, otto: User) -> None:
    client.force_login(otto)
    response = client.post("/jobs/", {"prompt": "A story arc, please.", "max_tokens": "50"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    assert job.submitted_by_user == otto and job.request["max_tokens"] == 50
    detail = client.get(f"/jobs/{job.id}/")
    assert "queued" in detail.content.decode()


def test_a_writer_cannot_submit_jobs(client: Client, alice: User) -> None:
    client.force_login(alice)
    response = client.post("/jobs/", {"prompt": "x", "max_tokens": "50"})
    assert response.status_code == 400
    assert "jobs" in response.content.decode()
    assert not Job.objects.exists()


def test_a_job_page_of_someone_else_is_404(client: Client, alice: User, otto: User) -> None:
    job = Job.objects.create(request={"messages": [], "max_tokens": 1}, submitted_by_user=otto)
    client.force_login(alice)
    assert client.get(f"/jobs/{job.id}/").status_code == 404


def test_seed_demo_creates_roles_an_admin_and_a_working_key(
    settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    call_command("seed_demo")
    demo = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert demo["password"] in capsys.readouterr().out
    assert Client().login(username="admin", password=demo["password"])
    assert api_key_authenticate(demo["api_key"]) is not None
    call_command("seed_demo")  # again: the old demo key is revoked, a new one works
    assert api_key_authenticate(demo["api_key"]) is None
    assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o777 == 0o600


def test_seed_demo_refuses_without_debug(settings: Any) -> None:
    settings.DEBUG = False
    with pytest.raises(Exception, match="DEBUG=1"):
        call_command("seed_demo")
