"""Lore fixtures: a few entries written the way writers write them."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.story import services


def write(author: User, slug: str, **fields: Any) -> services.SaveResult:
    fields.setdefault("title", slug.replace("-", " ").title())
    return services.lore_entry_create(fields=fields, slug=slug, author=author)


@pytest.fixture
def mara(alice: User) -> services.SaveResult:
    """A character (so a persona) with a birth year."""
    return write(
        alice,
        "mara-voss",
        kind="character",
        title="Mara Voss",
        summary="Night attendant at the morgue.",
        body="Mara keeps the lamps lit at the morgue.\n\n- Born: 1866\n",
    )
