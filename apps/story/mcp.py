"""The Storyteller and RAG MCP servers, ``/mcp/storyteller/`` and ``/mcp/rag/`` (``lore`` scope).

The tools are plain functions first — the Silver tier's dialogue path calls the same functions
in-process — and MCP tools second, wrapped by the server builders below.

Storyteller: ``retrieve_lore`` (read), ``generate_narrative`` (request: queues a Bronze job and
returns its id), ``check_consistency`` (read). RAG: ``search_lore`` and ``retrieve_context``
(read). Tier rule (``bodybroker.mcp``): Silver may call read tools, Bronze read and request.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from apps.security.models import ApiKey
from apps.security.scopes import LORE
from apps.story import consistency, selectors, services
from apps.story.markup import LinkSyntaxError, parse_links
from apps.story.models import LoreEntry, LoreKind
from bodybroker.mcp import in_db_thread, mcp_caller, register_mcp_server, require_tool_access

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
REQUESTS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
MAX_QUERY = 500
MAX_NARRATIVE = 20_000


def _check_query(text: str, name: str) -> str:
    text = text.strip()
    if not text or len(text) > MAX_QUERY:
        raise ValueError(f"{name} must be 1–{MAX_QUERY} characters")
    return text


def _check_persona(persona: str | None) -> str | None:
    if persona is None or persona == "":
        return None
    if not selectors.lore_personas().filter(slug=persona).exists():
        raise ValueError(f"no persona (character entry) '{persona}'")
    return persona


def _check_limit(limit: int, most: int = 20) -> int:
    if isinstance(limit, bool) or not 1 <= limit <= most:
        raise ValueError(f"limit must be 1–{most}")
    return limit


# --- the tool functions (also called in-process by the Silver dialogue path) ------------------


def search_lore(
    query: str, persona: str | None = None, limit: int = 5, max_spoiler: int | None = None
) -> list[dict[str, Any]]:
    """Hybrid search of published lore as ``persona`` may know it (all lore when None)."""
    return selectors.lore_context(
        query=_check_query(query, "query"),
        persona=_check_persona(persona),
        limit=_check_limit(limit),
        max_spoiler=max_spoiler,
    )


def retrieve_context(
    topic: str, persona: str | None = None, max_chars: int = 2000
) -> dict[str, Any]:
    """Passages about ``topic`` joined into one block for a prompt, with their sources."""
    if not 200 <= max_chars <= 20_000:
        raise ValueError("max_chars must be 200–20000")
    passages = search_lore(topic, persona=persona, limit=8)
    blocks: list[str] = []
    sources: list[dict[str, str]] = []
    used = 0
    for p in passages:
        block = f"[{p['title']}{' — ' + p['heading'] if p['heading'] else ''}] {p['text']}"
        if used + len(block) > max_chars:
            break
        blocks.append(block)
        sources.append({"slug": p["slug"], "title": p["title"]})
        used += len(block) + 2
    return {"context": "\n\n".join(blocks), "sources": sources}


def retrieve_lore(topic: str, persona: str | None = None, limit: int = 5) -> list[dict[str, Any]]:
    """The storyteller's lore lookup: the best passage of each matching published entry."""
    return search_lore(topic, persona=persona, limit=limit)


def generate_narrative(
    theme: str, parts: int = 3, *, requested_by_key: ApiKey | None = None
) -> dict[str, Any]:
    """Queue a Bronze story-arc job; its result lands as a draft entry. Returns the job ids."""
    try:
        story_job = services.storyteller_arc_request(
            theme=theme, parts=parts, requested_by_key=requested_by_key
        )
    except services.LoreValidationError as exc:
        raise ValueError(
            "; ".join(f"{name}: {', '.join(msgs)}" for name, msgs in exc.fields.items())
        ) from exc
    return {
        "job_id": str(story_job.job_id),
        "story_job_id": str(story_job.pk),
        "status": story_job.state,
        "poll": f"/api/v1/lore/storyteller/{story_job.pk}",
    }


def check_consistency(narrative: str = "", slug: str = "") -> dict[str, Any]:
    """Rule checks (links, names, dates, contradicting facts) of an entry's newest revision
    (``slug``) or of a narrative not yet saved, against the lore it links to."""
    if bool(narrative) == bool(slug):
        raise ValueError("give exactly one of narrative or slug")
    if slug:
        entry = selectors.lore_entry(slug=slug)
        if entry is None:
            raise ValueError(f"no lore entry '{slug}'")
        findings = selectors.lore_consistency_report(entry=entry)
    else:
        if len(narrative) > MAX_NARRATIVE:
            raise ValueError(f"narrative is over {MAX_NARRATIVE} characters")
        try:
            links = parse_links(narrative)
        except LinkSyntaxError as exc:
            raise ValueError(f"invalid links: {exc}") from exc
        targets = {
            e.slug: e for e in LoreEntry.objects.filter(slug__in=[lk.target_slug for lk in links])
        }
        linked: dict[str, LoreEntry | None] = {
            lk.target_slug: targets.get(lk.target_slug) for lk in links
        }
        draft = LoreEntry(
            slug="narrative", title="(narrative)", kind=LoreKind.EVENT, body=narrative
        )
        others = LoreEntry.objects.only("pk", "slug", "title")
        findings = [
            *consistency.check_links(draft, linked),
            *consistency.check_names(draft, others),
            *consistency.check_facts(draft, linked),
            *consistency.check_dates(draft, linked),
        ]
    return {
        "consistent": not any(f.level == "error" for f in findings),
        "findings": [{"level": f.level, "rule": f.rule, "message": f.message} for f in findings],
    }


# --- the servers ------------------------------------------------------------------------------


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await in_db_thread(fn, *args, **kwargs)
    except ValueError as exc:
        raise ToolError(str(exc)) from exc


def build_storyteller_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(
        "bodybroker-storyteller",
        instructions="Lore retrieval, story-arc generation (Bronze jobs that land as drafts) and "
        "consistency checks for The Body Broker. Nothing here publishes.",
    )

    @server.tool(name="retrieve_lore", annotations=READ_ONLY)
    async def retrieve_lore_tool(
        topic: str, persona: str | None = None, limit: int = 5, *, ctx: Context
    ) -> list[dict[str, Any]]:
        """Published lore about a topic, as a persona (character slug) may know it."""
        require_tool_access(mcp_caller(ctx), "read")
        result: list[dict[str, Any]] = await _run(retrieve_lore, topic, persona, limit)
        return result

    @server.tool(name="generate_narrative", annotations=REQUESTS)
    async def generate_narrative_tool(
        theme: str, parts: int = 3, *, ctx: Context
    ) -> dict[str, Any]:
        """Queue a Bronze job outlining a story arc (1–12 parts); returns its job id. The
        result lands as a draft lore entry for writers to review."""
        caller = require_tool_access(mcp_caller(ctx), "request")
        result: dict[str, Any] = await _run(
            generate_narrative, theme, parts, requested_by_key=caller.key
        )
        return result

    @server.tool(name="check_consistency", annotations=READ_ONLY)
    async def check_consistency_tool(
        narrative: str = "", slug: str = "", *, ctx: Context
    ) -> dict[str, Any]:
        """Check a narrative (or an entry's newest revision, by slug) against linked lore:
        broken links, misspelt names, impossible dates, contradicting facts."""
        require_tool_access(mcp_caller(ctx), "read")
        result: dict[str, Any] = await _run(check_consistency, narrative, slug)
        return result

    return server


def build_rag_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(
        "bodybroker-rag",
        instructions="Hybrid (lexical + vector) search over published Body Broker lore, "
        "filtered by what a persona may know.",
    )

    @server.tool(name="search_lore", annotations=READ_ONLY)
    async def search_lore_tool(
        query: str,
        persona: str | None = None,
        limit: int = 5,
        max_spoiler: int | None = None,
        *,
        ctx: Context,
    ) -> list[dict[str, Any]]:
        """Search published lore; persona (a character slug) limits it to what they know."""
        require_tool_access(mcp_caller(ctx), "read")
        result: list[dict[str, Any]] = await _run(search_lore, query, persona, limit, max_spoiler)
        return result

    @server.tool(name="retrieve_context", annotations=READ_ONLY)
    async def retrieve_context_tool(
        topic: str, persona: str | None = None, max_chars: int = 2000, *, ctx: Context
    ) -> dict[str, Any]:
        """A block of lore about a topic to put in a prompt, with its sources."""
        require_tool_access(mcp_caller(ctx), "read")
        result: dict[str, Any] = await _run(retrieve_context, topic, persona, max_chars)
        return result

    return server


register_mcp_server("/mcp/storyteller/", build_storyteller_server, LORE)
register_mcp_server("/mcp/rag/", build_rag_server, LORE)
