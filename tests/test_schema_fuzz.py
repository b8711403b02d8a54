"""The REST API against its own OpenAPI schema.

schemathesis reads ``GET /api/schema/`` from the real Django application, generates requests for
every operation — valid ones and deliberately invalid ones — and sends them, authenticated as an
admin's key with every scope, through the same application. Any server error, or any status code
the schema does not document, fails the test.

Each operation is fuzzed with random path parameters (which find nothing: the 404 paths) and,
where it has any, once more aimed at a real lore entry, NPC, change request, job, storyteller job
or admin report (edits, conflicts, decisions). The run is bounded (a fixed number of examples per
operation, mode and aim) and derandomized, so CI sends the same requests every time.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.conf import settings
from django.contrib.auth.models import User
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from apps.admin_ops import services as ops_services
from apps.admin_ops.actors import Actor
from apps.npcs import services as npc_services
from apps.router.models import Job
from apps.security.models import ApiKey
from apps.security.scopes import ALL_SCOPES, GAME
from apps.security.services import api_key_create
from apps.story import services as story_services

# Examples per operation, generation mode and aim: enough for each operation to see valid
# bodies, each kind of invalid one and its error paths, while the whole run stays a short part
# of the suite on two cores. BODYBROKER_FUZZ_EXAMPLES asks for a deeper run.
MAX_EXAMPLES = int(os.environ.get("BODYBROKER_FUZZ_EXAMPLES", "12"))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CHECKS = [not_a_server_error, status_code_conformance]


@pytest.fixture
def unreachable_engines() -> Iterator[None]:
    """Every tier's engines at a port that refuses connections.

    Generations the fuzzer starts then fail fast and the chains answer from their cache and
    template links, so each request's whole path (routing, fallbacks, accounting) still runs
    without a model spending seconds on each of hundreds of examples; the engines' own answers
    are tested against the real engines elsewhere. The socket is bound but never listens, so
    nothing else can take the port while the test runs.
    """
    refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    refuser.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{refuser.getsockname()[1]}"
    saved = {tier: dict(conf) for tier, conf in settings.BODYBROKER_TIERS.items()}
    for conf in settings.BODYBROKER_TIERS.values():
        conf.update(urls=[url], fallback_urls=[url])
    try:
        yield
    finally:
        for tier, conf in saved.items():
            settings.BODYBROKER_TIERS[tier].update(conf)
        refuser.close()


@pytest.fixture
def wsgi_app() -> Iterator[WSGIHandler]:
    """The project's WSGI application, keeping the test's database connection open between
    requests (as Django's own test client does) so every request sees the test's rows."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(adam: User) -> dict[str, dict[str, Any]]:
    """One of each object a path parameter names, keyed by path prefix, then parameter.

    Bronze jobs these queue are never sent: the test's transaction never commits.
    """
    story_services.lore_entry_create(
        fields={"kind": "character", "title": "The Warden", "body": "Keeps the [[gate]]."},
        slug="the-warden",
        author=adam,
    )
    npc_services.npc_create(
        slug="warden", fields={"name": "The Warden", "safety_lines": ["Move along."]}
    )
    asker = api_key_create(name="asker", scopes=[GAME])[0]
    change_request = ops_services.change_request_create(
        kind="game_state.write",
        target="npc:warden",
        payload={"set": {"mood": "wary"}},
        reason="The player lingers at the gate.",
        actor=Actor(key=ApiKey.objects.get(pk=asker.pk)),
        scopes=frozenset({GAME}),
    )
    job = Job.objects.create(request={"messages": [], "max_tokens": 1}, submitted_by_user=adam)
    story_job = story_services.storyteller_arc_request(theme="The siege", parts=3)
    report = ops_services.admin_report_request(actor=Actor(user=adam))
    return {
        "/api/v1/lore/": {"slug": "the-warden", "number": 1, "story_job_id": str(story_job.pk)},
        "/api/v1/npcs/": {"slug": "warden"},
        "/api/v1/change-requests/": {"change_request_id": str(change_request.pk)},
        "/api/v1/jobs/": {"job_id": str(job.pk)},
        "/api/v1/admin-reports/": {"report_id": str(report.pk)},
    }


def _aimed(operation: Any, world: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The path parameters naming real objects, for an operation that has path parameters."""
    names = {parameter.name for parameter in operation.path_parameters}
    if not names:
        return None
    for prefix, values in world.items():
        if operation.path.startswith(prefix) and names <= set(values):
            return {name: values[name] for name in names}
    return None


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    path_parameters: dict[str, Any] | None,
    headers: dict[str, str],
    sent: Counter[str],
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @given(case=strategy)
    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        sent[operation.label] += 1
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "\n".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


@pytest.mark.django_db
def test_every_rest_operation_answers_as_its_schema_documents(
    unreachable_engines: None,
    wsgi_app: WSGIHandler,
    world: dict[str, dict[str, Any]],
    adam: User,
) -> None:
    # An admin's key: every scope, and a person behind it, as decisions need.
    raw_key = api_key_create(name="fuzzer", scopes=ALL_SCOPES, owner=adam)[1]
    headers = {"Authorization": f"Bearer {raw_key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    sent: Counter[str] = Counter()
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        aimed = _aimed(operation, world)
        for path_parameters in (None, aimed) if aimed else (None,):
            for mode in MODES:
                try:
                    _fuzz(operation, mode, path_parameters, headers, sent)
                # Every failing operation is reported, not only the first (schemathesis raises
                # its failures as an exception group).
                except (Exception, BaseExceptionGroup) as exc:
                    aim = ", at a real object" if path_parameters else ""
                    failures[f"{operation.label} ({mode.value}{aim})"] = _describe(exc)
    print(f"\nschemathesis: {operations} operations, {sum(sent.values())} requests")
    assert operations >= 29
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
