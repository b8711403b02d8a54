"""The demo lore corpus and its retrieval questions, shipped as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def load_entries() -> list[dict[str, Any]]:
    """Entries in seeding order (characters first: knowledge scopes name them)."""
    entries: list[dict[str, Any]] = yaml.safe_load((HERE / "lore.yaml").read_text())
    return entries


def load_questions() -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = yaml.safe_load((HERE / "questions.yaml").read_text())
    return questions
