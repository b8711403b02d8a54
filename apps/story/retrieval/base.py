"""The retrieval index's interface, shared by every backend, and the pieces they share:
passages, hits, the tokenizer and the fusion of the lexical and vector rankings."""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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


VOWELS = frozenset("aeiouy")


def stem(token: str) -> str:
    """A light English stemmer, the same for passages and questions: plurals, past tenses and
    -ing forms fold onto one stem (``bodies`` → ``body``, ``drowned`` → ``drown``,
    ``stitching`` → ``stitch``, ``burning``/``burned``/``burns`` → ``burn``) and a final silent
    ``e`` drops (``make``/``making`` → ``mak``). It only has to agree with itself."""
    if len(token) <= 3 or not token.isalpha():
        return token
    if token.endswith("ies") and len(token) > 4:
        token = token[:-3] + "y"
    elif token.endswith("sses"):
        token = token[:-2]
    elif token.endswith("s") and not token.endswith(("ss", "us", "is")):
        token = token[:-1]
    for suffix in ("ied", "ing", "ed"):
        if token.endswith(suffix) and not token.endswith("eed"):  # need, agreed
            base = token[: -len(suffix)] + ("y" if suffix == "ied" else "")
            if len(base) >= 3 and VOWELS & set(base):
                if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "lsz":
                    base = base[:-1]  # digging → dig
                token = base
            break
    if len(token) > 3 and token.endswith("e") and not token.endswith("ee"):
        token = token[:-1]
    return token


def words(text: str) -> list[tuple[str, str]]:
    """``(word, stem)`` pairs of the words that can say which entry a text is about."""
    pairs = []
    for word in TOKEN_RE.findall(text.lower()):
        if word in STOPWORDS:
            continue
        token = stem(word)
        if token not in STOPWORDS:  # "whos", "whats": a stopword with a plural-looking s
            pairs.append((word, token))
    return pairs


def tokenize(text: str) -> list[str]:
    """Lowercased, stemmed word tokens without stopwords (``Ghouls`` → ``ghoul``)."""
    return [token for _, token in words(text)]


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
    of each entry only. ``word_vectors`` embeds the question's own words one by one, so an index
    can match a word no passage uses to the words the lore uses for it (``policeman`` → constable);
    without them only the question's own words (and their misspellings) match."""

    text: str
    vector: Vector
    persona: str | None = None
    max_spoiler: int | None = None
    limit: int = 5
    distinct_entries: bool = True
    word_vectors: Mapping[str, Vector] = field(default_factory=dict)


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
VECTOR_WEIGHT = 1.0
LEXICAL_WEIGHT = 0.3
# The least fused score a passage needs to be returned at all. Nearest is not relevant: without
# a floor every search returns `limit` passages, and for small talk ("hello", "who are you?")
# the nearest are the emptiest entries (a writer's "test", a fuzzer's "asdf"), which then sit
# in an NPC's or the storyteller's prompt as lore. A passage about the question scores well
# above it (a close meaning, or the best match of the question's words plus some meaning).
RELEVANT_SCORE = 0.3


def fuse(
    rankings: Iterable[tuple[Sequence[tuple[str, float]], float]],
) -> list[tuple[str, float]]:
    """Weighted sum of the rankings' scores, best first. Each ranking brings its candidates'
    scores on a common scale: cosine similarity as it is, BM25 divided by the query's best.

    Unlike fusing ranks, a passage far ahead in one ranking (the only one naming a rare word,
    or by far the closest in meaning) keeps its lead over passages middling in both; and a
    ranking that found nothing close (every cosine low) cannot lift its own top candidates
    over a strong match of the other."""
    scores: dict[str, float] = {}
    for ranked, weight in rankings:
        for key, score in ranked:
            scores[key] = scores.get(key, 0.0) + weight * score
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def scaled_to_best(ranked: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Lexical scores divided by the best of them (BM25 has no fixed scale)."""
    best = max((score for _, score in ranked), default=0.0)
    return [(key, score / best) for key, score in ranked] if best > 0 else []


def take(hits: Iterable[Hit], *, limit: int, distinct_entries: bool) -> list[Hit]:
    """The first ``limit`` relevant hits of a list ordered best first (each entry's best
    passage only, if ``distinct_entries``)."""
    chosen: list[Hit] = []
    seen: set[int] = set()
    for hit in hits:
        if hit.score < RELEVANT_SCORE:
            break
        if distinct_entries:
            if hit.entry_id in seen:
                continue
            seen.add(hit.entry_id)
        chosen.append(hit)
        if len(chosen) >= limit:
            break
    return chosen
