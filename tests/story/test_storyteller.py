"""Storyteller jobs end to end: Bronze jobs run by a real worker on the real engine, their
results landing as drafts (never published), with progress shown live in the browser."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.router.models import Job, JobAttempt
from apps.router.services import ATTEMPT_CANCELLED
from apps.story import services
from apps.story.models import LoreEntry, LoreStatus, StoryJob
from tests.conftest import bearer
from tests.story.conftest import write

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def wait_collected(story_job_id: Any, timeout: float = 120) -> StoryJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        story_job = StoryJob.objects.select_related("job", "draft").get(pk=story_job_id)
        if story_job.collected_at is not None:
            return story_job
        time.sleep(0.3)
    raise AssertionError(f"storyteller job {story_job_id} was not collected in {timeout} s")


def test_expanding_an_entry_over_the_api_lands_a_linked_draft(
    api: APIClient,
    make_key: Callable[..., str],
    alice: User,
    celery_worker: subprocess.Popen[bytes],
) -> None:
    write(alice, "fog", title="Fog", body="Fog comes off the marsh every evening.")
    key = make_key("lore")

    response = api.post(
        "/api/v1/lore/fog/expand",
        {"instructions": "Say what hides in it."},
        format="json",
        **bearer(key),
    )
    assert response.status_code == 202, response.content
    queued = response.json()
    assert Job.objects.get(pk=queued["job_id"]).kind == "story.expand"

    story_job = wait_collected(queued["story_job_id"])
    assert story_job.error == "" and story_job.job is not None
    assert story_job.job.status == "succeeded"
    draft = story_job.draft
    assert draft is not None and draft.status == LoreStatus.DRAFT
    assert draft.title == "Fog (expanded)" and draft.tags == ["storyteller-draft"]
    assert draft.body.startswith(story_job.job.result_text.strip()[:40])
    assert "expanding [[fog]] revision 1" in draft.body
    assert [link.target_slug for link in draft.outgoing_links.all()] == ["fog"]
    status = api.get(f"/api/v1/lore/storyteller/{queued['story_job_id']}", **bearer(key)).json()
    assert status["state"] == "done" and status["draft"] == draft.slug
    assert LoreEntry.objects.get(slug="fog").head_number == 1  # the original is untouched


@pytest.mark.browser
def test_a_story_arc_shows_progress_live_and_lands_as_a_draft(
    page_as: Callable[[str], Any], alice: User, celery_worker: subprocess.Popen[bytes]
) -> None:
    page = page_as("alice")
    page.goto("/lore/storyteller/")
    page.fill("#id_theme", "a corpse that keeps breathing")
    page.fill("#id_parts", "1")

    page.click("button:has-text('Generate')")

    page.wait_for_url("**/lore/storyteller/*/")
    state = page.locator(".story-job").get_attribute("data-state")
    assert state in {"queued", "running", "finishing", "done"}
    page.locator("#draft-link").wait_for(timeout=120_000)  # polled in place, no reload
    assert page.locator(".story-job").get_attribute("data-state") == "done"
    page.click("#draft-link")
    page.wait_for_url("**/lore/arc-a-corpse-that-keeps-breathing/")
    draft = LoreEntry.objects.get(slug="arc-a-corpse-that-keeps-breathing")
    assert draft.status == LoreStatus.DRAFT
    assert draft.revisions.get().author == alice


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {timeout} s")


@pytest.mark.browser
def test_waiting_jobs_show_their_place_and_clock_asking_again_reuses_and_cancel_stops_the_model(
    page_as: Callable[[str], Any], alice: User, celery_worker: subprocess.Popen[bytes]
) -> None:
    def generate(page: Any, theme: str) -> str:
        page.goto("/lore/storyteller/")
        page.fill("#id_theme", theme)
        page.fill("#id_parts", "10")  # a long answer: still being written when cancelled
        page.click("button:has-text('Generate')")
        page.wait_for_url("**/lore/storyteller/*/")
        return str(page.url.rstrip("/").rsplit("/", 1)[1])

    first_page = page_as("alice")
    first = generate(first_page, "a bell that rings under the river")
    first_page.wait_for_selector(".story-job[data-state=running]", timeout=90_000)
    assert "The Bronze model is writing" in first_page.locator("#job-progress").inner_text()

    second_page = first_page.context.new_page()
    second = generate(second_page, "a ledger that writes itself")
    assert second != first
    job_card = second_page.locator(".story-job")
    assert job_card.get_attribute("data-state") == "queued"
    assert second_page.locator("#queue-place").inner_text() == "1 job ahead of it (1 running)"
    clock = second_page.locator("#job-progress [data-elapsed-s]")
    shown = clock.inner_text()
    second_page.wait_for_function(  # the clock counts on between the page's updates
        f"document.querySelector('#job-progress [data-elapsed-s]').innerText !== '{shown}'"
    )

    assert generate(second_page, "a ledger that writes itself") == second  # asked again
    assert "no second job was started" in second_page.locator(".flash").inner_text()
    assert StoryJob.objects.filter(params__theme="a ledger that writes itself").count() == 1

    first_page.click("#cancel-job")
    first_page.wait_for_selector(".story-job[data-state=cancelled]")
    assert first_page.locator("#cancelled").inner_text() == (
        "Cancelled by alice: nothing was drafted."
    )
    cancelled_at = time.monotonic()
    first_job = StoryJob.objects.get(pk=first).job_id
    attempt = wait_until(
        lambda: JobAttempt.objects.filter(job_id=first_job, error=ATTEMPT_CANCELLED).first(),
        timeout=10,
        what="the running attempt stopping",
    )
    assert time.monotonic() - cancelled_at < 5
    assert Job.objects.get(pk=first_job).status == "failed"
    # The worker is free at once: the queued job starts instead of waiting out the first.
    second_page.wait_for_selector(".story-job[data-state=running]", timeout=30_000)
    assert attempt.finished_at is not None

    second_page.click("#cancel-job")
    second_page.wait_for_selector(".story-job[data-state=cancelled]")
    second_job = StoryJob.objects.get(pk=second).job_id
    wait_until(
        lambda: JobAttempt.objects.filter(job_id=second_job, error=ATTEMPT_CANCELLED).exists(),
        timeout=10,
        what="the second attempt stopping",
    )
    assert not LoreEntry.objects.exists()  # nothing was drafted


def test_a_failed_bronze_job_is_reported_and_makes_no_draft(alice: User) -> None:
    write(alice, "fog", title="Fog")
    story_job = services.storyteller_expand_request(slug="fog", requested_by=alice)
    assert story_job.job is not None
    Job.objects.filter(pk=story_job.job_id).update(status="failed", error="engine exploded")

    collected = services.storyteller_job_collect(story_job_id=str(story_job.pk))

    assert collected.state == "failed" and collected.error == "engine exploded"
    assert collected.draft is None and LoreEntry.objects.count() == 1
    again = services.storyteller_job_collect(story_job_id=str(story_job.pk))
    assert again.collected_at == collected.collected_at  # collecting twice changes nothing


def test_a_cancelled_job_stops_its_running_attempt_and_the_engine(
    engines: dict[str, str],
) -> None:
    from apps.router.bronze import EngineBackend, JobCancelled
    from tests.support.long_answers import (
        LONG_MESSAGES,
        LONG_RESPONSE_FORMAT,
        LONG_TOKENS,
        assert_not_delayed,
        short_request_s,
    )

    long_job = {
        "messages": LONG_MESSAGES,
        "max_tokens": LONG_TOKENS,
        "response_format": LONG_RESPONSE_FORMAT,
    }
    alone = short_request_s(engines["silver"], "silver")
    cancel_at = time.monotonic() + 1.5  # connected and generating by then
    started = time.monotonic()
    backend = EngineBackend(engines["silver"], "silver", "cpu")
    # On a thread of its own, as in a worker: this module's browser tests leave Playwright's
    # event loop running on the test thread, where a worker's attempt never runs.
    with ThreadPoolExecutor(max_workers=1) as pool, pytest.raises(JobCancelled):
        pool.submit(
            backend.complete,
            job_id="j",
            attempt=1,
            request=long_job,
            stop_when=lambda: time.monotonic() > cancel_at,
        ).result()
    assert time.monotonic() - started < 1.5 + 2.5  # noticed within the next check

    assert_not_delayed(engines["silver"], "silver", alone)
