"""The writers' main flows in a real browser (Debian's Chromium via Playwright) against the
real ASGI app: no page reloads for the common actions, keyboard use, errors shown inline."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.admin_ops.models import AuditEvent, ChangeRequest
from apps.story import services
from apps.story.models import LoreEntry, LoreRevision, LoreStatus, Quest
from apps.story.views import ANSWER_SOURCES
from tests.browser_support import ConsoleErrors
from tests.story.conftest import write

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

Page = Any


def mark_page(page: Page) -> None:
    """Set a marker that a full page load would wipe."""
    page.evaluate("window.__no_reload = true")


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__no_reload === true"))


def test_a_writer_drafts_an_entry_with_live_preview_and_saves_from_the_keyboard(
    page_as: Callable[[str], Page], alice: User
) -> None:
    write(alice, "mara-voss", kind="character", title="Mara Voss")
    page = page_as("alice")
    page.goto("/lore/new")

    page.fill("#id_title", "The Drowned Ward")
    page.select_option("#id_kind", "location")
    page.locator("#id_body").fill("Run by [[mara-voss]].\n\nNext to [[the-morgue]].\n\n**Wet**.")
    preview = page.locator("#preview")
    preview.locator("a.wikilink", has_text="Mara Voss").wait_for()  # the title, not the slug
    assert preview.locator("strong").inner_text() == "Wet"
    assert "[[the-morgue]] (line 3) links to no entry yet" in preview.inner_text()
    assert preview.locator("a.wikilink.broken").inner_text() == "the-morgue (missing)"
    page.check("input[name=knowledge_scope][value=mara-voss]")

    page.locator("#id_body").press("Control+s")

    page.wait_for_url("**/lore/the-drowned-ward/?saved=1")
    assert page.locator(".flash").inner_text() == "Saved revision 1."
    assert page.locator("#status-pill").inner_text() == "draft"
    assert page.locator("#broken-links").is_visible()
    assert page.locator("#entry-body a.wikilink").all_inner_texts() == [
        "Mara Voss",
        "the-morgue (missing)",
    ]
    entry = LoreEntry.objects.get(slug="the-drowned-ward")
    assert entry.kind == "location" and entry.knowledge_scope == ["mara-voss"]
    assert entry.status == LoreStatus.DRAFT


def test_bad_input_is_shown_inline_and_nothing_typed_is_lost(
    page_as: Callable[[str], Page], alice: User, console_errors: ConsoleErrors
) -> None:
    console_errors.allow(r"status of 400 \(Bad Request\)", why="the form's errors answer 400")
    page = page_as("alice")
    page.goto("/lore/new")
    mark_page(page)
    page.fill("#id_title", "Broken")
    page.locator("#id_body").fill("A link that never [[closes")

    page.click("#editor button[type=submit]")

    page.locator("#form-errors").wait_for()
    assert "invalid links" in page.locator("#form-errors").inner_text()
    assert page.locator("#id_body").input_value() == "A link that never [[closes"
    assert not_reloaded(page)
    assert not LoreEntry.objects.exists()


def test_the_list_filters_and_searches_without_reloading(
    page_as: Callable[[str], Page], alice: User
) -> None:
    write(alice, "salt-wards", kind="rule", title="Salt Wards", body="Sea salt on the step.")
    write(alice, "brass-lung", kind="item", title="The Brass Lung", body="A bellows.")
    write(alice, "ledger", kind="item", title="The Ledger", body="Debts.", tags=["secret"])
    page = page_as("alice")
    page.goto("/lore/")
    mark_page(page)
    rows = page.locator("#results tbody tr[data-slug]")
    assert rows.count() == 3

    page.keyboard.press("Tab")  # the search box takes focus first (autofocus)
    page.locator("#id_q").press_sequentially("salt")
    page.wait_for_function("document.querySelectorAll('#results tr[data-slug]').length === 1")
    assert rows.first.get_attribute("data-slug") == "salt-wards"

    page.fill("#id_q", "")
    page.select_option("#id_kind", "item")
    page.wait_for_function("document.querySelectorAll('#results tr[data-slug]').length === 2")
    page.select_option("#id_tag", "secret")
    page.wait_for_function("document.querySelectorAll('#results tr[data-slug]').length === 1")
    assert rows.first.get_attribute("data-slug") == "ledger"
    assert "tag=secret" in page.url and not_reloaded(page)


def test_two_writers_editing_different_fields_of_one_revision_keep_both_changes(
    page_as: Callable[[str], Page], alice: User, erin: User
) -> None:
    write(alice, "fog", title="Fog", summary="Sea fog.", body="Fog comes at dusk.")
    writer_a = page_as("erin")
    writer_b = page_as("alice")
    writer_a.goto("/lore/fog/edit")
    writer_b.goto("/lore/fog/edit")  # both start from revision 1

    writer_a.fill("#id_summary", "Fog that talks.")
    writer_a.click("#editor button[type=submit]")
    writer_a.wait_for_url("**/lore/fog/")

    writer_b.locator("#id_body").fill("Fog comes at dusk.\nIt smells of rot.")
    writer_b.fill("#id_message", "the smell")
    writer_b.click("#editor button[type=submit]")

    writer_b.wait_for_url("**/lore/fog/")
    assert "merged with revision 2: its summary kept" in writer_b.locator(".flash").inner_text()
    assert writer_b.locator(".lede").inner_text() == "Fog that talks."
    entry = LoreEntry.objects.get(slug="fog")
    assert (entry.summary, entry.body) == (
        "Fog that talks.",
        "Fog comes at dusk.\nIt smells of rot.",
    )
    latest = LoreRevision.objects.get(entry=entry, number=3)
    assert (latest.author, latest.message) == (alice, "the smell")


def test_a_second_writer_saving_over_a_change_sees_each_conflict_and_merges_field_by_field(
    page_as: Callable[[str], Page], alice: User, erin: User, console_errors: ConsoleErrors
) -> None:
    console_errors.allow(r"status of 409 \(Conflict\)", why="a conflicting save answers 409")
    write(
        alice, "fog", title="Fog", summary="Sea fog.", body="Fog comes at dusk.\nIt smells of salt."
    )
    page = page_as("alice")
    page.goto("/lore/fog/edit")
    services.lore_entry_update(  # erin saves while alice is typing
        slug="fog",
        base_revision=1,
        changes={
            "summary": "Fog that talks.",
            "tags": ["omen"],
            "body": "Fog comes at noon.\nIt smells of salt.",
        },
        author=erin,
    )
    page.fill("#id_title", "The Fog")
    page.fill("#id_tags", "weather")
    page.locator("#id_body").fill("Fog comes at dusk.\nIt smells of rot.")
    page.fill("#id_message", "the smell")
    mark_page(page)

    page.click("#editor button[type=submit]")

    conflict = page.locator("#conflict")
    conflict.wait_for()
    assert "erin saved revision 2" in conflict.inner_text()
    assert page.locator(".merge-field").evaluate_all("fs => fs.map(f => f.dataset.field)") == [
        "body",
        "tags",
    ]
    assert "Fog comes at noon." in page.locator("#merge-body").inner_text()  # theirs
    assert "omen" in page.locator("#merge-tags td.theirs").inner_text()
    merged = page.locator("#merged-fields").inner_text()
    assert "their summary" in merged and "your title" in merged
    # What merged on its own is in the editor; where both changed, the editor holds mine.
    assert page.locator("#id_summary").input_value() == "Fog that talks."
    assert page.locator("#id_title").input_value() == "The Fog"
    assert page.locator("#id_body").input_value() == "Fog comes at dusk.\nIt smells of rot."
    assert page.locator("#id_message").input_value() == "the smell"
    assert page.locator("input[name=base_revision]").input_value() == "2"
    assert LoreEntry.objects.get(slug="fog").head_number == 2
    assert not page.locator("#editor").evaluate("form => form.checkValidity()")  # choose first

    page.check("#merge-tags input[value=theirs]")
    page.locator("#id_body").fill("Fog comes at noon.\nIt smells of rot.")
    assert page.locator("#merge-body input[value=edit]").is_checked()  # typing chose "my edit"
    page.click("#editor button[type=submit]")

    page.wait_for_url("**/lore/fog/")
    entry = LoreEntry.objects.get(slug="fog")
    assert (entry.title, entry.summary, entry.tags) == ("The Fog", "Fog that talks.", ["omen"])
    assert entry.body == "Fog comes at noon.\nIt smells of rot."
    revisions = LoreRevision.objects.filter(entry=entry).order_by("number")
    assert [r.author for r in revisions] == [alice, erin, alice]
    assert revisions.last().message == "the smell"  # type: ignore[union-attr]


def test_saving_a_published_entry_confirms_the_revision_and_the_pill_says_it_is_unpublished(
    page_as: Callable[[str], Page], alice: User, erin: User
) -> None:
    write(alice, "mara-voss", kind="character", title="Mara Voss")
    write(alice, "fog", title="Fog", body="Fog comes at dusk. Ask [[mara-voss|the attendant]].")
    services.lore_entry_publish(slug="fog", revision_number=1, published_by=erin)
    page = page_as("alice")
    page.goto("/lore/fog/")
    assert page.locator("#status-pill").inner_text() == "published (rev 1)"
    assert page.locator("#entry-body a.wikilink").inner_text() == "the attendant"  # its label

    page.goto("/lore/fog/edit")
    page.locator("#id_body").fill("Fog comes at noon. Ask [[mara-voss]].")
    page.locator("#preview a.wikilink", has_text="Mara Voss").wait_for()
    page.click("#editor button[type=submit]")

    page.wait_for_url("**/lore/fog/")
    assert page.locator(".flash").inner_text() == (
        "Saved revision 2. Not published yet: NPCs still know revision 1."
    )
    pill = "published (rev 1), newer edits unpublished"
    assert page.locator("#status-pill").inner_text() == pill
    page.goto("/lore/")
    assert page.locator("tr[data-slug=fog] .status").inner_text() == pill
    assert page.locator("tr[data-slug=mara-voss] .status").inner_text() == "draft"


def test_history_shows_a_side_by_side_diff_and_restores_an_old_revision(
    page_as: Callable[[str], Page], alice: User
) -> None:
    write(alice, "chapel", title="St. Ossian's", body="Built of wood.\nBell tower.")
    services.lore_entry_update(
        slug="chapel",
        base_revision=1,
        changes={"body": "Built of stone.\nBell tower."},
        message="rebuilt",
        author=alice,
    )
    page = page_as("alice")
    page.goto("/lore/chapel/history")

    page.click("text=Compare side by side")
    diff = page.locator("#diff")
    changed = diff.locator("tr.d-replace")
    assert changed.locator("td.l").inner_text() == "Built of wood."
    assert changed.locator("td.r").inner_text() == "Built of stone."

    page.go_back()
    page.click("button:has-text('Restore')")
    page.wait_for_url("**/lore/chapel/")
    assert page.locator(".flash").inner_text() == "Restored revision 1 as revision 3."
    assert "Built of wood." in page.locator("#entry-body").inner_text()
    assert LoreEntry.objects.get(slug="chapel").head_number == 3


@pytest.mark.engine
def test_publishing_is_asked_for_on_the_page_and_happens_once_an_approver_approves(
    page_as: Callable[[str], Page],
    alice: User,
    erin: User,
    adam: User,
    celery_worker: subprocess.Popen[bytes],
) -> None:
    write(alice, "mara-voss", kind="character", title="Mara Voss", body="- Born: 1866\n")
    write(
        alice,
        "flood",
        kind="event",
        title="The Flood",
        body="Only mara voss survived.\n\n- [[mara-voss]] born: 1870\n- Date: 1887\n",
    )
    page = page_as("erin")
    page.goto("/lore/flood/")
    page.click("text=Review & ask to publish")
    findings = page.locator("#findings").inner_text()
    assert "[[mara-voss]] born: 1870; [[mara-voss]] itself says 1866" in findings
    assert "writes 'mara voss'; the entry is titled 'Mara Voss'" in findings
    assert page.locator(".story-job").count() == 1  # the Bronze review was queued
    no_direct_path = page.get_by_role("button", name="Publish revision 1", exact=True)
    assert no_direct_path.count() == 0

    page.fill("#id_reason", "The flood chapter ships this week.")
    page.click("button:has-text('Ask to publish revision 1')")

    page.locator("#publish-waiting").wait_for()
    assert "waits for an approver who is not erin" in page.locator("#publish-waiting").inner_text()
    assert "pending" in page.locator("#publish-requests").inner_text()
    change_request = ChangeRequest.objects.get(kind="lore.publish", target="lore:flood")
    assert change_request.author_user == erin
    assert LoreEntry.objects.get(slug="flood").status == LoreStatus.DRAFT

    approver = page_as("adam")
    approver.goto(f"/approvals/{change_request.pk}/")
    approver.fill("#id_comment", "Read it; the dates are the point.")
    approver.get_by_role("button", name="Approve").click()

    deadline = time.monotonic() + 180  # the worker runs the Bronze review first
    while time.monotonic() < deadline:
        entry = LoreEntry.objects.get(slug="flood")
        if entry.status == LoreStatus.PUBLISHED:
            break
        time.sleep(0.5)
    assert entry.status == LoreStatus.PUBLISHED and entry.published_number == 1
    assert entry.published_by == adam
    event = AuditEvent.objects.get(action="lore.publish", target="lore:flood")
    assert event.actor_user == adam
    page.goto("/lore/flood/publish")
    assert "executed" in page.locator("#publish-requests").inner_text()


def test_a_quest_graph_is_built_and_validated_in_place(
    page_as: Callable[[str], Page], alice: User
) -> None:
    write(alice, "ledger", title="The Ledger")
    quest = services.quest_create(title="The Unpaid Debt")
    page = page_as("alice")
    page.goto(f"/lore/quests/{quest.slug}/")
    mark_page(page)

    def add_beat(
        key: str, title: str, refs: str = "", start: bool = False, ending: bool = False
    ) -> None:
        form = page.locator("form:has(input[value=node])")
        form.locator("[name=key]").fill(key)
        form.locator("[name=title]").fill(title)
        form.locator("[name=lore_refs]").fill(refs)
        if start:
            form.locator("[name=is_start]").check()
        if ending:
            form.locator("[name=is_ending]").check()
        form.locator("button").click()
        page.locator(f"svg g.node[data-key={key}]").wait_for()

    add_beat("arrival", "A body that breathes", refs="ledger", start=True)
    add_beat("ledger", "Read the ledger", refs="ghost-entry")
    add_beat("settle", "Settle the debt", ending=True)
    problems = page.locator("#quest-problems").inner_text()
    assert "Beat ledger is unreachable" in problems and "Beat settle is unreachable" in problems
    assert "Beat arrival is a dead end" in problems
    assert "refers to missing lore ghost-entry" in problems

    for source, target in (("arrival", "ledger"), ("ledger", "settle")):
        edge_form = page.locator("form:has(input[value=edge])")
        edge_form.locator("[name=source]").select_option(source)
        edge_form.locator("[name=target]").select_option(target)
        edge_form.locator("button").click()
        page.wait_for_function(
            f"document.querySelectorAll('svg path.edge').length >= "
            f"{1 if source == 'arrival' else 2}"
        )
    problems = page.locator("#quest-problems").inner_text()
    assert "unreachable" not in problems and "dead end" not in problems
    assert "refers to missing lore ghost-entry" in problems
    assert not_reloaded(page)
    assert Quest.objects.get().edges.count() == 2


@pytest.mark.engine
def test_ask_an_npc_answers_from_the_lore_its_persona_knows(
    page_as: Callable[[str], Page], alice: User, erin: User, engines: dict[str, str]
) -> None:
    write(alice, "mara-voss", kind="character", title="Mara Voss", summary="Morgue attendant.")
    write(
        alice,
        "ledger",
        kind="item",
        title="The Ledger of Debts",
        knowledge_scope=["mara-voss"],
        body="The broker writes every body he buys and the debt it left in a calfskin book.",
    )
    write(alice, "silas", kind="character", title="Silas Crane", body="The broker.")
    for slug in ("mara-voss", "ledger", "silas"):
        services.lore_entry_publish(slug=slug, revision_number=1, published_by=erin)
        services.lore_entry_index(entry_id=LoreEntry.objects.get(slug=slug).pk)
    page = page_as("alice")
    page.goto("/lore/ask")

    page.select_option("#id_persona", "mara-voss")
    page.fill("#id_question", "Where does the broker write down debts?")
    page.evaluate(  # notes whether words appeared before the finished answer replaced them
        """new MutationObserver(() => {
            if (document.querySelector('#npc-streaming')) window.__streamed = true;
        }).observe(document.querySelector('#ask-answer'), {childList: true, subtree: true})"""
    )
    page.click("button:has-text('Ask')")
    page.wait_for_function(  # while it waits: what for, and a clock
        "/Silver model/.test(document.querySelector('#ask-waiting').innerText)"
    )
    assert page.locator("#ask-progress [data-elapsed-s]").is_visible()
    assert page.locator("#ask-button").is_disabled()  # one question at a time
    page.locator("#npc-answer").wait_for(timeout=60_000)
    assert page.locator("#npc-answer").inner_text().startswith("Mara Voss:")
    assert page.evaluate("window.__streamed === true")  # the answer streamed in as written
    assert "The Ledger of Debts" in page.locator("#ask-context").inner_text()
    source = page.locator("#answer-source").inner_text()
    plain = [words.format(tier="Silver").lower() for words in ANSWER_SOURCES.values()]
    assert any(source.lower().startswith(words) for words in plain), source
    for internal in ("fallback_model", "template", "policy", "tier silver"):
        assert internal not in page.locator("#ask-answer").inner_text()
    assert page.locator("#ask-progress").is_hidden() and page.locator("#ask-button").is_enabled()

    page.select_option("#id_persona", "silas")
    page.click("button:has-text('Ask')")
    page.wait_for_function(
        "document.querySelector('#npc-answer')?.innerText.startsWith('Silas Crane:')",
        timeout=60_000,
    )
    assert "The Ledger of Debts" not in page.locator("#ask-context").inner_text()


@pytest.mark.engine
def test_a_writer_cancels_a_question_and_the_model_stops_answering_it(
    page_as: Callable[[str], Page], alice: User, engines: dict[str, str]
) -> None:
    write(alice, "mara-voss", kind="character", title="Mara Voss", summary="Morgue attendant.")
    page = page_as("alice")
    page.goto("/lore/ask")
    page.fill("#id_question", "Tell me everything about the morgue, every drawer and every body.")

    page.click("#ask-button")
    page.wait_for_function("/model/.test(document.querySelector('#ask-waiting').innerText)")
    page.click("#ask-cancel")

    page.locator("#ask-cancelled").wait_for()
    assert page.locator("#ask-cancelled").inner_text() == "Cancelled: the model was stopped."
    assert page.locator("#ask-button").is_enabled() and page.locator("#ask-progress").is_hidden()
    assert page.locator("#npc-answer").count() == 0
    # The generation let go of its engine slot: a new question waits behind nothing.
    time.sleep(1)
    page.click("#ask-button")
    page.wait_for_function(
        "document.querySelector('#ask-waiting').innerText.startsWith('Waiting for the')"
        " || document.querySelector('#npc-streaming, #npc-answer') !== null"
    )
    assert "other answer" not in page.locator("#ask-waiting").inner_text()
    page.locator("#npc-answer").wait_for(timeout=60_000)
