"""Storyteller jobs end to end: Bronze jobs run by a real worker on the real engine, their
results landing as drafts (never published), with progress shown live in the browser."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.router.models import Job
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
