"""The router's persona provider for NPC definitions: ``persona="<npc slug>"`` plays that NPC.

The router asks providers on its hot path, often from async code (chains, consumers), where the
ORM must not run. So the provider reads through a process-local cache:

- from sync code (views, Celery, the intent updater's sync parts, :func:`warm`) a miss or an
  expired entry is read from the database and cached for ``TTL_S`` seconds (misses too, so the
  bundled personas do not cost a query each time);
- from async code it answers only from the cache — a fresh entry, or a stale one rather than
  none — and never queries or schedules anything. An NPC nobody warmed yet falls through to the
  bundled personas until a sync path (or ``await sync_to_async(warm)()``) fills the cache.

The trade-off: an edit reaches other processes up to ``TTL_S`` seconds late (the process that
saves drops its own entry on commit), and async-only processes must warm the cache themselves.
In exchange a lookup is a dict read under a lock, with no I/O.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable

from django.db import DatabaseError

from apps.npcs.models import Npc
from apps.npcs.selectors import npc_prompt
from apps.router.personas import Persona

logger = logging.getLogger(__name__)

TTL_S = 5.0
_lock = threading.Lock()
_cache: dict[str, tuple[float, Persona | None]] = {}


def npc_persona(npc: Npc) -> Persona | None:
    """The router persona of an NPC; None when it is inactive (the router then falls back)."""
    if not npc.active:
        return None
    return Persona(npc.slug, npc.name, npc_prompt(npc), tuple(npc.safety_lines))


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _store(slug: str, found: Persona | None) -> None:
    with _lock:
        _cache[slug] = (time.monotonic() + TTL_S, found)


def remember(slug: str, persona: Persona | None) -> None:
    """Cache a persona the caller has just read (saves ``warm``'s query)."""
    _store(slug, persona)


def warm(slugs: Iterable[str] | None = None) -> int:
    """Fill the cache from the database (sync code only): every NPC, or just ``slugs``.

    Returns how many personas were cached. One query.
    """
    wanted = None if slugs is None else set(slugs)
    npcs = Npc.objects.all() if wanted is None else Npc.objects.filter(slug__in=wanted)
    found = {npc.slug: npc_persona(npc) for npc in npcs}
    for slug in wanted or ():
        found.setdefault(slug, None)
    for slug, persona in found.items():
        _store(slug, persona)
    return sum(1 for p in found.values() if p is not None)


def forget(slug: str | None = None) -> None:
    """Drop one cached persona (after an edit commits), or all of them."""
    with _lock:
        if slug is None:
            _cache.clear()
        else:
            _cache.pop(slug, None)


def provide(key: str) -> Persona | None:
    """The persona provider registered with the router (see the module docstring)."""
    with _lock:
        entry = _cache.get(key)
    if entry is not None and (entry[0] > time.monotonic() or _in_event_loop()):
        return entry[1]
    if _in_event_loop():
        return None
    try:
        npc = Npc.objects.filter(slug=key).first()
    except (DatabaseError, RuntimeError):
        # no database here (a test without one, a process before migrate): the router falls
        # back to its bundled personas rather than failing the request
        logger.debug("npc persona %r: database not readable", key, exc_info=True)
        return entry[1] if entry is not None else None
    found = npc_persona(npc) if npc is not None else None
    _store(key, found)
    return found
