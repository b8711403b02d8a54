"""The OpenSearch backend (production): k-NN indices, one per persona plus a shared lore index.

A passage of common knowledge (empty knowledge scope) lives in ``<prefix>-shared``; a passage
only some personas may know lives in ``<prefix>-persona-<slug>`` for each of them. A persona's
search reads its own index and the shared one, so the scope filter is the index itself; a
writer's search (no persona) reads them all and drops the duplicates.

Each search is one ``_msearch`` with a k-NN query and a BM25 ``multi_match`` (English stemming,
misspellings matched by edit distance); the two rankings are fused client-side by score, as the
embedded index fuses them, the vector side by the cosine similarity of the vectors it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from apps.story.retrieval.base import (
    CANDIDATES,
    LEXICAL_WEIGHT,
    VECTOR_WEIGHT,
    ChunkDoc,
    Hit,
    LoreIndex,
    LoreQuery,
    fuse,
    scaled_to_best,
    take,
)
from apps.story.retrieval.embedder import DIMENSION


class OpenSearchLoreIndex(LoreIndex):
    name = "opensearch"

    def __init__(self, client: Any, *, prefix: str = "lore", dimension: int = DIMENSION) -> None:
        self.client = client
        self.prefix = prefix
        self.dimension = dimension

    # --- names and bodies (pure: tested without a server) -----------------------------------

    @property
    def shared_index(self) -> str:
        return f"{self.prefix}-shared"

    def persona_index(self, persona: str) -> str:
        return f"{self.prefix}-persona-{persona}"

    @property
    def all_indices(self) -> str:
        return f"{self.prefix}-*"

    def indices_for(self, chunk: ChunkDoc) -> list[str]:
        if not chunk.knowledge_scope:
            return [self.shared_index]
        return [self.persona_index(p) for p in chunk.knowledge_scope]

    def search_indices(self, persona: str | None) -> str:
        if persona is None:
            return self.all_indices
        return f"{self.shared_index},{self.persona_index(persona)}"

    def index_body(self) -> dict[str, Any]:
        """Settings and mappings of every lore index: a k-NN vector plus searchable text."""
        return {
            "settings": {"index": {"knn": True, "number_of_shards": 1}},
            "mappings": {
                "properties": {
                    "chunk_id": {"type": "keyword"},
                    "entry_id": {"type": "integer"},
                    "entry_slug": {"type": "keyword"},
                    "entry_title": {"type": "text", "analyzer": "english"},
                    "kind": {"type": "keyword"},
                    "revision_number": {"type": "integer"},
                    "ordinal": {"type": "integer"},
                    "heading": {"type": "text", "analyzer": "english"},
                    "text": {"type": "text", "analyzer": "english"},
                    "knowledge_scope": {"type": "keyword"},
                    "spoiler_level": {"type": "byte"},
                    "vector": {
                        "type": "knn_vector",
                        "dimension": self.dimension,
                        "method": {
                            "name": "hnsw",
                            "space_type": "cosinesimil",
                            "engine": "lucene",
                            "parameters": {"m": 16, "ef_construction": 128},
                        },
                    },
                }
            },
        }

    def document(self, chunk: ChunkDoc) -> dict[str, Any]:
        return {
            "chunk_id": chunk.chunk_id,
            "entry_id": chunk.entry_id,
            "entry_slug": chunk.entry_slug,
            "entry_title": chunk.entry_title,
            "kind": chunk.kind,
            "revision_number": chunk.revision_number,
            "ordinal": chunk.ordinal,
            "heading": chunk.heading,
            "text": chunk.text,
            "knowledge_scope": list(chunk.knowledge_scope),
            "spoiler_level": chunk.spoiler_level,
            "vector": [float(x) for x in chunk.vector],
        }

    def bulk_actions(self, chunks: Sequence[ChunkDoc]) -> list[dict[str, Any]]:
        """``_bulk`` lines: an index action and its document, per passage and target index."""
        lines: list[dict[str, Any]] = []
        for chunk in chunks:
            doc = self.document(chunk)
            for index in self.indices_for(chunk):
                lines.append({"index": {"_index": index, "_id": chunk.chunk_id}})
                lines.append(doc)
        return lines

    def _filters(self, query: LoreQuery) -> list[dict[str, Any]]:
        if query.max_spoiler is None:
            return []
        return [{"range": {"spoiler_level": {"lte": query.max_spoiler}}}]

    def knn_body(self, query: LoreQuery) -> dict[str, Any]:
        knn: dict[str, Any] = {"vector": [float(x) for x in query.vector], "k": CANDIDATES}
        filters = self._filters(query)
        if filters:
            knn["filter"] = {"bool": {"filter": filters}}
        return {"size": CANDIDATES, "query": {"knn": {"vector": knn}}}

    def lexical_body(self, query: LoreQuery) -> dict[str, Any]:
        return {
            "size": CANDIDATES,
            "_source": {"excludes": ["vector"]},
            "query": {
                "bool": {
                    "must": {
                        "multi_match": {
                            "query": query.text,
                            "fields": ["entry_title^2", "heading", "text"],
                            "fuzziness": "AUTO",
                            "prefix_length": 1,
                        }
                    },
                    "filter": self._filters(query),
                }
            },
        }

    def msearch_body(self, query: LoreQuery) -> list[dict[str, Any]]:
        header = {"index": self.search_indices(query.persona), "ignore_unavailable": True}
        return [header, self.knn_body(query), dict(header), self.lexical_body(query)]

    def hits_from_msearch(self, response: dict[str, Any], query: LoreQuery) -> list[Hit]:
        answers = response.get("responses", [])
        for answer in answers:
            if "error" in answer:
                raise RuntimeError(f"OpenSearch search failed: {answer['error']}")
        knn, lexical = ([a.get("hits", {}).get("hits", []) for a in answers] + [[], []])[:2]
        sources: dict[str, dict[str, Any]] = {}
        similar: dict[str, float] = {}
        wanted = np.asarray(query.vector, dtype=np.float32)
        for hit in knn:  # a persona-scoped passage sits in several indices: the first counts
            source = hit["_source"]
            chunk_id = source["chunk_id"]
            if chunk_id not in sources:
                sources[chunk_id] = source
                vector = np.asarray(source.get("vector", ()), dtype=np.float32)
                similar[chunk_id] = float(vector @ wanted) if len(vector) == len(wanted) else 0.0
        words: dict[str, float] = {}
        for hit in lexical:
            source = hit["_source"]
            sources.setdefault(source["chunk_id"], source)
            words.setdefault(source["chunk_id"], float(hit.get("_score") or 0.0))
        # A passage only the words found is not among the nearest vectors: its cosine is at
        # most the farthest of those.
        floor = min(similar.values(), default=0.0)
        dense = [(key, similar.get(key, floor)) for key in sources]
        fused = fuse(
            [
                (dense, VECTOR_WEIGHT),
                (scaled_to_best(list(words.items())), LEXICAL_WEIGHT),
            ]
        )
        hits = (
            Hit(
                entry_id=int(sources[key]["entry_id"]),
                entry_slug=sources[key]["entry_slug"],
                entry_title=sources[key]["entry_title"],
                kind=sources[key]["kind"],
                heading=sources[key].get("heading", ""),
                text=sources[key]["text"],
                ordinal=int(sources[key]["ordinal"]),
                score=round(score, 6),
            )
            for key, score in fused
        )
        return take(hits, limit=query.limit, distinct_entries=query.distinct_entries)

    # --- talking to the server ------------------------------------------------------------------

    def ensure_indices(self, names: Sequence[str]) -> None:
        for name in dict.fromkeys(names):
            if not self.client.indices.exists(index=name):
                self.client.indices.create(index=name, body=self.index_body())

    def replace_entry(self, entry_id: int, chunks: Sequence[ChunkDoc]) -> None:
        self.remove_entry(entry_id)
        if not chunks:
            return
        self.ensure_indices([name for chunk in chunks for name in self.indices_for(chunk)])
        response = self.client.bulk(body=self.bulk_actions(chunks), refresh=True)
        if response.get("errors"):
            raise RuntimeError(f"OpenSearch refused passages of entry {entry_id}")

    def remove_entry(self, entry_id: int) -> None:
        self.client.delete_by_query(
            index=self.all_indices,
            body={"query": {"term": {"entry_id": entry_id}}},
            refresh=True,
            ignore_unavailable=True,
            allow_no_indices=True,
        )

    def clear(self) -> None:
        self.client.indices.delete(index=self.all_indices, ignore_unavailable=True)

    def search(self, query: LoreQuery) -> list[Hit]:
        response = self.client.msearch(body=self.msearch_body(query))
        return self.hits_from_msearch(response, query)
