"""The operators' pages in a real browser (Debian's Chromium through Playwright against the
live server): the dashboard's health table arrives after the page, the jobs list filters
through its form into the URL, and a job that cannot fit is refused on the form. Any console
error or uncaught script error on a visited page fails the test (``page_as``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.router.models import Job, JobStatus
from tests.browser_support import ConsoleErrors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CPU_BRONZE = {
    "urls": ["http://127.0.0.1:9"],
    "model": "silver",
    "engine": "cpu",
    "fallback_urls": [],
    "fallback_model": "gold",
}


def test_the_dashboard_loads_its_health_table_after_the_page(
    page_as: Callable[[str], Any], adam: User
) -> None:
    page = page_as("adam")
    page.goto("/dashboards/")
    assert page.locator("h2", has_text="Tiers today").is_visible()
    health = page.locator("#health table")
    health.wait_for()
    assert "database" in health.inner_text()


def test_an_operator_filters_jobs_opens_one_and_is_told_when_a_prompt_cannot_fit(
    page_as: Callable[[str], Any],
    otto: User,
    settings: Any,
    console_errors: ConsoleErrors,
) -> None:
    settings.BODYBROKER_TIERS = {**settings.BODYBROKER_TIERS, "bronze": CPU_BRONZE}
    Job.objects.create(
        request={"messages": [{"role": "user", "content": "The failed arc."}], "max_tokens": 8},
        submitted_by_user=otto,
        status=JobStatus.FAILED,
        error="every Bronze backend failed",
    )
    Job.objects.create(
        request={"messages": [{"role": "user", "content": "The cut-off arc."}], "max_tokens": 8},
        submitted_by_user=otto,
        status=JobStatus.SUCCEEDED,
        result_text="Part one",
        finish_reason="length",
    )
    page = page_as("otto")
    page.goto("/jobs/")
    page.select_option("#id_status", "succeeded")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/jobs/?status=succeeded*")
    table = page.locator("#jobs-table")
    assert "The cut-off arc." in table.inner_text()
    assert "The failed arc." not in table.inner_text()
    assert "cut off" in table.inner_text()
    table.locator("a").first.click()
    page.wait_for_url("**/jobs/*-*/")
    assert "Cut off: the answer reached its limit of 8 tokens" in page.content()

    # A refused form answers 400, which Chromium logs as a failed load of the page itself.
    console_errors.allow(r"status of 400", why="the refused form's page answers 400")
    page.goto("/jobs/")
    page.fill("#id_prompt", "The body broker counts the coins again. " * 525)
    page.click("text=Queue on Bronze")
    page.locator("p.error[role=alert]").wait_for()
    assert "context window of Bronze" in page.locator("p.error[role=alert]").inner_text()
    assert Job.objects.count() == 2
