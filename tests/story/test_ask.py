"""How "ask an NPC" describes an answer to a writer: where it came from in plain words, and
whether it stopped at the length limit."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.utils.html import escape

from apps.router.contracts import SOURCES, Answer
from apps.story.views import ANSWER_SOURCES, ASK_MAX_TOKENS, answer_words


def shown(answer: Answer) -> str:
    return render_to_string(
        "story/partials/ask_answer.html",
        {
            "answer": answer,
            "words": answer_words(answer),
            "persona": {"title": "Mara Voss"},
            "context": [],
            "max_tokens": ASK_MAX_TOKENS,
        },
    )


def answer(**fields: object) -> Answer:
    base: dict[str, object] = {
        "text": "The ledger is under the slab",
        "tier": "silver",
        "source": "model",
        "model": "silver",
        "route_reason": "interactive dialogue",
        "finish_reason": "stop",
        "latency_ms": 1234.0,
    }
    return Answer(**{**base, **fields})  # type: ignore[arg-type]


def test_every_source_the_router_names_has_plain_words() -> None:
    assert set(ANSWER_SOURCES) == set(SOURCES)


@pytest.mark.parametrize("source", SOURCES)
def test_a_writer_never_sees_the_routers_internal_words(source: str) -> None:
    html = shown(answer(source=source))
    words = escape(ANSWER_SOURCES[source].format(tier="Silver"))
    assert (
        f'<p class="muted" id="answer-source">{words[0].upper()}{words[1:]}, in 1.2 s.</p>' in html
    )
    assert "fallback_model" not in html and "_" not in words


def test_an_answer_that_stopped_at_the_length_limit_says_so() -> None:
    cut = shown(answer(finish_reason="length"))
    whole = shown(answer())

    assert f"(cut off at the length limit of {ASK_MAX_TOKENS} tokens)" in cut
    assert "cut off" not in whole
