"""The audit page as an admin uses it: the filter form sends every field, filled in or not;
the export holds exactly the filtered selection; long logs come page by page."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.admin_ops.models import AuditEvent
from apps.admin_ops.services import audit_record
from tests.conftest import bearer

pytestmark = pytest.mark.django_db

# What the page's form sends when the admin typed only an action.
FORM = {"action": "", "actor": "", "target": "", "since": "", "until": ""}


def log(count: int, action: str, target: str = "npc:warden") -> None:
    for n in range(count):
        audit_record(action=action, target=f"{target}:{n}", summary=f"{action} #{n}")


def exported(client: Client, href: str) -> list[list[str]]:
    response = client.get(href.replace("&amp;", "&"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def export_link(page: str) -> str:
    found = re.search(r'id="export-csv" href="([^"]+)"', page)
    assert found, "the page offers no export"
    return found.group(1)


def rows_on(page: str) -> int:
    return len(re.findall(r"<tr><td>\d{4}-\d\d-\d\d ", page))


def test_the_empty_fields_of_the_filter_form_are_no_filter(client: Client, adam: User) -> None:
    log(3, "game_state.write")
    client.force_login(adam)
    response = client.get("/audit/", FORM)
    assert response.status_code == 200
    assert rows_on(response.content.decode()) == AuditEvent.objects.count() >= 3
    typed = client.get("/audit/", {**FORM, "action": "game_state.", "since": "2000-01-01T00:00Z"})
    assert typed.status_code == 200 and rows_on(typed.content.decode()) == 3


def test_the_api_takes_empty_parameters_as_no_filter_too(
    api: APIClient, make_key: object, adam: User
) -> None:
    log(2, "game_state.write")
    key = make_key("admin")  # type: ignore[operator]
    response = api.get("/api/v1/audit/", FORM, **bearer(key))
    assert response.status_code == 200, response.content
    assert [e["action"] for e in response.json()].count("game_state.write") == 2


def test_export_of_a_filtered_view_holds_exactly_that_view_across_pages(
    client: Client, adam: User
) -> None:
    log(70, "game_state.write")
    log(5, "lore.publish", target="lore:flood")
    client.force_login(adam)
    page = client.get("/audit/", {**FORM, "action": "game_state."}).content.decode()
    link = export_link(page)
    assert "since=" not in link and "page=" not in link  # empty fields are not carried along
    rows = exported(client, link)
    assert len(rows) == 1 + 70
    assert {row[5] for row in rows[1:]} == {"game_state.write"}
    # Exporting from page two still exports the whole selection.
    second = client.get("/audit/", {**FORM, "action": "game_state.", "page": "2"}).content
    assert len(exported(client, export_link(second.decode()))) == 1 + 70
    everything = exported(client, export_link(client.get("/audit/", FORM).content.decode()))
    assert len(everything) - 1 == AuditEvent.objects.count() >= 75


def test_the_log_comes_fifty_rows_a_page_with_counts_and_links_that_keep_the_filter(
    client: Client, adam: User
) -> None:
    log(120, "game_state.write")
    log(4, "lore.publish", target="lore:flood")
    client.force_login(adam)
    first = client.get("/audit/", {**FORM, "action": "game_state."}).content.decode()
    assert rows_on(first) == 50
    assert "Events 1–50 of 120 matching the filter" in first
    assert "Page 1 of 3" in first and 'rel="prev"' not in first
    assert 'href="?action=game_state.&amp;page=2"' in first
    last = client.get("/audit/", {"action": "game_state.", "page": "3"}).content.decode()
    assert rows_on(last) == 20 and "Events 101–120 of 120" in last
    assert 'href="?action=game_state.&amp;page=2"' in last and 'rel="next"' not in last
    assert "lore.publish #" not in first + last
    beyond = client.get("/audit/", {"action": "game_state.", "page": "99"}).content.decode()
    assert "Page 3 of 3" in beyond  # a page past the end shows the last one


def test_a_page_costs_the_same_queries_however_long_the_log(client: Client, adam: User) -> None:
    client.force_login(adam)
    log(5, "game_state.write")
    with CaptureQueriesContext(connection) as few:
        client.get("/audit/")
    log(200, "game_state.write")
    with CaptureQueriesContext(connection) as many:
        client.get("/audit/")
    assert len(many) == len(few)


def test_a_bad_filter_is_named_on_the_page_with_a_400(client: Client, adam: User) -> None:
    client.force_login(adam)
    bad = client.get("/audit/", {**FORM, "since": "last tuesday"})
    assert bad.status_code == 400 and "since:" in bad.content.decode()


def test_admins_find_the_audit_log_and_keys_in_the_navigation_and_others_do_not(
    client: Client, adam: User, alice: User
) -> None:
    client.force_login(adam)
    nav = client.get("/").content.decode()
    assert '<a href="/audit/"' in nav and '<a href="/keys/"' in nav
    audit_page = client.get("/audit/").content.decode()
    assert '<a href="/audit/" aria-current="page">Audit log</a>' in audit_page
    client.force_login(alice)
    nav = client.get("/").content.decode()
    assert '<a href="/audit/"' not in nav and '<a href="/keys/"' not in nav
