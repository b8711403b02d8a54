"""Persona prompt templates: a stable system prefix per persona and in-character template lines.

The prefix is identical for every request of a persona so the engines' prefix caches (vLLM's
automatic prefix caching, llama.cpp's prompt cache) reuse it across NPCs and turns. The lines are
the Silver chain's last link: when no model and no cache can answer, the NPC still says something
in character. Personas come from ``personas.json`` beside this module; the NPC app registers a
provider (``register_persona_provider``) that adds its NPC definitions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from apps.router.contracts import InferenceRequest


@dataclass(frozen=True, slots=True)
class Persona:
    key: str
    name: str
    system: str
    lines: tuple[str, ...]


PersonaProvider = Callable[[str], Persona | None]
_providers: list[PersonaProvider] = []


def register_persona_provider(provider: PersonaProvider) -> None:
    """Providers are asked in registration order, before the bundled personas."""
    _providers.append(provider)


@cache
def bundled() -> dict[str, Persona]:
    raw: dict[str, dict[str, Any]] = json.loads(
        (Path(__file__).with_name("personas.json")).read_text()
    )
    return {
        key: Persona(key, entry["name"], entry["system"], tuple(entry["lines"]))
        for key, entry in raw.items()
    }


def persona(key: str | None) -> Persona:
    """The persona named ``key``, or the default stranger."""
    if key:
        for provider in _providers:
            found = provider(key)
            if found is not None:
                return found
        if key in bundled():
            return bundled()[key]
    return bundled()["default"]


def with_persona_prefix(request: InferenceRequest) -> list[dict[str, Any]]:
    """The request's messages behind its persona's system prompt (unless it brought its own)."""
    if not request.persona or (request.messages and request.messages[0].get("role") == "system"):
        return request.messages
    return [{"role": "system", "content": persona(request.persona).system}, *request.messages]


def template_line(request: InferenceRequest) -> str:
    """An in-character line, chosen by the player's last words so a retry says the same."""
    lines = persona(request.persona).lines
    last = next(
        (str(m.get("content", "")) for m in reversed(request.messages) if m.get("role") == "user"),
        "",
    )
    index = int(hashlib.sha256(last.encode()).hexdigest()[:8], 16) % len(lines)
    return lines[index]
