"""The Storyteller and RAG MCP servers through the SDK's own streamable-HTTP client against the
real application, and their tool functions as the Silver dialogue path calls them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from apps.router.models import Job
from apps.story import mcp as story_mcp
from apps.story import services
from apps.story.models import LoreEntry, StoryJob
from tests.story.conftest import write
from tests.support.live_asgi import call_tools, list_tools

pytestmark = pytest.mark.django_db(transaction=True)


def published_corpus(alice: User, erin: User) -> None:
    write(
        alice,
        "mara-voss",
        kind="character",
        title="Mara Voss",
        summary="Morgue attendant.",
        body="- Born: 1866\n",
    )
    write(
        alice,
        "ledger",
        kind="item",
        title="The Ledger of Debts",
        knowledge_scope=["mara-voss"],
        body="The broker writes every body he buys and the debt it left in a calfskin book.",
    )
    write(alice, "fog", title="Fog", body="Fog comes off the marsh every evening.")
    for slug in ("mara-voss", "ledger", "fog"):
        services.lore_entry_publish(slug=slug, revision_number=1, published_by=erin)
        services.lore_entry_index(entry_id=LoreEntry.objects.get(slug=slug).pk)


def payload(result: Any) -> Any:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content) if isinstance(content, dict) else content
    return json.loads(result.content[0].text)


def test_both_servers_list_their_tools_to_a_lore_key(
    live_server_url: str, make_key: Callable[..., str]
) -> None:
    key = make_key("lore")
    assert sorted(list_tools(f"{live_server_url}/mcp/storyteller/", key)) == [
        "check_consistency",
        "generate_narrative",
        "retrieve_lore",
    ]
    assert sorted(list_tools(f"{live_server_url}/mcp/rag/", key)) == [
        "retrieve_context",
        "search_lore",
    ]


def test_a_key_without_the_lore_scope_is_refused(
    live_server_url: str, make_key: Callable[..., str]
) -> None:
    response = httpx.post(
        f"{live_server_url}/mcp/rag/",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {make_key('infer', 'jobs')}",
        },
    )
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "the /mcp/rag/ server needs the 'lore' scope"


def test_rag_search_and_context_respect_the_personas_knowledge(
    live_server_url: str, make_key: Callable[..., str], alice: User, erin: User
) -> None:
    published_corpus(alice, erin)
    question = "where are the debts of bought bodies written?"
    as_mara, as_fog_knower, context, bad = call_tools(
        f"{live_server_url}/mcp/rag/",
        make_key("lore"),
        [
            ("search_lore", {"query": question, "persona": "mara-voss", "limit": 2}),
            ("search_lore", {"query": question, "limit": 3}),
            ("retrieve_context", {"topic": question, "persona": "mara-voss", "max_chars": 400}),
            ("search_lore", {"query": question, "persona": "nobody"}),
        ],
        tier="silver",
    )
    assert payload(as_mara)[0]["slug"] == "ledger"
    assert payload(as_fog_knower)[0]["slug"] == "ledger"
    block = payload(context)
    assert block["sources"][0] == {"slug": "ledger", "title": "The Ledger of Debts"}
    assert "calfskin book" in block["context"] and len(block["context"]) <= 400
    assert bad.is_error and "no persona (character entry) 'nobody'" in bad.content[0].text


def test_the_storyteller_queues_narratives_for_bronze_only_and_checks_consistency(
    live_server_url: str, make_key: Callable[..., str], alice: User, erin: User
) -> None:
    published_corpus(alice, erin)
    url = f"{live_server_url}/mcp/storyteller/"
    key = make_key("lore")
    lore, check, silver_asks = call_tools(
        url,
        key,
        [
            ("retrieve_lore", {"topic": "calfskin ledger of debts", "limit": 1}),
            (
                "check_consistency",
                {"narrative": "[[mara-voss]] came.\n\n- [[mara-voss]] born: 1870"},
            ),
            ("generate_narrative", {"theme": "the fog", "parts": 2}),
        ],
        tier="silver",
    )
    assert [item["slug"] for item in payload(lore)] == ["ledger"]
    report = payload(check)
    assert report["consistent"] is False
    assert report["findings"][0]["rule"] == "facts"
    assert silver_asks.is_error and "silver tier may not call request tools" in (
        silver_asks.content[0].text
    )

    (queued,) = call_tools(
        url, key, [("generate_narrative", {"theme": "the fog", "parts": 2})], tier="bronze"
    )
    ids = payload(queued)
    job = Job.objects.get(pk=ids["job_id"])
    assert job.kind == "story.arc" and job.submitted_by_key is not None
    assert StoryJob.objects.get(pk=ids["story_job_id"]).params == {"theme": "the fog", "parts": 2}


def test_the_tool_functions_refuse_bad_input_plainly(alice: User) -> None:
    with pytest.raises(ValueError, match="query must be 1–500 characters"):
        story_mcp.search_lore("   ")
    with pytest.raises(ValueError, match="limit must be 1–20"):
        story_mcp.search_lore("fog", limit=99)
    with pytest.raises(ValueError, match="give exactly one of narrative or slug"):
        story_mcp.check_consistency()
    with pytest.raises(ValueError, match="invalid links"):
        story_mcp.check_consistency(narrative="[[unclosed")
    with pytest.raises(ValueError, match="parts"):
        story_mcp.generate_narrative("the fog", parts=40)
