"""The jobs pages (prompt, submitter, timestamps, filters, pages, the cut-off flag) and jobs
refused at submit when their prompt cannot fit Bronze's context window, on every door."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.router import services
from apps.router.bronze import EngineBackend
from apps.router.models import Job, JobAttempt, JobStatus
from apps.security.models import ApiKey
from apps.security.services import api_key_create
from tests.conftest import bearer
from tests.router.conftest import LiveServer
from tests.support.scripted_engine import ScriptedEngine, completion

LONG_PROMPT = "The body broker counts the coins again. " * 525  # 21,000 characters
CPU_BRONZE = {  # the CPU default: Bronze runs on Silver's llama.cpp engine (n_ctx 4096)
    "urls": ["http://127.0.0.1:9"],
    "model": "silver",
    "engine": "cpu",
    "fallback_urls": [],
    "fallback_model": "gold",
}


def _job(prompt: str, **fields: Any) -> Job:
    return Job.objects.create(
        request={"messages": [{"role": "user", "content": prompt}], "max_tokens": 64}, **fields
    )


def _rows(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


@pytest.fixture
def tiers_on_cpu(settings: Any) -> None:
    settings.BODYBROKER_TIERS = {**settings.BODYBROKER_TIERS, "bronze": CPU_BRONZE}


# --- the list and the detail page --------------------------------------------------------------


@pytest.mark.django_db
def test_the_list_shows_prompt_submitter_times_duration_and_the_cut_off_flag(
    client: Client, adam: User, otto: User
) -> None:
    key, _ = api_key_create(name="story-bot", scopes=["jobs"])
    started = timezone.now() - timedelta(seconds=21.7)
    _job(
        "Outline the heist of the breathing corpse. " * 10,
        submitted_by_user=otto,
        status=JobStatus.SUCCEEDED,
        started_at=started,
        finished_at=started + timedelta(seconds=21.7),
        finish_reason="length",
        prompt_tokens=1234,
        completion_tokens=64,
    )
    _job("Name the morgue's night porter.", submitted_by_key=key)
    client.force_login(adam)
    page = html.unescape(client.get("/jobs/").content.decode())
    headers = re.findall(r"<th>(.*?)</th>", page.split("<tbody>", 1)[0])
    for column in ("Prompt", "Submitter", "Created", "Started", "Finished", "Duration"):
        assert column in headers
    queued, finished = _rows(page)  # newest first
    assert "Name the morgue's night porter." in queued and "key story-bot" in queued
    assert "cut off" not in queued
    assert "Outline the heist of the breathing corpse." in finished
    shown = re.search(r'<td class="prompt"[^>]*>(.*?)</td>', finished, re.S)
    assert shown and shown.group(1).endswith("…") and len(shown.group(1)) <= 90
    assert "otto" in finished and "21.7 s" in finished and "1,234 → 64" in finished
    assert "cut off" in finished


@pytest.mark.django_db
def test_the_detail_page_shows_the_whole_prompt_and_says_the_answer_was_cut_off(
    client: Client, otto: User
) -> None:
    prompt = "Outline the heist of the breathing corpse. " * 10
    started = timezone.now() - timedelta(minutes=3)
    job = _job(
        prompt,
        submitted_by_user=otto,
        status=JobStatus.SUCCEEDED,
        result_text="Part one: the broker",
        finish_reason="length",
        started_at=started,
        finished_at=started + timedelta(seconds=185),
    )
    client.force_login(otto)
    page = html.unescape(client.get(f"/jobs/{job.id}/").content.decode())
    assert prompt.strip() in page
    assert "otto" in page and "3 min 05 s" in page
    assert "Cut off: the answer reached its limit of 64 tokens" in page
    for label in ("Created", "Started", "Finished"):
        assert f'<th scope="row">{label}</th><td><time' in page
    job.finish_reason = "stop"
    job.save()
    page = client.get(f"/jobs/{job.id}/").content.decode()
    assert "Cut off" not in page


@pytest.mark.django_db
def test_filters_narrow_the_list_and_stay_in_the_url(
    client: Client, adam: User, otto: User
) -> None:
    key, _ = api_key_create(name="story-bot", scopes=["jobs"])
    _job("otto's failed arc", submitted_by_user=otto, status=JobStatus.FAILED)
    _job("otto's report", submitted_by_user=otto, kind="admin_report")
    _job("the bot's arc", submitted_by_key=key, kind="storyteller_arc")
    client.force_login(adam)

    def prompts(query: str) -> list[str]:
        page = html.unescape(client.get(f"/jobs/?{query}").content.decode())
        return [p for p in ("otto's failed arc", "otto's report", "the bot's arc") if p in page]

    assert prompts("") == ["otto's failed arc", "otto's report", "the bot's arc"]
    assert prompts("status=failed") == ["otto's failed arc"]
    assert prompts("kind=admin_report") == ["otto's report"]
    assert prompts("submitter=otto") == ["otto's failed arc", "otto's report"]
    assert prompts("submitter=key+story-bot") == ["the bot's arc"]
    assert prompts("tier=bronze&submitter=otto&kind=completion") == ["otto's failed arc"]
    # Empty fields, as the form sends them, filter nothing.
    assert len(prompts("status=&tier=&kind=&submitter=")) == 3
    page = client.get("/jobs/?status=failed&submitter=otto").content.decode()
    assert '<option value="failed" selected>' in page
    assert '<option value="otto" selected>' in page
    # The live refresh asks for the same selection.
    assert 'hx-get="/jobs/?status=failed&amp;submitter=otto&amp;partial=table"' in page
    partial = html.unescape(
        client.get("/jobs/?status=failed&submitter=otto&partial=table").content.decode()
    )
    assert "otto's failed arc" in partial and "otto's report" not in partial


@pytest.mark.django_db
def test_a_long_list_comes_in_pages_that_keep_the_filters(client: Client, otto: User) -> None:
    for number in range(30):
        _job(f"arc number {number:02d}.", submitted_by_user=otto)
    client.force_login(otto)
    first = client.get("/jobs/?submitter=otto").content.decode()
    assert len(_rows(first)) == 25
    assert "page 1 of 2" in first and "30 jobs" in first
    assert 'href="?submitter=otto&amp;page=2"' in first
    second = client.get("/jobs/?submitter=otto&page=2").content.decode()
    assert len(_rows(second)) == 5 and "arc number 00." in second


@pytest.mark.django_db
def test_the_list_costs_a_fixed_number_of_queries(
    client: Client, adam: User, otto: User, django_assert_max_num_queries: Any
) -> None:
    key, _ = api_key_create(name="story-bot", scopes=["jobs"])
    for number in range(20):
        _job(f"arc {number}", submitted_by_user=otto if number % 2 else None)
        _job(f"bot arc {number}", submitted_by_key=key)
    client.force_login(adam)
    with django_assert_max_num_queries(9):
        assert client.get("/jobs/").status_code == 200


# --- the cut-off flag is recorded ---------------------------------------------------------------


def test_a_bronze_answer_cut_off_at_max_tokens_is_recorded_as_such() -> None:
    async def run() -> str:
        async with ScriptedEngine(completion("Part one", finish_reason="length")) as engine:
            backend = EngineBackend(engine.base_url, "silver", "cpu")
            result = await asyncio.to_thread(
                backend.complete,
                job_id="j",
                attempt=1,
                request={"messages": [{"role": "user", "content": "x"}], "max_tokens": 3},
            )
            return result.finish_reason

    assert asyncio.run(run()) == "length"


@pytest.mark.django_db(transaction=True)
def test_a_job_that_ended_at_max_tokens_is_flagged_truncated() -> None:
    job = _job("arc", status=JobStatus.RUNNING, attempts=1)
    attempt = JobAttempt.objects.create(job=job, number=1, backend="engine:x")
    services.job_succeed(
        job=job,
        attempt=attempt,
        text="Part one",
        prompt_tokens=5,
        completion_tokens=64,
        latency_ms=10.0,
        finish_reason="length",
    )
    job.refresh_from_db()
    assert job.truncated and job.finish_reason == "length"
    event = services.job_event(job)
    assert event["truncated"] is True and event["finish_reason"] == "length"


@pytest.mark.django_db
def test_the_jobs_api_says_when_an_answer_was_cut_off(
    api: APIClient, make_key: Callable[..., str]
) -> None:
    raw = make_key("jobs")
    key = ApiKey.objects.get()
    job = _job("arc", submitted_by_key=key, status=JobStatus.SUCCEEDED, finish_reason="length")
    body = api.get(f"/api/v1/jobs/{job.id}", **bearer(raw)).json()
    assert body["truncated"] is True and body["finish_reason"] == "length"
    listed = api.get("/api/v1/jobs/", **bearer(raw)).json()
    assert listed[0]["truncated"] is True


# --- prompts that cannot fit are refused at submit ----------------------------------------------


@pytest.mark.django_db
def test_the_check_counts_prompt_and_max_tokens_against_the_served_context(
    settings: Any, tiers_on_cpu: None
) -> None:
    def request(prompt: str, max_tokens: int) -> services.InferenceRequest:
        return services.InferenceRequest(
            messages=[{"role": "user", "content": prompt}], sla="async", max_tokens=max_tokens
        )

    services.check_job_fits(request=request("x" * 8000, 2000))  # about 2,000 + 2,000 tokens
    with pytest.raises(services.JobRefused) as refused:
        services.check_job_fits(request=request("x" * 8000, 2100))
    assert refused.value.field == "max_tokens"  # the prompt alone fits: ask for fewer
    with pytest.raises(services.JobRefused) as refused:
        services.check_job_fits(request=request(LONG_PROMPT, 200))
    assert refused.value.field == "prompt" and "4,096-token context window" in str(refused.value)
    # vLLM serves Silver's model with an 8k window: the same prompt fits there.
    settings.BODYBROKER_TIERS = {
        **settings.BODYBROKER_TIERS,
        "bronze": {**CPU_BRONZE, "engine": "vllm"},
    }
    services.check_job_fits(request=request(LONG_PROMPT, 200))


@pytest.mark.django_db
def test_the_jobs_page_refuses_a_prompt_that_cannot_fit(
    client: Client, otto: User, tiers_on_cpu: None
) -> None:
    client.force_login(otto)
    response = client.post("/jobs/", {"prompt": LONG_PROMPT, "max_tokens": "200"})
    assert response.status_code == 400
    page = html.unescape(response.content.decode())
    assert re.search(r"Not queued: the prompt is about 5,2\d\d tokens", page), page
    assert "the 4,096-token context window of Bronze" in page
    assert LONG_PROMPT.strip() in page  # kept in the form to shorten
    assert not Job.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("shape", ["prompt", "messages"])
def test_the_rest_door_refuses_an_async_prompt_that_cannot_fit(
    api: APIClient, make_key: Callable[..., str], tiers_on_cpu: None, shape: str
) -> None:
    body: dict[str, Any] = {"sla": "async", "max_tokens": 200}
    if shape == "prompt":
        body["prompt"] = LONG_PROMPT
    else:
        body["messages"] = [{"role": "user", "content": LONG_PROMPT}]
    response = api.post("/api/v1/infer", body, format="json", **bearer(make_key("infer", "jobs")))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert "4,096-token context window" in error["message"]
    assert list(error["fields"]) == [shape]
    assert not Job.objects.exists()


def test_the_openai_door_refuses_a_bronze_prompt_that_cannot_fit(
    asgi_server: LiveServer, make_key: Callable[..., str], settings: Any
) -> None:
    settings.BODYBROKER_TIERS = {**settings.BODYBROKER_TIERS, "bronze": CPU_BRONZE}
    response = httpx.post(
        f"{asgi_server.url}/v1/chat/completions",
        json={
            "model": "bronze",
            "messages": [{"role": "user", "content": LONG_PROMPT}],
            "max_tokens": 200,
        },
        headers={"Authorization": f"Bearer {make_key('infer', 'jobs')}"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "4,096-token context window" in error["message"]
    assert not Job.objects.exists()
