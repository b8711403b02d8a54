"""Lore writes: revisions, conflicts, restores, links, knowledge scopes, publishing, checks."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from apps.admin_ops import services as ops
from apps.admin_ops.models import AuditEvent
from apps.security.scopes import ADMIN_ROLE, scopes_for_roles
from apps.story import selectors, services
from apps.story.models import LoreEntry, LoreLink, LoreRevision, LoreStatus
from tests.story.conftest import write


def test_every_save_is_a_new_immutable_revision_with_author_and_message(
    alice: User, erin: User
) -> None:
    created = write(alice, "brass-lung", kind="item", body="A bellows of brass.")
    assert created.revision.number == 1 and created.entry.status == LoreStatus.DRAFT

    updated = services.lore_entry_update(
        slug="brass-lung",
        base_revision=1,
        changes={"body": "A bellows of brass and pig leather."},
        message="more detail",
        author=erin,
    )

    assert updated.revision.number == 2
    revisions = list(LoreRevision.objects.filter(entry=created.entry).order_by("number"))
    assert [(r.number, r.author, r.message) for r in revisions] == [
        (1, alice, "created"),
        (2, erin, "more detail"),
    ]
    assert revisions[0].body == "A bellows of brass."  # the old revision is untouched
    entry = LoreEntry.objects.get(slug="brass-lung")
    assert entry.body == "A bellows of brass and pig leather." and entry.head_number == 2


def test_a_second_save_based_on_the_same_revision_is_a_conflict_and_writes_nothing(
    alice: User, erin: User
) -> None:
    write(alice, "the-ward", body="Black water.")
    services.lore_entry_update(
        slug="the-ward", base_revision=1, changes={"body": "Erin's water."}, author=erin
    )

    with pytest.raises(services.LoreConflictError) as conflict:
        services.lore_entry_update(
            slug="the-ward", base_revision=1, changes={"body": "Alice's water."}, author=alice
        )

    assert conflict.value.current.number == 2
    assert conflict.value.current.body == "Erin's water."
    assert LoreEntry.objects.get(slug="the-ward").body == "Erin's water."
    assert LoreRevision.objects.filter(entry__slug="the-ward").count() == 2


def test_a_save_based_on_an_old_revision_merges_the_fields_only_one_side_changed(
    alice: User, erin: User
) -> None:
    write(alice, "fog", summary="Sea fog.", body="Fog comes at dusk.", tags=["weather"])
    services.lore_entry_update(  # erin's summary, saved while alice edits the body
        slug="fog", base_revision=1, changes={"summary": "Fog that talks."}, author=erin
    )

    result = services.lore_entry_update(  # alice submits every field, as the form does
        slug="fog",
        base_revision=1,
        changes={
            "kind": "freeform",
            "title": "Fog",
            "summary": "Sea fog.",
            "body": "Fog comes at dusk.\nIt smells of rot.",
            "tags": ["weather"],
            "knowledge_scope": [],
            "spoiler_level": 0,
        },
        message="the smell",
        author=alice,
    )

    entry = LoreEntry.objects.get(slug="fog")
    assert entry.summary == "Fog that talks."  # erin's change is not reverted
    assert entry.body == "Fog comes at dusk.\nIt smells of rot."
    assert (result.revision.number, result.revision.message) == (3, "the smell")
    assert result.merged is not None
    assert result.merged.taken_from_theirs == ["summary"]
    assert result.merged.taken_from_mine == ["body"]


def test_a_conflict_covers_every_field_both_sides_changed_and_writes_nothing(
    alice: User, erin: User, mara: Any
) -> None:
    write(alice, "ledger", title="Ledger", summary="A book.", body="Debts.", tags=["book"])
    services.lore_entry_update(
        slug="ledger",
        base_revision=1,
        changes={
            "title": "The Ledger",
            "tags": ["book", "debt"],
            "knowledge_scope": ["mara-voss"],
            "spoiler_level": 2,
            "body": "Debts, in red.",
        },
        author=erin,
    )

    with pytest.raises(services.LoreConflictError) as conflict:
        services.lore_entry_update(
            slug="ledger",
            base_revision=1,
            changes={
                "title": "The Ledger",  # the same change as erin's: no conflict
                "summary": "A calfskin book.",  # only alice: merges
                "tags": ["BOOK", "Secret"],  # normalised before comparing
                "spoiler_level": 1,
                "body": "Debts, in blood.",
            },
            author=alice,
        )

    merge = conflict.value.merge
    assert merge is not None and conflict.value.base is not None
    assert [f.name for f in merge.conflicts] == ["body", "tags", "spoiler_level"]
    tags = merge.conflicts[1]
    assert (tags.base, tags.theirs, tags.mine) == (["book"], ["book", "debt"], ["book", "secret"])
    assert merge.taken_from_theirs == ["knowledge_scope"]
    assert merge.taken_from_mine == ["summary"]
    assert merge.content["title"] == "The Ledger"
    assert LoreEntry.objects.get(slug="ledger").head_number == 2


def test_a_save_from_an_unknown_revision_merges_nothing_on_its_own(alice: User) -> None:
    write(alice, "fog", summary="Sea fog.", body="Dusk.")
    services.lore_entry_update(slug="fog", base_revision=1, changes={"summary": "Talking fog."})

    with pytest.raises(services.LoreConflictError) as conflict:
        services.lore_entry_update(slug="fog", base_revision=7, changes={"body": "Noon."})

    merge = conflict.value.merge
    assert merge is not None and conflict.value.base is None
    assert [f.name for f in merge.conflicts] == ["body"]  # fields not sent count as unchanged
    assert merge.content["summary"] == "Talking fog."


@pytest.mark.django_db(transaction=True)
def test_two_writers_saving_at_once_get_one_revision_and_one_conflict() -> None:
    from tests.conftest import _person

    alice = _person("alice", "writer")
    erin = _person("erin", "editor")
    write(alice, "race", body="start")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def save(author: User, text: str) -> None:
        barrier.wait()
        try:
            services.lore_entry_update(
                slug="race", base_revision=1, changes={"body": text}, author=author
            )
            outcomes.append("saved")
        except services.LoreConflictError:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=save, args=(alice, "alice")),
        threading.Thread(target=save, args=(erin, "erin")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["conflict", "saved"]
    assert LoreRevision.objects.filter(entry__slug="race").count() == 2


def test_restoring_an_old_revision_adds_a_new_revision_and_keeps_history(alice: User) -> None:
    write(alice, "chapel", body="wooden")
    services.lore_entry_update(slug="chapel", base_revision=1, changes={"body": "stone"})

    restored = services.lore_entry_restore(slug="chapel", number=1, base_revision=2, author=alice)

    assert restored.revision.number == 3 and restored.revision.restored_from == 1
    assert restored.entry.body == "wooden"
    assert [r.body for r in selectors.lore_history(entry=restored.entry)] == [
        "wooden",
        "stone",
        "wooden",
    ]


def test_links_give_backlinks_broken_ones_warn_and_heal_when_the_target_is_written(
    alice: User,
) -> None:
    saved = write(
        alice, "morgue", body="Run by [[mara-voss]] beside [[The Drowned Ward|the ward]]."
    )
    assert saved.warnings == [
        "broken link [[mara-voss]] on line 1: no such entry yet",
        "broken link [[the-drowned-ward]] on line 1: no such entry yet",
    ]

    mara = write(alice, "mara-voss", kind="character", title="Mara Voss").entry

    links = selectors.lore_links(entry=saved.entry)
    assert {(link.target_slug, link.target_id) for link in links["outgoing"]} == {
        ("mara-voss", mara.pk),
        ("the-drowned-ward", None),
    }
    assert [link.source.slug for link in selectors.lore_links(entry=mara)["backlinks"]] == [
        "morgue"
    ]


@pytest.mark.parametrize(
    "body",
    ["An [[ ]] empty link", "Never [[closed", "A [[<script>]] link", "x [[a|b]] then [[c"],
)
def test_malformed_links_are_refused_naming_the_body(alice: User, body: str) -> None:
    with pytest.raises(services.LoreValidationError) as error:
        write(alice, "bad-links", body=body)
    assert "body" in error.value.fields
    assert not LoreEntry.objects.filter(slug="bad-links").exists()


def test_a_knowledge_scope_may_only_name_characters(alice: User, mara: Any) -> None:
    write(alice, "secret", knowledge_scope=["mara-voss"])  # a character: fine

    with pytest.raises(services.LoreValidationError) as error:
        write(alice, "other-secret", knowledge_scope=["mara-voss", "nobody"])
    assert error.value.fields["knowledge_scope"][0].startswith("unknown persona 'nobody'")


def test_oversized_fields_are_refused_naming_each(alice: User, settings: Any) -> None:
    settings.BODYBROKER_LORE_MAX_BODY_CHARS = 100
    with pytest.raises(services.LoreValidationError) as error:
        write(alice, "big", title="t" * 201, body="x" * 101, tags=["ok"] * 3 + ["y" * 41])
    assert set(error.value.fields) == {"title", "body", "tags"}


def test_writers_draft_and_editors_publish_the_revision_they_reviewed(
    alice: User, erin: User, django_capture_on_commit_callbacks: Any
) -> None:
    write(alice, "flood", kind="event", body="The tide came.")
    with pytest.raises(services.LorePermissionError):
        services.lore_entry_publish(slug="flood", revision_number=1, published_by=alice)

    services.lore_entry_update(slug="flood", base_revision=1, changes={"body": "It came at night."})
    with pytest.raises(services.LoreConflictError):  # erin reviewed r1, but r2 is newest
        services.lore_entry_publish(slug="flood", revision_number=1, published_by=erin)

    with django_capture_on_commit_callbacks() as callbacks:
        entry = services.lore_entry_publish(slug="flood", revision_number=2, published_by=erin)

    assert entry.status == LoreStatus.PUBLISHED and entry.published_number == 2
    assert entry.published_by == erin
    assert len(callbacks) == 1  # indexing is queued once the publish commits
    event = AuditEvent.objects.get(action="lore.publish", target="lore:flood")
    assert event.actor_user == erin and event.after["published_revision"] == 2


def test_an_editor_asking_to_publish_opens_a_change_request_someone_else_approves(
    alice: User, erin: User, adam: User
) -> None:
    write(alice, "flood", kind="event", body="The tide came.")

    asked = services.lore_publish_request(
        slug="flood", revision_number=1, reason="ready", requested_by=erin
    )
    again = services.lore_publish_request(slug="flood", revision_number=1, requested_by=alice)

    change_request = asked.change_request
    assert change_request is not None and change_request.kind == "lore.publish"
    assert again.already_open and again.change_request.pk == change_request.pk
    assert LoreEntry.objects.get(slug="flood").published_number is None
    with pytest.raises(ops.ChangeRequestError, match="someone else must approve"):
        ops.change_request_approve(  # even with an admin's scopes: not her own request
            change_request_id=change_request.pk, user=erin, scopes=scopes_for_roles([ADMIN_ROLE])
        )
    ops.change_request_approve(
        change_request_id=change_request.pk, user=adam, scopes=scopes_for_roles([ADMIN_ROLE])
    )
    ops.change_request_execute(change_request_id=change_request.pk)

    entry = LoreEntry.objects.get(slug="flood")
    assert entry.published_number == 1 and entry.published_by == adam
    assert AuditEvent.objects.filter(action="lore.publish", target="lore:flood").count() == 1


def test_only_a_studio_that_opted_out_lets_editors_publish_at_once(
    alice: User, erin: User, settings: Any
) -> None:
    write(alice, "flood", kind="event", body="The tide came.")
    assert not services.lore_publish_direct(user=erin)

    settings.BODYBROKER_LORE_PUBLISH = "editors"
    outcome = services.lore_publish_request(slug="flood", revision_number=1, requested_by=erin)

    assert outcome.change_request is None and outcome.entry.published_number == 1
    assert not services.lore_publish_direct(user=alice)  # writers still ask
    assert AuditEvent.objects.get(action="lore.publish").actor_user == erin


def test_rule_checks_find_contradicting_facts_and_impossible_dates(alice: User, mara: Any) -> None:
    write(
        alice,
        "flood",
        kind="event",
        body="The marsh drowned. [[mara-voss]] survived.\n\n"
        "- Date: 1887\n- [[mara-voss]] born: 1870\n",
    )
    services.lore_entry_update(
        slug="mara-voss",
        base_revision=1,
        changes={
            "body": "She saw [[flood]]; she remembers MARA VOSS as a girl.\n\n"
            "- Born: 1866\n- Died: 1880\n"
        },
    )
    entry = LoreEntry.objects.get(slug="mara-voss")

    findings = {(f.rule, f.message) for f in selectors.lore_consistency_report(entry=entry)}

    assert ("facts", "says born: 1866; [[flood]] says born: 1870") in findings
    assert ("dates", "this character died in 1880 but [[flood]] is in 1887") in findings
    assert ("links", "[[flood]] is still a draft: players can't see it") in findings
    assert ("names", "writes 'MARA VOSS'; the entry is titled 'Mara Voss'") not in findings


def test_name_checks_catch_a_miscapitalised_title(alice: User, mara: Any) -> None:
    write(alice, "ward", body="Only mara voss goes down there.")
    entry = LoreEntry.objects.get(slug="ward")
    findings = [f.message for f in selectors.lore_consistency_report(entry=entry)]
    assert "writes 'mara voss'; the entry is titled 'Mara Voss'" in findings


def test_quest_validation_finds_unreachable_beats_dead_ends_and_missing_lore(
    alice: User, mara: Any
) -> None:
    quest = services.quest_create(title="The Unpaid Debt")
    services.quest_node_save(
        quest=quest, key="start", title="Start", is_start=True, lore_refs=["mara-voss"]
    )
    services.quest_node_save(quest=quest, key="middle", title="Middle", lore_refs=["ghost"])
    services.quest_node_save(quest=quest, key="end", title="End", is_ending=True)
    services.quest_node_save(quest=quest, key="island", title="Island", is_ending=True)
    services.quest_edge_add(quest=quest, source_key="start", target_key="middle")

    graph = selectors.quest_graph(quest=quest)

    assert graph.unreachable == ["end", "island"]
    assert graph.dead_ends == ["middle"]
    assert graph.missing_lore == [("middle", "ghost")]

    services.quest_edge_add(quest=quest, source_key="middle", target_key="end", condition="paid")
    services.quest_node_delete(quest=quest, key="island")
    services.quest_node_save(quest=quest, key="middle", title="Middle", lore_refs=["mara-voss"])
    graph = selectors.quest_graph(quest=quest)
    assert graph.problems == 0


def test_an_edge_between_unknown_beats_is_refused(alice: User) -> None:
    quest = services.quest_create(title="Q")
    with pytest.raises(services.LoreValidationError) as error:
        services.quest_edge_add(quest=quest, source_key="a", target_key="b")
    assert set(error.value.fields) == {"source", "target"}
    assert LoreLink.objects.count() == 0
