"""In a real browser (Debian's Chromium through Playwright) against the real server (the suite's
``live_server_url``): an admin watches the queue, sees a request arrive live, opens it and
approves it with one click and a comment.

Playwright runs on its own thread here: its sync API keeps an event loop running in the thread
that starts it, which would break every async test that runs after it in the main thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from apps.admin_ops.models import ChangeRequest
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
