"""In a real browser (Debian's Chromium through Playwright) against the real server (the suite's
``live_server_url``): an admin watches the queue, sees a request arrive live, opens it and
approves it with one click and a comment; filters, pages through and exports the audit log;
reviews a lore publish until a worker has run it; mints, changes and revokes an API key.

Playwright runs on its own thread here: its sync API keeps an event loop running in the thread
that starts it, which would break every async test that runs after it in the main thread.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from apps.admin_ops.models import ChangeRequest
from apps.security.models import ApiKey
from apps.security.scopes import GAME
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, DEFAULT_TIMEOUT_MS, watch_console

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def signed_in(live_server_url: str, username: str, script: Callable[[Any], Any]) -> Any:
    """Run ``script(page)`` in headless Chromium, signed in as ``username``, on a thread of its
    own; returns what the script returns and re-raises what it raises. A console error or an
    uncaught script error on any page fails it."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make setup` (it installs Debian's chromium)")

    def run() -> Any:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(base_url=live_server_url)
                console = watch_console(context)
                context.set_default_timeout(DEFAULT_TIMEOUT_MS)
                page = context.new_page()
                page.goto("/accounts/login/")
                page.fill("input[name=username]", username)
                page.fill("input[name=password]", f"{username}-pw")
                page.click("button[type=submit]")
                page.wait_for_url(lambda url: "/accounts/login/" not in url)
                outcome = script(page)
                console.assert_clean()
                return outcome
            finally:
                browser.close()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright") as pool:
        return pool.submit(run).result(timeout=120)


def test_an_admin_approves_a_request_that_arrived_while_they_watched(
    live_server_url: str, adam: User, otto: User, make_key: Callable[..., str]
) -> None:
    game_key = make_key(GAME)

    def script(page: Any) -> str:
        from playwright.sync_api import expect

        page.goto("/approvals/")
        expect(page.locator("#live")).to_have_text("● live")
        expect(page.locator("#queue-table")).to_contain_text("Nothing is waiting")

        # An integration asks for a change while the page is open: it appears, no reload.
        page.evaluate("window.__no_reload = true")
        created = httpx.post(
            f"{live_server_url}/api/v1/change-requests/",
            json={
                "kind": "game_state.write",
                "target": "npc:warden",
                "payload": {"set": {"mood": "furious"}},
                "reason": "The player stole his lantern.",
            },
            headers={"Authorization": f"Bearer {game_key}"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        change_request_id = str(created.json()["id"])
        row = page.locator(f'#queue-table tr[data-id="{change_request_id}"]')
        expect(row).to_contain_text("game_state.write")
        expect(page.locator('[data-kind="game_state.write"] strong')).to_have_text("1")
        assert page.evaluate("window.__no_reload === true")

        row.get_by_role("link").click()
        expect(page.locator("#diff")).to_contain_text('+  "mood": "furious"')
        page.fill("#id_comment", "He had it coming.")
        page.get_by_role("button", name="Approve").click()
        expect(page.locator("#cr-status")).not_to_have_text("pending")
        expect(page.get_by_text("He had it coming.").first).to_be_visible()
        return change_request_id

    change_request_id = signed_in(live_server_url, "adam", script)
    change_request = ChangeRequest.objects.get(pk=change_request_id)
    assert change_request.status in ("approved", "executing", "executed")
    assert change_request.decisions.get().user == adam


def test_the_author_sees_why_they_cannot_approve(live_server_url: str, adam: User) -> None:
    from apps.admin_ops import services
    from apps.admin_ops.actors import Actor
    from apps.security.selectors import user_scopes

    change_request = services.change_request_create(
        kind="game_state.write",
        target="world:crypt",
        payload={"set": {"alarm": "ringing"}},
        reason="Testing the bell.",
        actor=Actor(user=adam),
        scopes=user_scopes(adam),
    )

    def script(page: Any) -> None:
        from playwright.sync_api import expect

        page.goto(f"/approvals/{change_request.id}/")
        expect(page.locator("#blockers")).to_contain_text("you wrote this request")
        expect(page.get_by_role("button", name="Approve")).to_be_disabled()

    signed_in(live_server_url, "adam", script)


def in_plain_thread(function: Callable[..., Any], **kwargs: Any) -> Any:
    """Run ORM work from a script: Playwright's thread runs an event loop, where Django refuses
    synchronous database calls."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, **kwargs).result(timeout=60)


def test_an_admin_filters_pages_and_exports_the_audit_log(live_server_url: str, adam: User) -> None:
    from apps.admin_ops.services import audit_record

    for n in range(60):
        audit_record(action="game_state.write", target=f"npc:warden{n}", summary=f"mood #{n}")
    for n in range(3):
        audit_record(action="lore.publish", target=f"lore:flood{n}")

    def script(page: Any) -> str:
        from playwright.sync_api import expect

        page.goto("/")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
        expect(page).to_have_url(f"{live_server_url}/audit/")
        page.fill("#f_action", "game_state.")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#audit-count")).to_contain_text("Events 1–50 of 60 matching")
        page.get_by_role("link", name="Older →").click()
        expect(page.locator("#audit-count")).to_contain_text("Events 51–60 of 60 matching")
        expect(page.locator("#audit-table tbody tr")).to_have_count(10)
        with page.expect_download() as download:
            page.locator("#export-csv").click()
        with open(download.value.path(), encoding="utf-8") as exported:
            return exported.read()

    exported = signed_in(live_server_url, "adam", script)
    rows = list(csv.reader(io.StringIO(exported)))
    assert len(rows) == 61 and {row[5] for row in rows[1:]} == {"game_state.write"}


def test_an_admin_reviews_a_lore_publish_and_sees_it_wait_for_a_worker_then_run(
    live_server_url: str, alice: User, erin: User, adam: User
) -> None:
    from apps.admin_ops import services
    from tests.admin_ops.support import lore_edit_asked_to_publish

    body = "The bell rang under the water. " * 40 + "\nThe warden keeps the lantern lit."
    change_request = lore_edit_asked_to_publish(writer=alice, editor=erin, body=body)

    def script(page: Any) -> None:
        from playwright.sync_api import expect

        page.goto(f"/approvals/{change_request.id}/")
        diff = page.locator("#diff")
        expect(diff).to_contain_text("-    The warden keeps the lantern lit.")
        # A long paragraph wraps inside the page instead of running off to the right.
        assert diff.evaluate("node => node.scrollWidth <= node.clientWidth + 1")
        page.fill("#id_comment", "Reads well.")
        page.get_by_role("button", name="Approve").click()
        expect(page.locator("#cr-status")).to_have_text("approved — queued for a worker")
        expect(page.locator("#worker-wait")).to_contain_text("runs when a worker picks it up")

        in_plain_thread(services.change_request_execute, change_request_id=change_request.id)
        page.reload()
        expect(page.locator("#cr-status")).to_have_text("executed")
        expect(page.locator("#cr-result")).to_contain_text("published revision")

    signed_in(live_server_url, "adam", script)


def test_an_admin_creates_changes_and_revokes_a_key_in_the_browser(
    live_server_url: str, adam: User
) -> None:
    def script(page: Any) -> str:
        from playwright.sync_api import expect

        page.goto("/")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
        expect(page).to_have_url(f"{live_server_url}/keys/")
        page.fill("#id_name", "night-shift bot")
        page.get_by_label("jobs — submit and read Bronze jobs").check()
        page.get_by_label("infer — REST and OpenAI-compatible inference").check()
        page.fill("#id_requests_per_minute", "30")
        page.select_option("#id_owner", label="adam")
        page.get_by_role("button", name="Create key").click()
        raw_key = page.locator("#raw-key").inner_text().strip()
        assert raw_key.startswith("bb_")
        listed = httpx.get(
            f"{live_server_url}/api/v1/jobs/",
            headers={"Authorization": f"Bearer {raw_key}"},
            timeout=30,
        )
        assert listed.status_code == 200, listed.text
        expect(page.locator("#keys-table")).to_contain_text("30 req/min")

        page.get_by_role("link", name="its settings").click()
        page.get_by_label("infer — REST and OpenAI-compatible inference").uncheck()
        page.get_by_role("button", name="Save").click()
        expect(page.locator(".flash")).to_contain_text("Saved: scopes changed.")

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Revoke this key").click()
        expect(page.locator("#key-state")).to_contain_text("revoked")
        return raw_key

    raw_key = signed_in(live_server_url, "adam", script)
    key = ApiKey.objects.get(name="night-shift bot")
    assert raw_key.startswith(f"bb_{key.prefix}_")
    assert key.scopes == ["jobs"] and key.requests_per_minute == 30 and key.revoked_at
