"""What the storyteller and the NPC preview say to the models, and how answers become drafts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from apps.story.models import LoreContent, LoreEntry, StoryJob, StoryJobKind

SETTING = (
    "You write for The Body Broker, a horror game set in a decaying port city where a broker "
    "trades in corpses and the things that live in them. Stay consistent with the lore given."
)


def _lore_block(context: list[dict[str, Any]]) -> str:
    if not context:
        return "(no published lore matches yet)"
    return "\n".join(f"- {c['title']}: {c['text'][:400]}" for c in context)


def arc_messages(*, theme: str, parts: int, context: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SETTING},
        {
            "role": "user",
            "content": f"Lore:\n{_lore_block(context)}\n\nOutline a story arc about: {theme}. "
            f"Write exactly {parts} parts, each as '## Part N: name' and one paragraph.",
        },
    ]


def expand_messages(
    *, entry: LoreEntry, instructions: str, context: list[dict[str, Any]]
) -> list[dict[str, str]]:
    ask = instructions or "Add detail, history and one secret, in the same voice."
    return [
        {"role": "system", "content": SETTING},
        {
            "role": "user",
            "content": f"Related lore:\n{_lore_block(context)}\n\nEntry '{entry.title}' "
            f"({entry.get_kind_display()}):\n{entry.body[:4000]}\n\nExpand this entry. {ask}",
        },
    ]


def review_messages(*, entry: LoreEntry, related: Sequence[LoreContent]) -> list[dict[str, str]]:
    lore = "\n\n".join(f"### {r.title}\n{r.body[:1500]}" for r in related) or "(none)"
    return [
        {"role": "system", "content": SETTING + " You are the lore editor checking continuity."},
        {
            "role": "user",
            "content": f"Established lore:\n{lore}\n\nNew revision of '{entry.title}':\n"
            f"{entry.body[:4000]}\n\nList every contradiction between the new revision and the "
            "established lore, one per line. If there is none, answer: No contradictions found.",
        },
    ]


def npc_messages(
    *, persona: LoreEntry, question: str, context: list[dict[str, Any]]
) -> list[dict[str, str]]:
    return [
        {
            "role": "system",
            "content": f"{SETTING} You are {persona.title}. {persona.summary} Answer in "
            "character, in two sentences at most, using only what you know:\n"
            + _lore_block(context),
        },
        {"role": "user", "content": question},
    ]


def draft_from_result(*, story_job: StoryJob, text: str) -> tuple[str, str]:
    """(title, body) of the draft a finished job becomes; the body says where it came from."""
    text = text.strip() or "(the storyteller returned no text)"
    if story_job.kind == StoryJobKind.ARC:
        title = f"Arc: {story_job.params.get('theme', 'untitled')}"[:200]
        origin = f"theme “{story_job.params.get('theme', '')}”"
    else:
        source = story_job.entry
        title = f"{source.title if source else 'Entry'} (expanded)"[:200]
        origin = (
            f"expanding [[{source.slug}]] revision {story_job.revision_number}" if source else ""
        )
    footer = f"\n\n---\n*Storyteller draft ({origin}), job {story_job.job_id}. Review before use.*"
    return title, text + footer
