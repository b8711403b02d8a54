"""Rule checks an editor sees before publishing: links, names, dates, contradicting facts.

Facts are list lines in a body: ``- Born: 1887`` about the entry itself, ``- [[mara-voss]]
died: 1921`` about another entry. Checks read each entry's newest revision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from apps.story.markup import Fact, parse_facts
from apps.story.models import LoreEntry, LoreKind, LoreStatus

BIRTH = ("born", "birth", "founded", "built", "created", "forged")
DEATH = ("died", "death", "destroyed", "dissolved", "burned", "sank")
EVENT_DATE = ("date", "year", "when", "happened")


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "error" | "warning"
    rule: str  # "links" | "names" | "facts" | "dates"
    message: str


def _normal(value: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", value.lower()).split())


def _year(facts: Iterable[Fact], names: tuple[str, ...]) -> int | None:
    for fact in facts:
        if fact.attribute in names and fact.year is not None:
            return fact.year
    return None


def check_links(entry: LoreEntry, linked: dict[str, LoreEntry | None]) -> list[Finding]:
    findings = []
    for slug, target in sorted(linked.items()):
        if target is None:
            findings.append(Finding("error", "links", f"[[{slug}]] links to no entry"))
        elif target.status != LoreStatus.PUBLISHED:
            findings.append(
                Finding("warning", "links", f"[[{slug}]] is still a draft: players can't see it")
            )
    return findings


def check_names(entry: LoreEntry, others: Iterable[LoreEntry]) -> list[Finding]:
    findings = []
    text = f"{entry.summary}\n{entry.body}"
    lowered = text.lower()
    for other in others:
        title = other.title
        if other.pk == entry.pk or len(title) < 4:
            continue
        if other.title.lower() == entry.title.lower():
            findings.append(
                Finding("warning", "names", f"[[{other.slug}]] has the same title, '{title}'")
            )
            continue
        start = lowered.find(title.lower())
        while start >= 0:
            written = text[start : start + len(title)]
            if written != title and written.lower() == title.lower():
                findings.append(
                    Finding(
                        "warning", "names", f"writes '{written}'; the entry is titled '{title}'"
                    )
                )
                break
            start = lowered.find(title.lower(), start + 1)
    return findings


def check_facts(entry: LoreEntry, linked: dict[str, LoreEntry | None]) -> list[Finding]:
    """Contradictions between what the entry says and what linked entries say, both ways."""
    findings = []
    own = parse_facts(entry.body)
    own_about_self = {f.attribute: f for f in own if f.subject in (None, entry.slug)}
    for slug, other in sorted(linked.items()):
        if other is None or other.pk == entry.pk:
            continue
        theirs = parse_facts(other.body)
        their_self = {f.attribute: f for f in theirs if f.subject in (None, other.slug)}
        for fact in theirs:
            mine = own_about_self.get(fact.attribute)
            if fact.subject == entry.slug and mine and _normal(mine.value) != _normal(fact.value):
                findings.append(
                    Finding(
                        "error",
                        "facts",
                        f"says {fact.attribute}: {mine.value}; [[{slug}]] says "
                        f"{fact.attribute}: {fact.value}",
                    )
                )
        for fact in own:
            stated = their_self.get(fact.attribute)
            if fact.subject == slug and stated and _normal(stated.value) != _normal(fact.value):
                findings.append(
                    Finding(
                        "error",
                        "facts",
                        f"says [[{slug}]] {fact.attribute}: {fact.value}; [[{slug}]] itself "
                        f"says {stated.value}",
                    )
                )
    return findings


def check_dates(entry: LoreEntry, linked: dict[str, LoreEntry | None]) -> list[Finding]:
    findings = []
    own = parse_facts(entry.body)
    mine = [f for f in own if f.subject is None]
    born, died = _year(mine, BIRTH), _year(mine, DEATH)
    if born is not None and died is not None and died < born:
        findings.append(Finding("error", "dates", f"ends in {died}, before it begins ({born})"))
    event_year = _year(mine, EVENT_DATE) if entry.kind == LoreKind.EVENT else None
    for slug, other in sorted(linked.items()):
        if other is None:
            continue
        theirs = [f for f in parse_facts(other.body) if f.subject is None]
        pairs: list[tuple[int | None, int | None, int | None, str, str]]
        if event_year is not None and other.kind == LoreKind.CHARACTER:
            pairs = [(event_year, _year(theirs, BIRTH), _year(theirs, DEATH), slug, "this event")]
        elif other.kind == LoreKind.EVENT and entry.kind == LoreKind.CHARACTER:
            pairs = [(_year(theirs, EVENT_DATE), born, died, "this character", f"[[{slug}]]")]
        else:
            pairs = []
        for year, start, end, who, what in pairs:
            if year is None:
                continue
            who_text = f"[[{who}]]" if who != "this character" else who
            if end is not None and year > end:
                findings.append(
                    Finding("warning", "dates", f"{who_text} died in {end} but {what} is in {year}")
                )
            if start is not None and year < start:
                findings.append(
                    Finding(
                        "warning",
                        "dates",
                        f"{who_text} was born in {start} but {what} is in {year}",
                    )
                )
    return findings
