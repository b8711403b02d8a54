"""``manage.py rebuild_lore_index``: rebuild the retrieval index from published lore."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.story.services import lore_index_rebuild


class Command(BaseCommand):
    help = "Rebuild the lore retrieval index (embedded or OpenSearch) from published revisions."

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        entries, passages = lore_index_rebuild()
        self.stdout.write(
            f"Rebuilt the {settings.BODYBROKER_LORE_INDEX} index: {entries} entries, "
            f"{passages} passages in {time.perf_counter() - started:.1f} s."
        )
