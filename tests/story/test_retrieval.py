"""Retrieval: chunking, the embedded index with the real embedder, the OpenSearch bodies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User

from apps.story import selectors, services
from apps.story.models import LoreChunk
from apps.story.retrieval.base import ChunkDoc, LoreQuery, fuse
from apps.story.retrieval.chunking import chunk_markdown
from apps.story.retrieval.embedded import EmbeddedLoreIndex
from apps.story.retrieval.embedder import embed_query
from apps.story.retrieval.opensearch import OpenSearchLoreIndex
from tests.story.conftest import write


def publish(slug: str, editor: User) -> None:
    entry = services.lore_entry_publish(
        slug=slug,
        revision_number=selectors.lore_entry(slug=slug).head_number,  # type: ignore[union-attr]
        published_by=editor,
    )
    services.lore_entry_index(entry_id=entry.pk)


def test_chunking_splits_at_headings_and_packs_paragraphs() -> None:
    body = "Intro para.\n\n## Manner\nSoft-spoken [[silas-crane|Silas]].\n\n" + "\n\n".join(
        f"Paragraph {i} " + "word " * 60 for i in range(4)
    )
    passages = chunk_markdown(summary="The broker.", body=body, max_chars=400)

    assert passages[0].heading == "" and passages[0].text.startswith("The broker.\nIntro para.")
    assert passages[1].heading == "Manner" and "Soft-spoken Silas." in passages[1].text
    assert all(len(p.text) <= 400 for p in passages)
    assert [p.ordinal for p in passages] == list(range(len(passages)))


def test_published_lore_is_searchable_and_drafts_are_not(alice: User, erin: User) -> None:
    write(
        alice,
        "brass-lung",
        kind="item",
        title="The Brass Lung",
        body="A bellows machine that pumps air into corpses until they breathe.",
    )
    write(
        alice,
        "salt-wards",
        kind="rule",
        title="Salt Wards",
        body="A line of sea salt across a threshold stops the walking dead.",
    )
    publish("brass-lung", erin)

    slugs = [
        h.entry_slug for h in selectors.lore_search(query="machine that makes the dead breathe")
    ]
    assert slugs == ["brass-lung"]  # the draft is not in the index at all

    publish("salt-wards", erin)
    hits = selectors.lore_search(query="what stops the dead at a doorway?", limit=2)
    assert hits[0].entry_slug == "salt-wards"


def test_a_persona_only_finds_lore_its_knowledge_scope_grants(
    alice: User, erin: User, mara: Any
) -> None:
    write(alice, "silas", kind="character", title="Silas Crane", body="The broker.")
    write(
        alice,
        "ledger",
        kind="item",
        title="The Ledger of Debts",
        knowledge_scope=["mara-voss"],
        body="The broker's calfskin ledger of every body bought and the debt it left.",
    )
    write(
        alice,
        "market",
        kind="location",
        title="Tallow Market",
        body="Candle makers and butchers under a glass roof.",
    )
    for slug in ("silas", "ledger", "market"):
        publish(slug, erin)
    question = "Where does the broker write down the debts of bodies he buys?"

    as_mara = [h.entry_slug for h in selectors.lore_search(query=question, persona="mara-voss")]
    as_silas = [h.entry_slug for h in selectors.lore_search(query=question, persona="silas")]
    as_writer = [h.entry_slug for h in selectors.lore_search(query=question)]

    assert as_mara[0] == "ledger" and as_writer[0] == "ledger"
    assert "ledger" not in as_silas and "market" in as_silas


def test_the_index_follows_republishing_and_a_rebuild(alice: User, erin: User) -> None:
    write(alice, "fog", title="Fog", body="Fog comes off the marsh every evening.")
    publish("fog", erin)
    first = list(LoreChunk.objects.values_list("revision_number", flat=True))
    services.lore_entry_update(slug="fog", base_revision=1, changes={"body": "Fog never lifts."})
    publish("fog", erin)

    assert first == [1]
    assert list(LoreChunk.objects.values_list("revision_number", "text")) == [
        (2, "Fog never lifts.")
    ]
    assert services.lore_index_rebuild() == (1, 1)


def test_the_embedded_index_filters_by_spoiler_level_and_reloads_on_change(
    alice: User, erin: User
) -> None:
    index = EmbeddedLoreIndex()
    write(
        alice, "ending", title="The Ending", spoiler_level=3, body="The broker is dead all along."
    )
    publish("ending", erin)
    vector = embed_query("is the broker dead")

    assert [h.entry_slug for h in index.search(LoreQuery("broker dead", vector))] == ["ending"]
    assert index.search(LoreQuery("broker dead", vector, max_spoiler=1)) == []

    assert len(index.memory()) == 1
    LoreChunk.objects.all().delete()  # behind the index's back: the generation did not move
    assert len(index.memory()) == 1  # so this process keeps its copy
    EmbeddedLoreIndex()._bump()  # what another process's write does
    assert len(index.memory()) == 0


def _doc(scope: tuple[str, ...]) -> ChunkDoc:
    return ChunkDoc(
        1, "ledger", "Ledger", "item", 2, 0, "", "text", scope, 2, np.ones(4, dtype=np.float32)
    )


def test_opensearch_puts_each_passage_in_the_shared_or_its_personas_indices() -> None:
    index = OpenSearchLoreIndex(client=None, prefix="lore", dimension=4)

    assert index.indices_for(_doc(())) == ["lore-shared"]
    assert index.indices_for(_doc(("mara-voss", "silas"))) == [
        "lore-persona-mara-voss",
        "lore-persona-silas",
    ]
    actions = index.bulk_actions([_doc(("mara-voss", "silas"))])
    assert [a.get("index", {}).get("_index") for a in actions[::2]] == [
        "lore-persona-mara-voss",
        "lore-persona-silas",
    ]
    assert actions[1]["vector"] == [1.0, 1.0, 1.0, 1.0] and actions[1]["chunk_id"] == "1:0"
    mapping = index.index_body()
    assert mapping["settings"]["index"]["knn"] is True
    assert mapping["mappings"]["properties"]["vector"]["dimension"] == 4


def test_opensearch_searches_a_personas_index_with_the_shared_one_and_fuses_rankings() -> None:
    index = OpenSearchLoreIndex(client=None, prefix="lore", dimension=2)
    query = LoreQuery(
        "debts", np.array([0.6, 0.8], dtype=np.float32), persona="mara-voss", max_spoiler=1, limit=2
    )

    header, knn, header2, lexical = index.msearch_body(query)

    assert header["index"] == header2["index"] == "lore-shared,lore-persona-mara-voss"
    assert index.search_indices(None) == "lore-*"
    assert knn["query"]["knn"]["vector"]["vector"] == pytest.approx([0.6, 0.8])
    assert knn["query"]["knn"]["vector"]["filter"]["bool"]["filter"] == [
        {"range": {"spoiler_level": {"lte": 1}}}
    ]
    assert lexical["query"]["bool"]["must"]["multi_match"]["query"] == "debts"

    def hit(chunk_id: str, slug: str) -> dict[str, Any]:
        entry_id, ordinal = chunk_id.split(":")
        return {
            "_source": {
                "chunk_id": chunk_id,
                "entry_id": entry_id,
                "entry_slug": slug,
                "entry_title": slug,
                "kind": "item",
                "text": "t",
                "ordinal": ordinal,
            }
        }

    response = {
        "responses": [
            {"hits": {"hits": [hit("1:0", "ledger"), hit("2:0", "market"), hit("1:0", "ledger")]}},
            {"hits": {"hits": [hit("2:0", "market"), hit("3:0", "morgue")]}},
        ]
    }
    hits = index.hits_from_msearch(response, query)
    assert [h.entry_slug for h in hits] == ["market", "ledger"]


def test_rank_fusion_rewards_agreement_between_rankings() -> None:
    fused = fuse([(["a", "b", "c"], 1.0), (["c", "b"], 1.0)])
    assert {key for key, _ in fused[:2]} == {"b", "c"} and fused[2][0] == "a"
