"""Retrieval: chunking, the embedded index with the real embedder, the OpenSearch bodies, both
question sets of the demo corpus, and small talk that finds no lore (so no test junk)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from apps.story import selectors, services
from apps.story.corpus import QUESTION_SETS, load_questions
from apps.story.models import LoreChunk
from apps.story.retrieval import lore_query
from apps.story.retrieval.base import ChunkDoc, LoreQuery, fuse, stem
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
    assert "ledger" not in as_silas
    market = "Where do the candle makers and butchers sell?"
    assert "market" in [h.entry_slug for h in selectors.lore_search(query=market, persona="silas")]


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

    def hit(chunk_id: str, slug: str, score: float = 1.0, vector: Any = None) -> dict[str, Any]:
        entry_id, ordinal = chunk_id.split(":")
        source = {
            "chunk_id": chunk_id,
            "entry_id": entry_id,
            "entry_slug": slug,
            "entry_title": slug,
            "kind": "item",
            "text": "t",
            "ordinal": ordinal,
        }
        if vector is not None:
            source["vector"] = vector
        return {"_score": score, "_source": source}

    response = {
        "responses": [
            {
                "hits": {
                    "hits": [
                        hit("1:0", "ledger", vector=[0.6, 0.8]),  # cosine 1.0
                        hit("2:0", "market", vector=[0.8, 0.6]),  # cosine 0.96
                        hit("1:0", "ledger", vector=[0.6, 0.8]),  # again, from another index
                        hit("4:0", "docks", vector=[1.0, 0.0]),  # cosine 0.6
                    ]
                }
            },
            {"hits": {"hits": [hit("2:0", "market", 12.0), hit("3:0", "morgue", 3.0)]}},
        ]
    }
    hits = index.hits_from_msearch(response, query)
    # market: 0.96 + 0.3 × 12/12; ledger: 1.0, no word matched; morgue, found by words only:
    # at most the farthest vector's 0.6, + 0.3 × 3/12; docks: 0.6.
    assert [h.entry_slug for h in hits] == ["market", "ledger"]
    assert hits[0].score == pytest.approx(0.96 + 0.3)
    # The k-NN answer brings the vectors (so the cosine is exact); the words' answer does not.
    assert "_source" not in knn and lexical["_source"] == {"excludes": ["vector"]}
    assert lexical["query"]["bool"]["must"]["multi_match"]["fuzziness"] == "AUTO"


def test_fusion_keeps_a_clear_lead_in_one_ranking_over_middling_agreement() -> None:
    # "c" is far ahead on words and only a little behind in meaning: it stays first, ahead of
    # passages a little closer in meaning that barely share a word.
    fused = fuse(
        [
            ([("a", 0.40), ("b", 0.42), ("c", 0.38)], 1.0),
            ([("c", 1.0), ("a", 0.1), ("b", 0.05)], 0.3),
        ]
    )
    assert [key for key, _ in fused] == ["c", "b", "a"]


def test_the_stemmer_folds_the_forms_players_and_writers_use() -> None:
    pairs = [
        ("bodies", "body"),
        ("drowned", "drowning"),
        ("stitched", "stitch"),
        ("burns", "burning"),
        ("digging", "dig"),
        ("candles", "candle"),
    ]
    for one, other in pairs:
        assert stem(one) == stem(other), (one, other)
    assert stem("sister") != stem("sexton")


@pytest.mark.parametrize("name", sorted(QUESTION_SETS))
def test_both_question_sets_find_their_entries_in_the_demo_corpus(erin: User, name: str) -> None:
    """recall@5 of each shipped question set on the demo corpus, with the real embedder: the
    paraphrased set asks as players word things (synonyms, indirect references, typos)."""
    call_command("seed_lore", "--as", erin.username, "--index", verbosity=0)
    questions = load_questions(name)
    found = 0
    missed = []
    for item in questions:
        slugs = [h.entry_slug for h in selectors.lore_search(query=item["q"], limit=5)]
        if set(slugs) & set(item["expect"]):
            found += 1
        else:
            missed.append((item["q"], item["expect"], slugs))
    assert found / len(questions) >= 0.9, missed


def test_small_talk_finds_no_lore_so_test_entries_stay_out_of_prompts(
    alice: User, erin: User, mara: Any
) -> None:
    """Test entries a writer or a fuzzer published on a running stack ("test", "asdf") are the
    nearest passages to small talk; nearest is not relevant, so an NPC's or the storyteller's
    context gets none of them, while a real question still finds its lore."""
    write(alice, "test", title="test", body="test")
    write(alice, "asdf", title="asdf", body="asdf asdf")
    write(alice, "test-entry-2", title="Test entry 2", body="Lorem ipsum dolor sit amet.")
    write(
        alice,
        "salt-wards",
        kind="rule",
        title="Salt Wards",
        body="A line of sea salt across a threshold stops the walking dead.",
    )
    for slug in ("mara-voss", "test", "asdf", "test-entry-2", "salt-wards"):
        publish(slug, erin)
    junk = {"test", "asdf", "test-entry-2"}

    for text in ("who are you?", "good evening", "what's your name?", "any news?", "bye"):
        for persona in (None, "mara-voss"):
            context = selectors.lore_context(query=text, persona=persona, limit=4)
            assert not {c["slug"] for c in context} & junk, (text, persona, context)
    hits = selectors.lore_search(query="how do I keep the dead out of my house?", limit=4)
    assert hits and hits[0].entry_slug == "salt-wards"


def test_a_word_no_passage_uses_finds_the_lore_by_its_meaning_or_spelling(
    alice: User, erin: User
) -> None:
    write(
        alice, "watch", kind="faction", title="The Night Watch", body="The constables of the quay."
    )
    write(alice, "lamp", kind="item", title="The Weeping Lantern", body="It drips seawater.")
    for slug in ("watch", "lamp"):
        publish(slug, erin)
    index = EmbeddedLoreIndex()

    meaning = lore_query(text="a policeman", persona=None, limit=2)
    assert stem("constables") in index.memory()._term_weights(meaning)
    assert [h.entry_slug for h in index.search(meaning)][0] == "watch"
    typo = lore_query(text="the lanturn", persona=None, limit=2)
    assert stem("lantern") in index.memory()._term_weights(typo)
    assert [h.entry_slug for h in index.search(typo)][0] == "lamp"


def test_the_storyteller_reviews_against_published_lore_only(alice: User, erin: User) -> None:
    """A review's "established lore" is what is linked and published, as it was published: not
    a draft linking to the entry (a writer's trial, the storyteller's own earlier drafts), and
    not an edit still unpublished."""
    write(alice, "gate", kind="location", title="The Gate", body="Iron gate to [[warden]].")
    write(alice, "warden", kind="character", title="The Warden", body="Keeps the gate.")
    write(alice, "trial", title="Trial entry", body="test [[gate]] test")  # a draft
    for slug in ("gate", "warden"):
        publish(slug, erin)
    services.lore_entry_update(
        slug="warden", base_revision=1, changes={"body": "Unpublished: the warden is dead."}
    )
    gate = selectors.lore_entry(slug="gate")
    assert gate is not None

    related = selectors.lore_related_entries(entry=gate)

    assert [(r.title, r.body) for r in related] == [("The Warden", "Keeps the gate.")]
