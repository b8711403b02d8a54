"""Lore markdown: ``[[links]]``, facts, and rendering to safe HTML.

A link is ``[[slug]]``, ``[[Title Of Entry]]`` (slugified) or ``[[slug|label]]``. Raw HTML in a
body is never rendered (markdown-it's ``html`` option is off) and unsafe URL schemes are
refused by markdown-it's link validator, so a body cannot inject script into a writer's page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.html import escape
from django.utils.text import slugify
from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline

LINK_RE = re.compile(r"\[\[([^\[\]\n]*)\]\]")
LINK_TARGET_RE = re.compile(r"^[\w\s\-'.:]+$")
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_SLUG = 80
# "- Born: 1887" states a fact about the entry itself; "- [[mara-voss]] born: 1887" about another.
FACT_RE = re.compile(
    r"^\s*[-*]\s+(?:\[\[(?P<subject>[^\[\]|\n]+)(?:\|[^\[\]\n]*)?\]\]\s+)?"
    r"(?:\*\*)?(?P<attr>[A-Za-z][A-Za-z ]{0,30}?)(?:\*\*)?\s*:\s*(?:\*\*)?\s*(?P<value>\S.*?)\s*$",
    re.MULTILINE,
)
YEAR_RE = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")


@dataclass(frozen=True, slots=True)
class Link:
    target_slug: str
    label: str
    line: int


class LinkSyntaxError(ValueError):
    """A ``[[link]]`` that cannot be read: empty, unclosed, or with characters a slug can't hold."""


def link_slug(target: str) -> str:
    """The slug a link target names: itself if it is one, else its slugified title."""
    target = target.strip()
    return target if SLUG_RE.match(target) else slugify(target)


def parse_links(body: str) -> list[Link]:
    """Every ``[[link]]`` in ``body`` in order, one per target. Raises LinkSyntaxError naming the
    line of the first malformed one."""
    errors: list[str] = []
    links: dict[str, Link] = {}
    for number, line in enumerate(body.splitlines(), start=1):
        stripped = LINK_RE.sub("", line)
        if "[[" in stripped:
            errors.append(f"line {number}: '[[' is never closed with ']]'")
            continue
        for match in LINK_RE.finditer(line):
            raw = match.group(1)
            target, _, label = raw.partition("|")
            target = target.strip()
            if not target:
                errors.append(f"line {number}: empty link [[{raw}]]")
                continue
            if not LINK_TARGET_RE.match(target) or len(target) > MAX_SLUG:
                errors.append(f"line {number}: [[{raw}]] is not an entry slug or title")
                continue
            slug = link_slug(target)
            if not slug:
                errors.append(f"line {number}: [[{raw}]] names no entry")
                continue
            links.setdefault(slug, Link(slug, label.strip() or target, number))
    if errors:
        raise LinkSyntaxError("; ".join(errors[:5]))
    return list(links.values())


@dataclass(frozen=True, slots=True)
class Fact:
    """``attribute: value`` stated in a body, about the entry itself (subject None) or another."""

    subject: str | None
    attribute: str
    value: str

    @property
    def year(self) -> int | None:
        match = YEAR_RE.search(self.value)
        return int(match.group(1)) if match else None


def parse_facts(body: str) -> list[Fact]:
    facts = []
    for match in FACT_RE.finditer(body):
        subject = match.group("subject")
        value = LINK_RE.sub(lambda m: m.group(1).partition("|")[2] or m.group(1), match["value"])
        facts.append(
            Fact(
                subject=link_slug(subject) if subject else None,
                attribute=" ".join(match.group("attr").lower().split()),
                value=value.strip().rstrip("."),
            )
        )
    return facts


def _wikilink_rule(titles: Mapping[str, str]) -> Callable[[StateInline, bool], bool]:
    def rule(state: StateInline, silent: bool) -> bool:
        src, pos = state.src, state.pos
        if not src.startswith("[[", pos):
            return False
        end = src.find("]]", pos + 2)
        if end < 0:
            return False
        raw = src[pos + 2 : end]
        if "\n" in raw or "[" in raw:
            return False
        target, _, label = raw.partition("|")
        slug = link_slug(target)
        if not slug:
            return False
        if not silent:
            # A link reads as the entry's title unless the writer gave it a label; a link to
            # no entry keeps what the writer typed and says it is missing.
            title = titles.get(slug)
            token = state.push("wikilink", "", 0)
            token.meta = {"slug": slug, "label": label.strip() or title or target.strip()}
            token.attrSet("data-exists", "1" if title is not None else "0")
        state.pos = end + 2
        return True

    return rule


def _render_wikilink(self: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    slug, label = token.meta["slug"], token.meta["label"]
    if token.attrGet("data-exists") == "1":
        return f'<a class="wikilink" href="/lore/{escape(slug)}/">{escape(label)}</a>'
    return (
        f'<a class="wikilink broken" href="/lore/new?slug={escape(slug)}" '
        f'title="no entry named {escape(slug)} yet">{escape(label)} '
        f'<span class="missing">(missing)</span></a>'
    )


def render_markdown(body: str, *, titles: Mapping[str, str]) -> str:
    """Safe HTML for a lore body; ``titles`` maps each linked slug that exists to its entry's
    title (links to other slugs render as missing)."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    md.inline.ruler.before("link", "wikilink", _wikilink_rule(titles))
    md.add_render_rule("wikilink", _render_wikilink)
    return str(md.render(body))
