"""The demo lore corpus and its retrieval questions, shipped as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent

# The retrieval question sets ``make bench-rag`` reports: ``original`` was written alongside the
# entries; ``paraphrased`` asks the same things the way players word them, in other words.
QUESTION_SETS = {"original": "questions.yaml", "paraphrased": "questions_paraphrased.yaml"}


def load_entries() -> list[dict[str, Any]]:
    """Entries in seeding order (characters first: knowledge scopes name them)."""
    entries: list[dict[str, Any]] = yaml.safe_load((HERE / "lore.yaml").read_text())
    return entries


def load_questions(name: str = "original") -> list[dict[str, Any]]:
    """A question set: ``{"q": question, "expect": [slug, ...]}`` items, where any of the
    expected entries answers the question (the files may name one slug or a list)."""
    items: list[dict[str, Any]] = yaml.safe_load((HERE / QUESTION_SETS[name]).read_text())
    return [
        {
            "q": item["q"],
            "expect": [item["expect"]] if isinstance(item["expect"], str) else list(item["expect"]),
        }
        for item in items
    ]
