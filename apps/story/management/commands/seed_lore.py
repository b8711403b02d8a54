"""``manage.py seed_lore``: the demo lore corpus, published, plus a demo quest.

Idempotent: entries and quests that exist are left alone. Publishing goes through the publish
service as ``--as`` (an editor or admin), which queues indexing for the worker; ``--index``
also indexes at once in this process. An operator seeding demo content publishes without a
``lore.publish`` change request; each publish is still in the audit log.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.story import services
from apps.story.corpus import load_entries
from apps.story.models import LoreEntry, Quest

CONTENT_KEYS = ("kind", "title", "summary", "body", "tags", "knowledge_scope", "spoiler_level")


class Command(BaseCommand):
    help = "Seed the demo lore corpus (published) and a demo quest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as", dest="username", default="admin", help="an editor or admin")
        parser.add_argument("--index", action="store_true", help="index now, not via the worker")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}; run seed_demo first or pass --as")
        created = 0
        for item in load_entries():
            if LoreEntry.objects.filter(slug=item["slug"]).exists():
                continue
            fields = {key: item[key] for key in CONTENT_KEYS if key in item}
            result = services.lore_entry_create(
                fields=fields, slug=item["slug"], message="demo corpus", author=user
            )
            services.lore_entry_publish(
                slug=result.entry.slug,
                revision_number=result.revision.number,
                published_by=user,
            )
            created += 1
        self._quest(user)
        if options["index"]:
            entries, passages = services.lore_index_rebuild()
            self.stdout.write(f"Indexed {entries} entries in {passages} passages.")
        self.stdout.write(
            f"Lore corpus: {created} new entries, {LoreEntry.objects.count()} in all."
        )

    def _quest(self, user: Any) -> None:
        if Quest.objects.filter(slug="the-unpaid-debt").exists():
            return
        quest = services.quest_create(
            title="The Unpaid Debt",
            slug="the-unpaid-debt",
            summary="A body the broker bought starts breathing; someone must settle its debt.",
            created_by=user,
        )
        beats = [
            ("arrival", "A body that breathes", True, False, ["silas-crane", "breathing-dead"]),
            ("ledger", "Read the ledger", False, False, ["the-ledger-of-debts"]),
            ("morgue", "Ask Mara at the morgue", False, False, ["mara-voss", "saltmarsh-morgue"]),
            ("settle", "Settle the debt", False, True, ["the-ledger-of-debts"]),
            ("salt", "Bury it in salt", False, True, ["salt-wards", "st-ossians-chapel"]),
        ]
        for key, title, start, ending, refs in beats:
            services.quest_node_save(
                quest=quest, key=key, title=title, is_start=start, is_ending=ending, lore_refs=refs
            )
        for source, target, condition in [
            ("arrival", "ledger", ""),
            ("arrival", "morgue", "the ledger is locked"),
            ("ledger", "settle", "the debtor is found"),
            ("morgue", "salt", "Mara refuses to help"),
            ("morgue", "ledger", "Mara names the debtor"),
        ]:
            services.quest_edge_add(
                quest=quest, source_key=source, target_key=target, condition=condition
            )
