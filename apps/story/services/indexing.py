"""Writes for the lore retrieval index: indexing entries, rebuilding, preloading."""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction

from apps.story.models import LoreEntry

logger = logging.getLogger(__name__)


# --- the retrieval index ------------------------------------------------------------------------


def lore_entry_index(*, entry_id: int) -> int:
    """(Re)index the published revision of an entry in the configured backend; returns the
    number of passages written. Idempotent: the entry's passages are replaced as a whole. An
    unpublished or missing entry is removed from the index. Locks the entry row, so two indexings
    of one entry (the publish task and a rebuild, or a redelivered task) run one after the other
    instead of racing to insert the same passages."""
    from apps.story.retrieval import chunk_published_entry, get_index

    index = get_index()
    with transaction.atomic():
        entry = LoreEntry.objects.select_for_update().filter(pk=entry_id).first()
        if entry is None or entry.published_number is None:
            index.remove_entry(entry_id)
            return 0
        chunks = chunk_published_entry(entry)
        index.replace_entry(entry_id, chunks)
    return len(chunks)


def lore_index_rebuild() -> tuple[int, int]:
    """Rebuild the whole index from published lore; returns (entries, passages)."""
    from apps.story.retrieval import chunk_published_entry, get_index

    index = get_index()
    index.clear()
    entries = passages = 0
    for entry in LoreEntry.objects.filter(published_number__isnull=False).iterator():
        chunks = chunk_published_entry(entry)
        index.replace_entry(entry.pk, chunks)
        entries += 1
        passages += len(chunks)
    return entries, passages


def retrieval_preload() -> None:
    """Load what lore retrieval needs before a process serves anyone: the embedding model
    (seconds of CPU and a few hundred MB) and, for the embedded index, the passages in memory.
    Blocking: start-up runs it in a worker thread. A database that is not ready yet only
    leaves the passages to the first search; the model is what must never load on a request."""
    import gc

    from apps.story.retrieval import get_index
    from apps.story.retrieval.embedder import embed_texts, warm

    warm()
    embed_texts(["start-up"])  # the first pass sets up what later ones reuse
    # The model's objects live as long as the process: out of the collector's generations, so
    # full collections stay short.
    gc.freeze()
    index = get_index()
    memory = getattr(index, "memory", None)  # the embedded index keeps its passages in memory
    if callable(memory):
        try:
            memory()
        except DatabaseError:
            logger.warning("lore passages not preloaded: the database is not ready", exc_info=True)
