"""Storyteller jobs without a worker: asking twice while one waits, answers cut off at the
length limit, cancelling, and where a waiting job stands in the Bronze queue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.router import selectors as router_selectors
from apps.router.models import Job
from apps.security.scopes import LORE
from apps.story import services
from apps.story.api import story_job_data
from apps.story.models import LoreEntry, StoryJob
from tests.conftest import bearer
from tests.story.conftest import write

pytestmark = pytest.mark.django_db


def finish(story_job: StoryJob, *, text: str, finish_reason: str, tokens: int) -> StoryJob:
    """What the worker writes when the model answered: the job's result and why it ended."""
    Job.objects.filter(pk=story_job.job_id).update(
        status="succeeded", result_text=text, finish_reason=finish_reason, completion_tokens=tokens
    )
    return services.storyteller_job_collect(story_job_id=str(story_job.pk))


def test_asking_for_the_same_arc_while_it_waits_returns_the_waiting_job(
    alice: User, erin: User
) -> None:
    first = services.storyteller_arc_request(
        theme="a corpse that breathes", parts=2, requested_by=alice
    )
    again = services.storyteller_arc_request(
        theme="a corpse that breathes", parts=2, requested_by=alice
    )

    assert again.pk == first.pk and again.reused and not first.reused
    assert Job.objects.count() == 1
    other_theme = services.storyteller_arc_request(
        theme="a drowned bell", parts=2, requested_by=alice
    )
    other_writer = services.storyteller_arc_request(
        theme="a corpse that breathes", parts=2, requested_by=erin
    )
    assert len({first.pk, other_theme.pk, other_writer.pk}) == 3
    assert not other_theme.reused and not other_writer.reused

    Job.objects.filter(pk=first.job_id).update(status="running")
    assert services.storyteller_arc_request(
        theme="a corpse that breathes", parts=2, requested_by=alice
    ).reused  # still running: still the same job

    finish(first, text="Part one. Part two.", finish_reason="stop", tokens=8)
    after = services.storyteller_arc_request(
        theme="a corpse that breathes", parts=2, requested_by=alice
    )
    assert after.pk != first.pk and not after.reused  # once done, asking again is a new job


def test_expanding_the_same_revision_twice_is_one_job_and_a_new_revision_another(
    alice: User,
) -> None:
    write(alice, "fog", title="Fog", body="Fog comes at dusk.")
    first = services.storyteller_expand_request(slug="fog", requested_by=alice)
    assert services.storyteller_expand_request(slug="fog", requested_by=alice).pk == first.pk
    services.lore_entry_update(
        slug="fog", base_revision=1, changes={"body": "Fog comes at noon."}, author=alice
    )
    assert services.storyteller_expand_request(slug="fog", requested_by=alice).pk != first.pk


def test_the_api_says_when_it_returned_the_running_job(
    api: APIClient, alice: User, make_key: Callable[..., str]
) -> None:
    key = make_key(LORE)
    body = {"theme": "the ledger that bleeds", "parts": 1}
    first = api.post("/api/v1/lore/storyteller/arc", body, format="json", **bearer(key))
    second = api.post("/api/v1/lore/storyteller/arc", body, format="json", **bearer(key))

    assert first.status_code == second.status_code == 202
    assert first.json()["reused"] is False and second.json()["reused"] is True
    assert first.json()["story_job_id"] == second.json()["story_job_id"]


def test_an_answer_that_stopped_at_the_length_limit_is_marked_cut_off(alice: User) -> None:
    cut = services.storyteller_arc_request(
        theme="a corpse that breathes", parts=1, requested_by=alice
    )
    whole = services.storyteller_arc_request(theme="a drowned bell", parts=1, requested_by=alice)

    cut = finish(cut, text="Part one: the corpse sat up and", finish_reason="length", tokens=120)
    whole = finish(whole, text="Part one: the bell rang.", finish_reason="stop", tokens=9)

    assert cut.cut_off and not whole.cut_off
    assert story_job_data(cut)["cut_off"] is True
    assert cut.draft is not None and whole.draft is not None
    cut_message = cut.draft.revisions.get().message
    assert cut_message == "drafted by the storyteller (story arc); cut off at the length limit"
    assert whole.draft.revisions.get().message == "drafted by the storyteller (story arc)"


def test_a_review_cut_off_at_the_length_limit_says_so(alice: User) -> None:
    write(alice, "fog", title="Fog", body="Fog comes at dusk.")
    review = services.storyteller_review_request(slug="fog", requested_by=alice)
    review = finish(review, text="The entry contradicts", finish_reason="length", tokens=300)
    assert review.cut_off and review.report_text == "The entry contradicts"


def test_cancelling_a_waiting_job_ends_it_and_its_bronze_job_with_no_draft(
    alice: User, erin: User, adam: User
) -> None:
    story_job = services.storyteller_arc_request(
        theme="a corpse that breathes", parts=2, requested_by=alice
    )

    with pytest.raises(services.LorePermissionError):
        services.storyteller_job_cancel(story_job_id=story_job.pk, user=erin)
    cancelled = services.storyteller_job_cancel(story_job_id=story_job.pk, user=alice)

    assert cancelled.state == "cancelled" and cancelled.error == "cancelled by alice"
    job = Job.objects.get(pk=story_job.job_id)
    assert (job.status, job.error) == ("failed", "cancelled by alice")
    assert job.finished_at is not None
    assert router_selectors.job_cancelled(job_id=job.pk)
    again = services.storyteller_job_cancel(story_job_id=story_job.pk, user=alice)
    assert again.cancelled_at == cancelled.cancelled_at  # cancelling twice changes nothing
    collected = services.storyteller_job_collect(story_job_id=str(story_job.pk))
    assert collected.state == "cancelled" and collected.draft is None
    assert LoreEntry.objects.count() == 0
    # A new ask for the same arc is a new job, not the cancelled one.
    new = services.storyteller_arc_request(
        theme="a corpse that breathes", parts=2, requested_by=alice
    )
    assert new.pk != story_job.pk

    by_admin = services.storyteller_job_cancel(story_job_id=new.pk, user=adam)
    assert by_admin.error == "cancelled by adam"


def test_a_finished_job_cannot_be_cancelled(alice: User) -> None:
    story_job = services.storyteller_arc_request(
        theme="a drowned bell", parts=1, requested_by=alice
    )
    finish(story_job, text="Part one.", finish_reason="stop", tokens=3)

    with pytest.raises(services.LoreValidationError):
        services.storyteller_job_cancel(story_job_id=story_job.pk, user=alice)
    assert Job.objects.get(pk=story_job.job_id).status == "succeeded"
    assert not router_selectors.job_cancelled(job_id=story_job.job_id)


def test_cancelling_over_the_api_is_for_whoever_asked(
    api: APIClient, alice: User, make_key: Callable[..., str]
) -> None:
    mine, theirs = make_key(LORE, name="mine"), make_key(LORE, name="theirs")
    queued = api.post(
        "/api/v1/lore/storyteller/arc",
        {"theme": "the ledger that bleeds", "parts": 1},
        format="json",
        **bearer(mine),
    ).json()
    url = f"/api/v1/lore/storyteller/{queued['story_job_id']}/cancel"

    refused = api.post(url, **bearer(theirs))
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_denied"
    done = api.post(url, **bearer(mine))
    assert done.status_code == 200
    assert done.json()["state"] == "cancelled" and done.json()["error"] == "cancelled by key mine"
    missing = api.post(
        "/api/v1/lore/storyteller/00000000-0000-0000-0000-000000000000/cancel", **bearer(mine)
    )
    assert missing.status_code == 404


def test_a_waiting_job_knows_how_many_bronze_jobs_are_ahead_of_it(alice: User) -> None:
    jobs = [
        services.storyteller_arc_request(theme=f"theme {n}", parts=1, requested_by=alice)
        for n in range(4)
    ]
    base = timezone.now() - timedelta(minutes=5)
    for n, story_job in enumerate(jobs):  # submitted one second apart, in order
        Job.objects.filter(pk=story_job.job_id).update(created_at=base + timedelta(seconds=n))
    Job.objects.filter(pk=jobs[0].job_id).update(status="running")
    Job.objects.filter(pk=jobs[1].job_id).update(status="succeeded")

    def place(story_job: StoryJob) -> dict[str, int]:
        return router_selectors.job_queue_place(job=Job.objects.get(pk=story_job.job_id))

    assert place(jobs[3]) == {"ahead": 2, "running": 1}  # the running one and the queued one
    assert place(jobs[2]) == {"ahead": 1, "running": 1}
    assert place(jobs[0]) == {"ahead": 0, "running": 0}


def test_the_pages_say_a_job_was_cut_off_or_cancelled_and_where_a_waiting_one_stands(
    client: Client, alice: User
) -> None:
    client.force_login(alice)
    cut = services.storyteller_arc_request(
        theme="a corpse that breathes", parts=1, requested_by=alice
    )
    finish(cut, text="Part one: the corpse sat up and", finish_reason="length", tokens=120)
    running = services.storyteller_arc_request(theme="a drowned bell", parts=1, requested_by=alice)
    Job.objects.filter(pk=running.job_id).update(status="running", started_at=timezone.now())
    waiting = services.storyteller_arc_request(theme="a ledger", parts=1, requested_by=alice)

    cut_page = client.get(f"/lore/storyteller/{cut.pk}/").content.decode()
    assert 'id="cut-off"' in cut_page and "cut off at the length limit" in cut_page
    assert "cut off</span>" in client.get("/lore/storyteller/").content.decode()
    waiting_page = client.get(f"/lore/storyteller/{waiting.pk}/").content.decode()
    assert '<span id="queue-place">1 job ahead of it (1 running)</span>' in waiting_page
    assert 'id="cancel-job"' in waiting_page
    cancelled = client.post(f"/lore/storyteller/{waiting.pk}/cancel", HTTP_HX_REQUEST="true")
    assert cancelled.status_code == 200
    assert "Cancelled by alice: nothing was drafted." in cancelled.content.decode()
    assert 'id="cancel-job"' not in cancelled.content.decode()
    again = client.post(f"/lore/storyteller/{cut.pk}/cancel", HTTP_HX_REQUEST="true")
    assert again.status_code == 409 and "it has already finished (done)" in again.content.decode()
