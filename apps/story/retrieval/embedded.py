"""The embedded index (the default): passages and vectors in the database, searched in memory.

Each process keeps the whole index in memory — a float32 matrix for the vectors and BM25
postings for the words — and reloads it when the database's index token changes, so a
passage indexed by the worker is searchable in every web process on their next query.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.db.models import F
from numpy.typing import NDArray
from threadpoolctl import ThreadpoolController

from apps.story.models import LoreChunk, LoreIndexState
from apps.story.retrieval.base import (
    CANDIDATES,
    LEXICAL_WEIGHT,
    VECTOR_WEIGHT,
    ChunkDoc,
    Hit,
    LoreIndex,
    LoreQuery,
    fuse,
    take,
    tokenize,
)
from apps.story.retrieval.embedder import DIMENSION

# One BLAS thread for the query's matrix-vector product: it takes about a millisecond at 20k
# passages, and waking more threads on a busy machine is what makes the slow tail (p99).
_BLAS = ThreadpoolController()
BM25_K1 = 1.2
BM25_B = 0.75
STATE_NAME = "embedded"


@dataclass(frozen=True, slots=True)
class PassageMeta:
    """What a hit needs to show besides its vector."""

    entry_id: int
    entry_slug: str
    entry_title: str
    kind: str
    ordinal: int
    heading: str
    text: str
    knowledge_scope: tuple[str, ...]
    spoiler_level: int


class MemoryIndex:
    """An immutable in-memory hybrid index over passages: cosine similarity on a matrix plus
    BM25 on postings, both filtered by a knowledge-scope/spoiler mask, fused by rank."""

    def __init__(self, passages: Sequence[PassageMeta], vectors: NDArray[np.float32]) -> None:
        if len(passages) != len(vectors):
            raise ValueError("one vector per passage")
        self.passages = list(passages)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, DIMENSION)
        n = len(self.passages)
        self.spoilers = np.array([p.spoiler_level for p in self.passages], dtype=np.int8)
        self.shared = np.array([not p.knowledge_scope for p in self.passages], dtype=bool)
        self._persona_rows: dict[str, list[int]] = {}
        for row, passage in enumerate(self.passages):
            for persona in passage.knowledge_scope:
                self._persona_rows.setdefault(persona, []).append(row)
        self._masks: dict[tuple[str | None, int | None], NDArray[np.bool_]] = {}
        self._postings = self._build_postings(n)

    def _build_postings(self, n: int) -> dict[str, tuple[NDArray[np.int32], NDArray[np.float32]]]:
        term_rows: dict[str, list[int]] = {}
        term_tfs: dict[str, list[int]] = {}
        lengths = np.zeros(n, dtype=np.float32)
        for row, passage in enumerate(self.passages):
            tokens = tokenize(f"{passage.entry_title} {passage.heading} {passage.text}")
            lengths[row] = len(tokens)
            counts: dict[str, int] = {}
            for token in tokens:
                counts[token] = counts.get(token, 0) + 1
            for token, count in counts.items():
                term_rows.setdefault(token, []).append(row)
                term_tfs.setdefault(token, []).append(count)
        average = float(lengths.mean()) if n else 1.0
        postings = {}
        for term, rows_list in term_rows.items():
            rows = np.array(rows_list, dtype=np.int32)
            tf = np.array(term_tfs[term], dtype=np.float32)
            idf = math.log(1 + (n - len(rows) + 0.5) / (len(rows) + 0.5))
            norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[rows] / max(average, 1.0))
            postings[term] = (rows, (idf * tf * (BM25_K1 + 1) / (tf + norm)).astype(np.float32))
        return postings

    def __len__(self) -> int:
        return len(self.passages)

    def _blocked(self, persona: str | None, max_spoiler: int | None) -> NDArray[np.bool_] | None:
        """Rows the caller may not see (None: all visible); cached per persona and level."""
        if persona is None and max_spoiler is None:
            return None
        key = (persona, max_spoiler)
        blocked = self._masks.get(key)
        if blocked is None:
            visible = np.ones(len(self.passages), dtype=bool)
            if persona is not None:
                visible = self.shared.copy()
                visible[self._persona_rows.get(persona, [])] = True
            if max_spoiler is not None:
                visible &= self.spoilers <= max_spoiler
            if len(self._masks) > 256:
                self._masks.clear()
            blocked = self._masks[key] = ~visible
        return blocked

    @staticmethod
    def _top(scores: NDArray[np.float32], count: int) -> NDArray[np.intp]:
        if len(scores) > count:
            candidates = np.argpartition(-scores, count)[:count]
        else:
            candidates = np.arange(len(scores))
        ordered = candidates[np.argsort(-scores[candidates], kind="stable")]
        return ordered[np.isfinite(scores[ordered]) & (scores[ordered] > 0)]

    def search(self, query: LoreQuery) -> list[Hit]:
        if not self.passages:
            return []
        blocked = self._blocked(query.persona, query.max_spoiler)
        with _BLAS.limit(limits=1, user_api="blas"):
            dense = self.vectors @ np.asarray(query.vector, dtype=np.float32)
        # Shift cosine similarity into (0, 2] so "> 0" in _top only drops blocked rows.
        dense += np.float32(1.0 + 1e-6)
        lexical = np.zeros(len(self.passages), dtype=np.float32)
        for term in set(tokenize(query.text)):
            posting = self._postings.get(term)
            if posting is not None:
                lexical[posting[0]] += posting[1]
        if blocked is not None:
            dense[blocked] = -np.inf
            lexical[blocked] = 0.0
        dense_rows = self._top(dense, CANDIDATES)
        lexical_rows = self._top(lexical, CANDIDATES)
        fused = fuse(
            [
                ([str(r) for r in dense_rows], VECTOR_WEIGHT),
                ([str(r) for r in lexical_rows], LEXICAL_WEIGHT),
            ]
        )
        hits = (self._hit(int(row), score) for row, score in fused)
        return take(hits, limit=query.limit, distinct_entries=query.distinct_entries)

    def _hit(self, row: int, score: float) -> Hit:
        p = self.passages[row]
        return Hit(
            entry_id=p.entry_id,
            entry_slug=p.entry_slug,
            entry_title=p.entry_title,
            kind=p.kind,
            heading=p.heading,
            text=p.text,
            ordinal=p.ordinal,
            score=round(score, 6),
        )


class EmbeddedLoreIndex(LoreIndex):
    """Passages in ``LoreChunk`` rows, searched through a per-process MemoryIndex."""

    name = "embedded"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._memory = MemoryIndex([], np.zeros((0, DIMENSION), dtype=np.float32))

    @staticmethod
    def _bump() -> None:
        state, _ = LoreIndexState.objects.get_or_create(name=STATE_NAME)
        LoreIndexState.objects.filter(pk=state.pk).update(
            generation=F("generation") + 1, token=uuid.uuid4()
        )

    def replace_entry(self, entry_id: int, chunks: Sequence[ChunkDoc]) -> None:
        with transaction.atomic():
            LoreChunk.objects.filter(entry_id=entry_id).delete()
            LoreChunk.objects.bulk_create(
                LoreChunk(
                    entry_id=entry_id,
                    revision_number=c.revision_number,
                    title=c.entry_title[:200],
                    ordinal=c.ordinal,
                    heading=c.heading[:300],
                    text=c.text,
                    knowledge_scope=list(c.knowledge_scope),
                    spoiler_level=c.spoiler_level,
                    vector=np.asarray(c.vector, dtype="<f4").tobytes(),
                )
                for c in chunks
            )
            self._bump()

    def remove_entry(self, entry_id: int) -> None:
        with transaction.atomic():
            if LoreChunk.objects.filter(entry_id=entry_id).delete()[0]:
                self._bump()

    def clear(self) -> None:
        with transaction.atomic():
            LoreChunk.objects.all().delete()
            self._bump()

    def generation(self) -> str:
        """The token of the index's current state ("" before anything was indexed)."""
        value = (
            LoreIndexState.objects.filter(name=STATE_NAME).values_list("token", flat=True).first()
        )
        return str(value or "")

    def memory(self) -> MemoryIndex:
        """The in-memory index, reloaded if the database holds a newer generation."""
        generation = self.generation()
        if generation == self._generation:
            return self._memory
        with self._lock:
            if generation != self._generation:
                self._memory = self._load()
                self._generation = generation
            return self._memory

    @staticmethod
    def _load() -> MemoryIndex:
        rows = LoreChunk.objects.order_by("entry_id", "ordinal").values_list(
            "entry_id",
            "entry__slug",
            "title",
            "entry__kind",
            "ordinal",
            "heading",
            "text",
            "knowledge_scope",
            "spoiler_level",
            "vector",
        )
        passages: list[PassageMeta] = []
        blobs: list[bytes] = []
        for entry_id, slug, title, kind, ordinal, heading, text, scope, spoiler, blob in rows:
            passages.append(
                PassageMeta(
                    entry_id, slug, title, kind, ordinal, heading, text, tuple(scope), spoiler
                )
            )
            blobs.append(bytes(blob))
        vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, DIMENSION)
        return MemoryIndex(passages, vectors.astype(np.float32))

    def search(self, query: LoreQuery) -> list[Hit]:
        return self.memory().search(query)
