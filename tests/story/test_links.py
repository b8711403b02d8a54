"""``[[links]]`` as readers see them: the linked entry's title, found in one query for the
whole body, and a link to no entry marked missing."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.story.views import _render_body
from tests.story.conftest import write

pytestmark = pytest.mark.django_db


def test_every_link_reads_as_its_title_in_one_query(
    alice: User, django_assert_num_queries: Any
) -> None:
    for slug, title in (("mara-voss", "Mara Voss"), ("ledger", "The Ledger"), ("fog", "Fog")):
        write(alice, slug, title=title)
    body = (
        "[[mara-voss]] keeps [[ledger|the book]]. [[Fog]] rolls in.\n\n"
        "Nobody wrote [[the-morgue]] yet. [[mara-voss]] again."
    )

    with django_assert_num_queries(1):
        html = _render_body(body)

    assert '<a class="wikilink" href="/lore/mara-voss/">Mara Voss</a>' in html
    assert '<a class="wikilink" href="/lore/ledger/">the book</a>' in html  # a label wins
    assert '<a class="wikilink" href="/lore/fog/">Fog</a>' in html
    assert (
        '<a class="wikilink broken" href="/lore/new?slug=the-morgue" '
        'title="no entry named the-morgue yet">the-morgue '
        '<span class="missing">(missing)</span></a>'
    ) in html
