"""The retrieval index's interface, shared by every backend, and the pieces they share:
passages, hits, the tokenizer and rank fusion."""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float32]

# Words that say nothing about which entry a question is about.
STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have he her
    his how i if in into is it its me my no not of on or our she so that the their them then
    there these they this those to was we were what when where which who whom whose why will
    with would you your about after before any all also than just over under up down out
    one ever each other some such only own same very s t""".split()
)
TOKEN_RE = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens without stopwords, plural -s folded (``ghouls`` → ``ghoul``)."""
    tokens = []
    for token in TOKEN_RE.findall(text.lower()):
        if token in STOPWORDS:
            continue
        if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
            token = token[:-1]
        tokens.append(token)
    return tokens


@dataclass(frozen=True, slots=True)
class ChunkDoc:
    """One passage of a published revision, ready to index."""

    entry_id: int
    entry_slug: str
    entry_title: str
    kind: str
    revision_number: int
    ordinal: int
    heading: str
    text: str
    knowledge_scope: tuple[str, ...]
    spoiler_level: int
    vector: Vector

    @property
    def chunk_id(self) -> str:
        return f"{self.entry_id}:{self.ordinal}"


@dataclass(frozen=True, slots=True)
class LoreQuery:
    """A search: the words, their embedding, and who is asking.

    ``persona`` None searches all published lore (a writer's view); a persona sees common
    knowledge plus what its knowledge scope grants. ``distinct_entries`` keeps the best passage
    of each entry only."""

    text: str
    vector: Vector
    persona: str | None = None
    max_spoiler: int | None = None
    limit: int = 5
    distinct_entries: bool = True


@dataclass(frozen=True, slots=True)
class Hit:
    entry_id: int
    entry_slug: str
    entry_title: str
    kind: str
    heading: str
    text: str
    ordinal: int
    score: float

    @property
    def chunk_id(self) -> str:
        return f"{self.entry_id}:{self.ordinal}"


class LoreIndex(abc.ABC):
    """What every backend offers. Backends hold published lore only."""

    name: str

    @abc.abstractmethod
    def replace_entry(self, entry_id: int, chunks: Sequence[ChunkDoc]) -> None:
        """Make ``chunks`` the entry's only passages (idempotent)."""

    @abc.abstractmethod
    def remove_entry(self, entry_id: int) -> None:
        """Forget the entry's passages."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget everything (before a rebuild)."""

    @abc.abstractmethod
    def search(self, query: LoreQuery) -> list[Hit]:
        """Hybrid (lexical + vector) search filtered by knowledge scope and spoiler level."""


CANDIDATES = 50  # per ranking, before fusion
RRF_K = 60
VECTOR_WEIGHT = 1.0
LEXICAL_WEIGHT = 1.0


def fuse(
    rankings: Iterable[tuple[Sequence[str], float]], *, k: int = RRF_K
) -> list[tuple[str, float]]:
    """Weighted reciprocal rank fusion of ranked key lists, best first.

    Scores from BM25 and cosine similarity live on different scales; ranks do not."""
    scores: dict[str, float] = {}
    for ranked, weight in rankings:
        for rank, key in enumerate(ranked):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank + 1)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def take(hits: Iterable[Hit], *, limit: int, distinct_entries: bool) -> list[Hit]:
    chosen: list[Hit] = []
    seen: set[int] = set()
    for hit in hits:
        if distinct_entries:
            if hit.entry_id in seen:
                continue
            seen.add(hit.entry_id)
        chosen.append(hit)
        if len(chosen) >= limit:
            break
    return chosen
