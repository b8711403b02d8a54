"""Reads for lore: lists and filters, history and diffs, links, retrieval, quest graphs,
consistency reports and storyteller jobs."""

from __future__ import annotations

import difflib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import F, Q, QuerySet

from apps.story import consistency
from apps.story.models import (
    CONTENT_FIELDS,
    LoreEntry,
    LoreKind,
    LoreLink,
    LoreRevision,
    Quest,
    StoryJob,
)
from apps.story.retrieval import Hit, search_lore

logger = logging.getLogger(__name__)


def lore_entries(
    *, kind: str = "", status: str = "", tag: str = "", q: str = ""
) -> QuerySet[LoreEntry]:
    """Entries matching the filters; ``q`` searches titles, summaries, bodies and tags."""
    entries = LoreEntry.objects.all()
    if kind:
        entries = entries.filter(kind=kind)
    if status:
        entries = entries.filter(status=status)
    if tag:
        tag = " ".join(tag.lower().split())
        if connection.vendor == "postgresql":
            entries = entries.filter(tags__contains=[tag])
        else:
            entries = entries.filter(tags__icontains=f'"{tag}"')
    for word in q.split()[:8]:
        entries = entries.filter(
            Q(title__icontains=word)
            | Q(summary__icontains=word)
            | Q(body__icontains=word)
            | Q(slug__icontains=word)
        )
    return entries


def lore_entry(*, slug: str) -> LoreEntry | None:
    return LoreEntry.objects.filter(slug=slug).first()


def lore_history(*, entry: LoreEntry) -> QuerySet[LoreRevision]:
    return entry.revisions.select_related("author", "author_key").order_by("-number")


def lore_revision(*, entry: LoreEntry, number: int) -> LoreRevision | None:
    return entry.revisions.select_related("author", "author_key").filter(number=number).first()


def lore_links(*, entry: LoreEntry) -> dict[str, list[LoreLink]]:
    """Outgoing links (broken ones have no target) and backlinks."""
    return {
        "outgoing": list(entry.outgoing_links.select_related("target")),
        "backlinks": list(entry.incoming_links.select_related("source").order_by("source__title")),
    }


def lore_slugs_existing(slugs: list[str]) -> set[str]:
    return set(LoreEntry.objects.filter(slug__in=slugs).values_list("slug", flat=True))


def lore_titles(slugs: list[str]) -> dict[str, str]:
    """Each existing slug's title, in one query: what a body's ``[[links]]`` read as."""
    return dict(LoreEntry.objects.filter(slug__in=slugs).values_list("slug", "title"))


def lore_personas() -> QuerySet[LoreEntry]:
    """Characters: the personas a knowledge scope may name and an NPC preview may play."""
    return LoreEntry.objects.filter(kind=LoreKind.CHARACTER).order_by("title")


def lore_tags() -> list[str]:
    tags: set[str] = set()
    for entry_tags in LoreEntry.objects.values_list("tags", flat=True):
        tags.update(entry_tags)
    return sorted(tags)


# --- diffs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffRow:
    change: str  # equal | replace | delete | insert | skip
    left_no: int | None
    left: str
    right_no: int | None
    right: str


@dataclass(slots=True)
class RevisionDiff:
    old: LoreRevision
    new: LoreRevision
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)
    rows: list[DiffRow] = field(default_factory=list)


def text_diff(left_text: str, right_text: str, *, context: int = 3) -> list[DiffRow]:
    """Side-by-side rows of a line diff, with ``context`` unchanged lines around each change
    (longer unchanged runs become one ``skip`` row)."""
    rows: list[DiffRow] = []
    left, right = left_text.splitlines(), right_text.splitlines()
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        if rows or group[0][1] > 0:
            rows.append(DiffRow("skip", None, "", None, ""))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                    rows.append(DiffRow("equal", i + 1, left[i], j + 1, right[j]))
                continue
            for k in range(max(i2 - i1, j2 - j1)):
                i, j = i1 + k, j1 + k
                rows.append(
                    DiffRow(
                        tag,
                        i + 1 if i < i2 else None,
                        left[i] if i < i2 else "",
                        j + 1 if j < j2 else None,
                        right[j] if j < j2 else "",
                    )
                )
    return rows


def lore_revision_diff(*, old: LoreRevision, new: LoreRevision) -> RevisionDiff:
    """Two revisions side by side: the fields that changed, then the body line by line."""
    diff = RevisionDiff(old=old, new=new, rows=text_diff(old.body, new.body))
    for name in CONTENT_FIELDS:
        if name != "body" and getattr(old, name) != getattr(new, name):
            diff.fields.append((name, getattr(old, name), getattr(new, name)))
    return diff


# --- retrieval ----------------------------------------------------------------------------------


def lore_search(
    *, query: str, persona: str | None = None, limit: int = 5, max_spoiler: int | None = None
) -> list[Hit]:
    """Hybrid search of published lore, as ``persona`` may know it (everything when None)."""
    return search_lore(text=query, persona=persona, limit=limit, max_spoiler=max_spoiler)


def lore_context(
    *, query: str, persona: str | None, limit: int = 5, max_spoiler: int | None = None
) -> list[dict[str, Any]]:
    """Passages to ground a model's answer in, as plain data (for prompts and MCP tools)."""
    hits = search_lore(text=query, persona=persona, limit=limit, max_spoiler=max_spoiler)
    return [
        {
            "slug": h.entry_slug,
            "title": h.entry_title,
            "kind": h.kind,
            "heading": h.heading,
            "text": h.text,
            "score": h.score,
        }
        for h in hits
    ]


def lore_related_entries(*, entry: LoreEntry) -> list[LoreRevision]:
    """The established lore around an entry: the published revision of each entry linked from
    or to it. Drafts (a writer's trial entry, the storyteller's own earlier drafts, which link
    back to what they expand) and unpublished edits are not established, so never count."""
    ids = set(entry.outgoing_links.exclude(target=None).values_list("target_id", flat=True))
    ids |= set(entry.incoming_links.values_list("source_id", flat=True))
    ids.discard(entry.pk)
    return list(
        LoreRevision.objects.filter(entry_id__in=ids, entry__published_number=F("number")).order_by(
            "title", "entry_id"
        )
    )


def lore_consistency_report(*, entry: LoreEntry) -> list[consistency.Finding]:
    """Rule checks of the entry's newest revision against the lore it links and is linked by."""
    outgoing = {
        link.target_slug: link.target for link in entry.outgoing_links.select_related("target")
    }
    linked = dict(outgoing)
    for source in LoreEntry.objects.filter(outgoing_links__target=entry).distinct():
        linked.setdefault(source.slug, source)
    others = LoreEntry.objects.only("pk", "slug", "title")
    return [
        *consistency.check_links(entry, outgoing),
        *consistency.check_names(entry, others),
        *consistency.check_facts(entry, linked),
        *consistency.check_dates(entry, linked),
    ]


# --- quests -------------------------------------------------------------------------------------


@dataclass(slots=True)
class QuestGraph:
    """A quest with its beats laid out in columns by distance from the start, and problems."""

    quest: Quest
    nodes: list[Any]
    edges: list[Any]
    unreachable: list[str]
    dead_ends: list[str]
    missing_lore: list[tuple[str, str]]
    no_start: bool
    positions: dict[int, tuple[int, int]]
    width: int
    height: int

    @property
    def problems(self) -> int:
        return len(self.unreachable) + len(self.dead_ends) + len(self.missing_lore) + self.no_start


NODE_W, NODE_H, GAP_X, GAP_Y = 170, 54, 70, 26


def quest_graph(*, quest: Quest) -> QuestGraph:
    """Validate a quest graph: beats no start reaches, beats that lead nowhere without being an
    ending, and lore references to entries that do not exist. Also lays it out for the SVG."""
    nodes = list(quest.nodes.all())
    edges = list(quest.edges.select_related("source", "target"))
    outgoing: dict[int, list[int]] = {n.pk: [] for n in nodes}
    for edge in edges:
        outgoing[edge.source_id].append(edge.target_id)
    starts = [n.pk for n in nodes if n.is_start]
    depth: dict[int, int] = {}
    queue = deque((s, 0) for s in starts)
    while queue:
        node_id, d = queue.popleft()
        if node_id in depth:
            continue
        depth[node_id] = d
        queue.extend((t, d + 1) for t in outgoing[node_id])
    unreachable = [n.key for n in nodes if n.pk not in depth]
    dead_ends = [n.key for n in nodes if not n.is_ending and not outgoing[n.pk]]
    refs = {ref for n in nodes for ref in n.lore_refs}
    existing = lore_slugs_existing(sorted(refs))
    missing = [(n.key, ref) for n in nodes for ref in n.lore_refs if ref not in existing]
    max_depth = max(depth.values(), default=-1)
    columns: dict[int, list[int]] = {}
    for n in nodes:
        columns.setdefault(depth.get(n.pk, max_depth + 1), []).append(n.pk)
    positions = {
        node_id: (20 + col * (NODE_W + GAP_X), 20 + row * (NODE_H + GAP_Y))
        for col, ids in columns.items()
        for row, node_id in enumerate(ids)
    }
    width = 40 + (max(columns, default=0) + 1) * (NODE_W + GAP_X)
    height = 40 + max((len(ids) for ids in columns.values()), default=1) * (NODE_H + GAP_Y)
    return QuestGraph(
        quest=quest,
        nodes=nodes,
        edges=edges,
        unreachable=unreachable,
        dead_ends=dead_ends,
        missing_lore=missing,
        no_start=bool(nodes) and not starts,
        positions=positions,
        width=width,
        height=height,
    )


def quests() -> QuerySet[Quest]:
    return Quest.objects.all()


# --- storyteller ---------------------------------------------------------------------------------


def story_jobs(*, user: Any = None, limit: int = 30) -> list[StoryJob]:
    jobs = StoryJob.objects.select_related("job", "draft", "entry")
    if user is not None and not user.is_superuser:
        jobs = jobs.filter(requested_by=user)
    return list(jobs[:limit])


def story_job(*, story_job_id: Any) -> StoryJob | None:
    return StoryJob.objects.select_related("job", "draft", "entry").filter(pk=story_job_id).first()


def story_job_progress(*, story_job: StoryJob) -> dict[str, Any]:
    """What a writer waiting on a storyteller job is shown: since when it waits or runs and,
    while queued, how many Bronze jobs are ahead of it (and how many of those are running)."""
    from apps.router import selectors as router_selectors

    job = story_job.job
    progress: dict[str, Any] = {
        "since": story_job.created_at,
        "started_at": job.started_at if job is not None else None,
        "ahead": 0,
        "running_ahead": 0,
    }
    if job is not None and job.status == "queued":
        place = router_selectors.job_queue_place(job=job)
        progress["ahead"], progress["running_ahead"] = place["ahead"], place["running"]
    return progress


def story_review_for(*, entry: LoreEntry) -> StoryJob | None:
    """The newest Bronze consistency review of the entry's newest revision."""
    return (
        StoryJob.objects.select_related("job")
        .filter(kind="story.review", entry=entry, revision_number=entry.head_number)
        .order_by("-created_at")
        .first()
    )


def lore_publish_requests(*, entry: LoreEntry, limit: int = 5) -> list[Any]:
    """The entry's newest ``lore.publish`` change requests (open or decided), newest first."""
    from apps.admin_ops import selectors as ops_selectors

    return list(
        ops_selectors.change_requests(kind="lore.publish")
        .filter(target=f"lore:{entry.slug}")
        .order_by("-created_at")[:limit]
    )
