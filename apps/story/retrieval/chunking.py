"""Cutting a published revision into passages small enough to embed well."""

from __future__ import annotations

import re
from dataclasses import dataclass

from apps.story.markup import LINK_RE

HEADING_RE = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
MAX_CHARS = 700


@dataclass(frozen=True, slots=True)
class Passage:
    ordinal: int
    heading: str
    text: str

    def embedding_text(self, title: str) -> str:
        """What gets embedded: the passage in its entry's (and section's) context."""
        prefix = f"{title} — {self.heading}" if self.heading else title
        return f"{prefix}. {self.text}"


def _plain(text: str) -> str:
    """Links read as their labels; markdown emphasis marks dropped."""
    text = LINK_RE.sub(lambda m: m.group(1).partition("|")[2] or m.group(1), text)
    return re.sub(r"[*_`>]+", "", text).strip()


def chunk_markdown(*, summary: str, body: str, max_chars: int = MAX_CHARS) -> list[Passage]:
    """Passages of at most about ``max_chars``: split at headings, packed by paragraph.

    The summary opens the first passage so the entry's gist travels with its opening."""
    sections: list[tuple[str, list[str]]] = [("", [summary] if summary.strip() else [])]
    for block in re.split(r"\n\s*\n", body.replace("\r\n", "\n")):
        lines = block.strip().splitlines()
        if not lines:
            continue
        match = HEADING_RE.match(lines[0])
        if match:
            sections.append((_plain(match.group(2)), []))
            lines = lines[1:]
        if lines:
            sections[-1][1].append("\n".join(lines))
    passages: list[Passage] = []
    for heading, paragraphs in sections:
        current = ""
        for paragraph in (_plain(p) for p in paragraphs):
            if not paragraph:
                continue
            while len(paragraph) > max_chars:  # one huge paragraph: cut at a sentence end
                cut = paragraph.rfind(". ", 0, max_chars)
                cut = cut + 1 if cut > max_chars // 3 else max_chars
                if current:
                    passages.append(Passage(len(passages), heading, current))
                    current = ""
                passages.append(Passage(len(passages), heading, paragraph[:cut].strip()))
                paragraph = paragraph[cut:].strip()
            if current and len(current) + len(paragraph) + 1 > max_chars:
                passages.append(Passage(len(passages), heading, current))
                current = ""
            current = f"{current}\n{paragraph}" if current else paragraph
        if current:
            passages.append(Passage(len(passages), heading, current))
    return passages
