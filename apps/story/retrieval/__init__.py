"""Retrieval over published lore: passages, embeddings, and the index backends.

``get_index()`` returns the backend ``BODYBROKER_LORE_INDEX`` names: ``embedded`` (default, no
server) or ``opensearch`` (``BODYBROKER_OPENSEARCH_URL``). Both honour :class:`LoreIndex`.
"""

from __future__ import annotations

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.story.models import LoreEntry
from apps.story.retrieval.base import ChunkDoc, Hit, LoreIndex, LoreQuery, words
from apps.story.retrieval.chunking import chunk_markdown
from apps.story.retrieval.embedder import embed_texts, embed_words

__all__ = [
    "ChunkDoc",
    "Hit",
    "LoreIndex",
    "LoreQuery",
    "chunk_published_entry",
    "get_index",
    "lore_query",
]

_lock = threading.Lock()
_index: LoreIndex | None = None


def _build() -> LoreIndex:
    backend = settings.BODYBROKER_LORE_INDEX
    if backend == "embedded":
        from apps.story.retrieval.embedded import EmbeddedLoreIndex

        return EmbeddedLoreIndex()
    if backend == "opensearch":
        from opensearchpy import OpenSearch

        from apps.story.retrieval.opensearch import OpenSearchLoreIndex

        url = settings.BODYBROKER_OPENSEARCH_URL
        if not url:
            raise ImproperlyConfigured("BODYBROKER_OPENSEARCH_URL is required for opensearch")
        client = OpenSearch(hosts=[url], timeout=10)
        return OpenSearchLoreIndex(client, prefix=settings.BODYBROKER_OPENSEARCH_PREFIX)
    raise ImproperlyConfigured(f"BODYBROKER_LORE_INDEX must be embedded or opensearch: {backend}")


def get_index() -> LoreIndex:
    """The process's index backend, built once."""
    global _index
    if _index is None:
        with _lock:
            if _index is None:
                _index = _build()
    return _index


def chunk_published_entry(entry: LoreEntry) -> list[ChunkDoc]:
    """The passages of the entry's published revision, embedded."""
    if entry.published_number is None:
        return []
    revision = entry.revisions.get(number=entry.published_number)
    passages = chunk_markdown(summary=revision.summary, body=revision.body)
    vectors = embed_texts([p.embedding_text(revision.title) for p in passages])
    return [
        ChunkDoc(
            entry_id=entry.pk,
            entry_slug=entry.slug,
            entry_title=revision.title,
            kind=revision.kind,
            revision_number=revision.number,
            ordinal=p.ordinal,
            heading=p.heading,
            text=p.text,
            knowledge_scope=tuple(revision.knowledge_scope),
            spoiler_level=revision.spoiler_level,
            vector=vectors[i],
        )
        for i, p in enumerate(passages)
    ]


def lore_query(
    *, text: str, persona: str | None, limit: int, max_spoiler: int | None = None
) -> LoreQuery:
    """A search, embedded: the question as a whole, and each of its words on its own (in one
    pass of the model)."""
    question_words = [word for word, _ in words(text)]
    vectors = embed_words(question_words, with_text=text)
    return LoreQuery(
        text=text,
        vector=vectors[text],
        persona=persona,
        max_spoiler=max_spoiler,
        limit=limit,
        word_vectors={word: vectors[word] for word in question_words},
    )


def search_lore(
    *, text: str, persona: str | None, limit: int, max_spoiler: int | None = None
) -> list[Hit]:
    """Hybrid search of published lore (embeds the query, then asks the index)."""
    return get_index().search(
        lore_query(text=text, persona=persona, limit=limit, max_spoiler=max_spoiler)
    )
