"""The embedded index (the default): passages and vectors in the database, searched in memory.

Each process keeps the whole index in memory — a float32 matrix for the vectors and BM25
postings for the words — and reloads it when the database's index token changes, so a
passage indexed by the worker is searchable in every web process on their next query.

Players do not use the lore's words. A question word no passage contains is matched to the
indexed words that stand in for it: the ones nearest in meaning by the embedder
(``policeman`` → police, constable), weighted by that nearness, or failing those the one a
single slip of the keyboard away (``lanturn`` → lantern).
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
    scaled_to_best,
    take,
    words,
)
from apps.story.retrieval.embedder import DIMENSION, embed_words

# One BLAS thread for the query's matrix-vector product: it is short even for a large corpus,
# and waking more threads on a busy machine is what makes the slow tail (p99).
_BLAS = ThreadpoolController()
BM25_K1 = 1.2
BM25_B = 0.75
STATE_NAME = "embedded"
# Stand-ins for a question word the index lacks: indexed words at least this close in meaning
# (cosine of the two words' embeddings; unrelated words score about 0.3–0.4), the closest few.
SIMILAR_WORD_MIN = 0.6
SIMILAR_WORDS = 3
# Words shorter than this have too many neighbours one edit away to guess which was meant.
RESPELL_MIN_LENGTH = 5


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
    BM25 on postings, both filtered by a knowledge-scope/spoiler mask, fused by score."""

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
        self._spelled: dict[str, str] = {}  # stem → the word it was seen as most often
        self._postings = self._build_postings(n)
        self._lock = threading.Lock()
        self._deletions: dict[str, list[str]] | None = None
        self._vocabulary: tuple[list[str], NDArray[np.float32]] | None = None

    def _build_postings(self, n: int) -> dict[str, tuple[NDArray[np.int32], NDArray[np.float32]]]:
        term_rows: dict[str, list[int]] = {}
        term_tfs: dict[str, list[int]] = {}
        seen_as: dict[str, dict[str, int]] = {}
        lengths = np.zeros(n, dtype=np.float32)
        for row, passage in enumerate(self.passages):
            pairs = words(f"{passage.entry_title} {passage.heading} {passage.text}")
            lengths[row] = len(pairs)
            counts: dict[str, int] = {}
            for word, token in pairs:
                counts[token] = counts.get(token, 0) + 1
                forms = seen_as.setdefault(token, {})
                forms[word] = forms.get(word, 0) + 1
            for token, count in counts.items():
                term_rows.setdefault(token, []).append(row)
                term_tfs.setdefault(token, []).append(count)
        self._spelled = {
            token: max(forms, key=forms.__getitem__) for token, forms in seen_as.items()
        }
        average = float(lengths.mean()) if n else 1.0
        postings = {}
        for term, rows_list in term_rows.items():
            rows = np.array(rows_list, dtype=np.int32)
            tf = np.array(term_tfs[term], dtype=np.float32)
            idf = math.log(1 + (n - len(rows) + 0.5) / (len(rows) + 0.5))
            norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[rows] / max(average, 1.0))
            postings[term] = (rows, (idf * tf * (BM25_K1 + 1) / (tf + norm)).astype(np.float32))
        return postings

    # --- stand-ins for words the index lacks ----------------------------------------------------

    def _term_weights(self, query: LoreQuery) -> dict[str, float]:
        """The indexed terms a question matches, each with its weight: its own words at 1, a
        respelling of an unknown word at 1, words near an unknown word in meaning at their
        nearness."""
        weights: dict[str, float] = {}
        unknown: list[tuple[str, str]] = []
        for word, token in words(query.text):
            if token in self._postings:
                weights[token] = 1.0
            else:
                unknown.append((word, token))
        for word, token in unknown:
            stand_ins = self._similar_words(query.word_vectors.get(word))
            if not stand_ins:  # no indexed word means the same: perhaps a slip of the keyboard
                respelt = self._respell(token)
                stand_ins = [(respelt, 1.0)] if respelt is not None else []
            for term, weight in stand_ins:
                weights[term] = max(weights.get(term, 0.0), weight)
        return weights

    @staticmethod
    def _deletes(token: str) -> set[str]:
        return {token[:i] + token[i + 1 :] for i in range(len(token))}

    def _respell(self, token: str) -> str | None:
        """The indexed term one slip away from ``token`` (a letter missing, extra, wrong or two
        swapped), the most widely used if several are; None if there is none."""
        if len(token) < RESPELL_MIN_LENGTH or not token.isalpha():
            return None
        if self._deletions is None:
            deletions: dict[str, list[str]] = {}
            for term in self._postings:
                if len(term) >= RESPELL_MIN_LENGTH - 1 and term.isalpha():
                    for variant in self._deletes(term) | {term}:
                        deletions.setdefault(variant, []).append(term)
            self._deletions = deletions
        candidates = {
            term
            for variant in self._deletes(token) | {token}
            for term in self._deletions.get(variant, ())
        }
        candidates.discard(token)
        if not candidates:
            return None
        return max(sorted(candidates), key=lambda term: len(self._postings[term][0]))

    def _similar_words(self, vector: NDArray[np.float32] | None) -> list[tuple[str, float]]:
        """The indexed terms whose words are nearest in meaning to a word's ``vector``."""
        if vector is None:
            return []
        terms, matrix = self._word_vectors()
        if not terms:
            return []
        with _BLAS.limit(limits=1, user_api="blas"):
            similarity = matrix @ np.asarray(vector, dtype=np.float32)
        best = np.argsort(-similarity)[:SIMILAR_WORDS]
        return [(terms[i], float(similarity[i])) for i in best if similarity[i] >= SIMILAR_WORD_MIN]

    def _word_vectors(self) -> tuple[list[str], NDArray[np.float32]]:
        """Every indexed word embedded on its own (once per process per word: embed_words keeps
        them), built with the load (or the first time a question holds a word the index lacks)."""
        if self._vocabulary is None:
            with self._lock:
                if self._vocabulary is None:
                    terms = [t for t in self._postings if t.isalpha() and len(t) >= 3]
                    vectors = embed_words([self._spelled[t] for t in terms])
                    matrix = np.array(
                        [vectors[self._spelled[t]] for t in terms], dtype=np.float32
                    ).reshape(-1, DIMENSION)
                    self._vocabulary = (terms, matrix)
        return self._vocabulary

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
        for term, weight in self._term_weights(query).items():
            rows, scores = self._postings[term]
            lexical[rows] += scores if weight == 1.0 else np.float32(weight) * scores
        if blocked is not None:
            dense[blocked] = -np.inf
            lexical[blocked] = 0.0
        dense_rows = self._top(dense, CANDIDATES)
        lexical_rows = self._top(lexical, CANDIDATES)
        # Every candidate of either ranking is scored by both: the vectors are all at hand.
        candidates = np.union1d(dense_rows, lexical_rows)
        fused = fuse(
            [
                (
                    [(str(r), float(dense[r]) - 1.0) for r in candidates if dense[r] > 0],
                    VECTOR_WEIGHT,
                ),
                (
                    scaled_to_best([(str(r), float(lexical[r])) for r in lexical_rows]),
                    LEXICAL_WEIGHT,
                ),
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
                memory = self._load()
                # Its words embedded now, with the load, not in the middle of a search (after
                # the first load only words new to this process are embedded).
                memory._word_vectors()
                self._memory = memory
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
