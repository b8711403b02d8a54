"""Writes of the game state (queueing state-change events, applying approved writes) and of NPC
definitions (``npc_create``, ``npc_change`` — the door people and integrations use — and
``npc_update``, which applies a change).

Who may change an NPC definition: callers with the ``npc`` scope (or ``admin``). Creating an NPC
and re-tuning one (``TUNING_FIELDS``: refresh rate and token budgets) apply at once; any other
change to an existing NPC (persona and so its prompt, intents, lore, refusals, policy, being
active) becomes an ``npc.update`` change request that an admin approves (``change_kinds``).
Every applied change is audited (``npc.create``, ``npc.change`` with the fields before and after).

Events go out on the ``game_state`` channel-layer group (``type: "game_state.event"``) when
their row commits; applied writes go out as ``game_state.applied``; NPC definition changes go out
on the ``npcs`` group as ``npc.changed``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.npcs import archetypes, selectors
from apps.npcs.models import GameStateEvent, MicroPolicy, Npc, NpcState, WorldState
from apps.npcs.selectors import parse_subject, state_cache_key
from bodybroker.broadcast import broadcast

if TYPE_CHECKING:
    from apps.admin_ops.actors import Actor
    from apps.admin_ops.models import ChangeRequest

GAME_STATE_GROUP = "game_state"
MAX_KEYS = 64


def check_changes(changes: Any) -> dict[str, Any]:
    """A change is ``{"set": {key: value}, "unset": [key]}`` with at least one of them."""
    if not isinstance(changes, dict):
        raise ValueError("changes is an object with 'set' and/or 'unset'")
    unknown = sorted(set(changes) - {"set", "unset"})
    if unknown:
        raise ValueError(f"unknown change fields: {', '.join(unknown)} (use 'set', 'unset')")
    to_set = changes.get("set", {})
    to_unset = changes.get("unset", [])
    if not isinstance(to_set, dict) or not isinstance(to_unset, list):
        raise ValueError("'set' is an object and 'unset' a list of keys")
    if not to_set and not to_unset:
        raise ValueError("a change sets or unsets at least one key")
    keys = [*to_set, *to_unset]
    if len(keys) > MAX_KEYS or any(not isinstance(k, str) or not 0 < len(k) <= 64 for k in keys):
        raise ValueError(f"at most {MAX_KEYS} keys, each a string of 1–64 characters")
    return {"set": dict(to_set), "unset": list(to_unset)}


def apply_changes(state: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The state after a shallow merge: ``set`` keys replaced, ``unset`` keys removed."""
    merged = dict(state)
    merged.update(changes.get("set", {}))
    for key in changes.get("unset", []):
        merged.pop(key, None)
    return merged


def _event_payload(event: GameStateEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "subject": event.subject,
        "kind": event.kind,
        "changes": event.changes,
        "status": event.status,
        "source": event.source,
        "change_request_id": str(event.change_request_id) if event.change_request_id else None,
    }


def game_state_event_queue(
    *, subject: str, kind: str, changes: Any, reason: str, source: str
) -> GameStateEvent:
    """Persist a state-change event and publish it on the ``game_state`` group on commit.

    A ``write`` event starts ``pending``: it changes nothing until its change request is
    approved (the caller opens one and links it with :func:`game_state_event_link`). Locks
    nothing.
    """
    parse_subject(subject)
    if kind not in GameStateEvent.Kind.values:
        raise ValueError("kind is 'hint' or 'write'")
    checked = check_changes(changes)
    status = (
        GameStateEvent.Status.PENDING
        if kind == GameStateEvent.Kind.WRITE
        else GameStateEvent.Status.PUBLISHED
    )
    event = GameStateEvent.objects.create(
        subject=subject,
        kind=kind,
        changes=checked,
        reason=reason[:2000],
        status=status,
        source=source[:200],
    )
    broadcast(GAME_STATE_GROUP, {"type": "game_state.event", "event": _event_payload(event)})
    return event


def game_state_event_link(*, event: GameStateEvent, change_request_id: Any) -> GameStateEvent:
    """Remember which change request decides a write event."""
    event.change_request_id = change_request_id
    event.save(update_fields=["change_request_id"])
    return event


def game_state_apply(
    *, subject: str, changes: dict[str, Any], by: str, change_request_id: Any = None
) -> dict[str, Any]:
    """Apply an approved write: merge ``changes`` into the subject's state and bump its version.

    Locks the subject's row (SELECT … FOR UPDATE; created if new). Marks the change request's
    pending events applied, drops the cached snapshot and broadcasts ``game_state.applied`` on
    commit. Returns ``{subject, version, state}``.
    """
    scope, name = parse_subject(subject)
    checked = check_changes(changes)
    with transaction.atomic():
        row: NpcState | WorldState
        if scope == "npc":
            NpcState.objects.get_or_create(npc_id=name)
            row = NpcState.objects.select_for_update().get(npc_id=name)
        else:
            WorldState.objects.get_or_create(region=name)
            row = WorldState.objects.select_for_update().get(region=name)
        row.state = apply_changes(row.state, checked)
        row.version += 1
        row.updated_by = by[:200]
        row.save()
        if change_request_id is not None:
            GameStateEvent.objects.filter(
                change_request_id=change_request_id, status=GameStateEvent.Status.PENDING
            ).update(status=GameStateEvent.Status.APPLIED, applied_at=timezone.now())
        key = state_cache_key(subject)
        transaction.on_commit(lambda: cache.delete(key))
        result = {"subject": subject, "version": row.version, "state": row.state}
        broadcast(GAME_STATE_GROUP, {"type": "game_state.applied", **result})
    return result


def game_state_events_close(*, change_request_id: Any, status: str) -> int:
    """Close the pending events of a rejected or expired change request."""
    closed = {
        "rejected": GameStateEvent.Status.REJECTED,
        "expired": GameStateEvent.Status.EXPIRED,
    }.get(status)
    if closed is None:
        return 0
    return GameStateEvent.objects.filter(
        change_request_id=change_request_id, status=GameStateEvent.Status.PENDING
    ).update(status=closed)


# --- NPC definitions -----------------------------------------------------------------------------

NPCS_GROUP = "npcs"
NPC_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")  # the game-state subject vocabulary
INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ARG_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
LORE_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
RESERVED_SLUGS = frozenset({"new", "ask"})  # taken by the NPC pages' own URLs
MAX_INTENTS = 32
MAX_ARGS = 4
MAX_SAFETY_LINES = 20
INTENT_HZ_RANGE = (0.5, 2.0)
INTENT_TOKENS_RANGE = (1, 8)
DIALOGUE_TOKENS_RANGE = (1, 512)
TEXT_LIMITS = {
    "name": 120,
    "role": 200,
    "description": 2000,
    "motivation": 1000,
    "speaking_style": 300,
}
NPC_FIELDS = (
    "name",
    "role",
    "description",
    "motivation",
    "speaking_style",
    "archetype",
    "allowed_intents",
    "default_intent",
    "knowledge_scope",
    "safety_lines",
    "intent_hz",
    "intent_max_tokens",
    "dialogue_max_tokens",
    "micro_policy",
    "active",
)
# Changes to these alone apply at once (audited): they tune cost and pace, not who the NPC is
# nor what it may say or do. Everything else waits for an admin's approval.
TUNING_FIELDS = frozenset({"intent_hz", "intent_max_tokens", "dialogue_max_tokens"})
NPC_UPDATE_KIND = "npc.update"


class NpcValidationError(ValueError):
    """NPC fields that do not validate; ``fields`` maps each field to its messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()))
        self.fields = fields


class NpcNotFoundError(LookupError):
    """No NPC definition with that slug."""


def _check_intents(value: Any, errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        errors["allowed_intents"] = ["a non-empty list of {name, args} intents"]
        return []
    if len(value) > MAX_INTENTS:
        errors["allowed_intents"] = [f"at most {MAX_INTENTS} intents"]
        return []
    problems: list[str] = []
    intents: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        where = f"intent {index + 1}"
        if not isinstance(item, dict) or not set(item) <= {"name", "args"} or "name" not in item:
            problems.append(f"{where}: an object with 'name' and optional 'args' only")
            continue
        name, args = item["name"], item.get("args", [])
        if not isinstance(name, str) or not INTENT_NAME.match(name):
            problems.append(f"{where}: name {name!r} is not a lower-case slug like 'patrol'")
            continue
        if name in seen:
            problems.append(f"{where}: '{name}' appears twice")
            continue
        seen.add(name)
        if (
            not isinstance(args, list)
            or len(args) > MAX_ARGS
            or any(not isinstance(a, str) or not ARG_NAME.match(a) for a in args)
            or len(set(args)) != len(args)
        ):
            problems.append(
                f"'{name}': args are up to {MAX_ARGS} distinct lower-case identifiers like 'x'"
            )
            continue
        intents.append({"name": name, "args": list(args)})
    if problems:
        errors["allowed_intents"] = problems
    return intents


def _check_string_list(
    value: Any, field: str, pattern: re.Pattern[str], errors: dict[str, list[str]], limit: int
) -> list[str]:
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        errors[field] = ["a list of strings"]
        return []
    bad = [v for v in value if not pattern.match(v)]
    if bad:
        errors[field] = [f"not lower-case slugs: {', '.join(map(repr, bad[:5]))}"]
    elif len(value) > limit:
        errors[field] = [f"at most {limit} items"]
    return list(dict.fromkeys(value))


def check_npc_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate a complete set of NPC fields (as stored); returns them cleaned.

    Raises NpcValidationError naming every field that is wrong.
    """
    errors: dict[str, list[str]] = {}
    clean = dict(fields)
    for name, limit in TEXT_LIMITS.items():
        text = clean.get(name, "")
        if not isinstance(text, str):
            errors[name] = ["must be a string"]
            continue
        clean[name] = text.strip()
        if len(clean[name]) > limit:
            errors[name] = [f"at most {limit} characters"]
    if not clean.get("name") and "name" not in errors:
        errors["name"] = ["an NPC needs a name"]
    archetype = clean.get("archetype")
    if not isinstance(archetype, str) or not INTENT_NAME.match(archetype):
        errors["archetype"] = [
            "a lower-case slug such as " + ", ".join(archetypes.archetype_names())
        ]
    intents = _check_intents(clean.get("allowed_intents"), errors)
    clean["allowed_intents"] = intents
    names = [i["name"] for i in intents]
    default = clean.get("default_intent")
    if not default:  # idle when the vocabulary has it (the recommended default), else the first
        fallback = names[0] if names else ""
        default = archetypes.DEFAULT_INTENT if archetypes.DEFAULT_INTENT in names else fallback
    if not isinstance(default, str):
        errors["default_intent"] = ["the name of one of the allowed intents"]
    elif intents and default not in names:
        errors["default_intent"] = [f"'{default}' is not one of the allowed intents"]
    clean["default_intent"] = default
    clean["knowledge_scope"] = _check_string_list(
        clean.get("knowledge_scope", []), "knowledge_scope", LORE_SLUG, errors, 50
    )
    lines = clean.get("safety_lines")
    if not isinstance(lines, list) or any(not isinstance(x, str) for x in lines):
        errors["safety_lines"] = ["a list of in-character lines"]
    else:
        lines = [x.strip() for x in lines if x.strip()]
        if not lines:
            errors["safety_lines"] = ["give at least one in-character refusal line"]
        elif len(lines) > MAX_SAFETY_LINES or any(len(x) > 300 for x in lines):
            errors["safety_lines"] = [f"at most {MAX_SAFETY_LINES} lines of 300 characters"]
        clean["safety_lines"] = lines
    hz = clean.get("intent_hz")
    low, high = INTENT_HZ_RANGE
    if (
        isinstance(hz, bool)
        or not isinstance(hz, int | float)
        or not low <= hz <= high  # first: isfinite raises on an integer past float's range
        or not math.isfinite(hz)
    ):
        errors["intent_hz"] = [f"a number from {low} to {high} (intent refreshes per second)"]
    for field, (lo, hi) in (
        ("intent_max_tokens", INTENT_TOKENS_RANGE),
        ("dialogue_max_tokens", DIALOGUE_TOKENS_RANGE),
    ):
        value = clean.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            errors[field] = [f"a whole number from {lo} to {hi}"]
    if clean.get("micro_policy") not in MicroPolicy.values:
        errors["micro_policy"] = [f"one of {', '.join(MicroPolicy.values)}"]
    if not isinstance(clean.get("active"), bool):
        errors["active"] = ["true or false"]
    if errors:
        raise NpcValidationError(errors)
    return clean


def _npc_defaults(archetype: str) -> dict[str, Any]:
    return {
        "role": "",
        "description": "",
        "motivation": "",
        "speaking_style": "",
        "archetype": archetype,
        "allowed_intents": archetypes.archetype_intents(archetype),
        "default_intent": "",
        "knowledge_scope": [],
        "intent_hz": 1.0,
        "intent_max_tokens": 8,
        "dialogue_max_tokens": 96,
        "micro_policy": archetypes.POLICY_FOR_ARCHETYPE.get(archetype, MicroPolicy.CIVILIAN),
        "active": True,
    }


def _announce(npc: Npc, action: str) -> None:
    from apps.npcs import personas  # the provider's process-local cache

    slug = npc.slug
    transaction.on_commit(lambda: personas.forget(slug))
    broadcast(NPCS_GROUP, {"type": "npc.changed", "slug": slug, "action": action})


def npc_create(*, slug: str, fields: dict[str, Any], actor: Actor | None = None) -> Npc:
    """Create an NPC definition; omitted fields take the archetype's preset (intents, policy).

    Validates everything first (NpcValidationError names each bad field; a taken slug is a
    ``slug`` error). Locks nothing; the unique slug decides a race. Emits ``npc.changed``
    (``action: "created"``) on the ``npcs`` group on commit and an ``npc.create`` audit event
    by ``actor`` (default: the current request's actor).
    """
    unknown = sorted(set(fields) - set(NPC_FIELDS))
    if unknown:
        raise NpcValidationError({name: ["unknown field"] for name in unknown})
    errors: dict[str, list[str]] = {}
    if not isinstance(slug, str) or not NPC_SLUG.match(slug):
        errors["slug"] = ["a lower-case slug (letters, digits, - and _), up to 100 characters"]
    elif slug in RESERVED_SLUGS:
        errors["slug"] = [f"'{slug}' is reserved; pick another"]
    archetype = fields.get("archetype", "civilian")
    merged = {**_npc_defaults(archetype if isinstance(archetype, str) else ""), **fields}
    try:
        clean = check_npc_fields(merged)
    except NpcValidationError as exc:
        raise NpcValidationError({**errors, **exc.fields}) from exc
    if errors:
        raise NpcValidationError(errors)
    with transaction.atomic():
        if Npc.objects.filter(slug=slug).exists():
            raise NpcValidationError({"slug": [f"an NPC '{slug}' exists already"]})
        npc = Npc.objects.create(slug=slug, **clean)
        _audit(npc, "npc.create", actor=actor, before=None, after=npc_definition(npc))
        _announce(npc, "created")
    return npc


def npc_update(
    *, slug: str, changes: dict[str, Any], actor: Actor | None = None, summary: str = ""
) -> Npc:
    """Apply a change to some fields of an NPC definition; the result is validated as a whole.

    No rights are checked here: callers are :func:`npc_change` (tuning), the ``npc.update``
    executor (an approved change request) and the demo seed. Locks the NPC's row (SELECT … FOR
    UPDATE) so two edits apply one after the other. Raises NpcNotFoundError or
    NpcValidationError. When something changed: an ``npc.change`` audit event by ``actor``
    with the changed fields before and after, this process's cached persona dropped and
    ``npc.changed`` (``action: "updated"``) on the ``npcs`` group on commit.
    """
    unknown = sorted(set(changes) - set(NPC_FIELDS))
    if unknown:
        raise NpcValidationError({name: ["unknown field"] for name in unknown})
    with transaction.atomic():
        npc = Npc.objects.select_for_update().filter(slug=slug).first()
        if npc is None:
            raise NpcNotFoundError(f"no NPC '{slug}'")
        current = {name: getattr(npc, name) for name in NPC_FIELDS}
        clean = check_npc_fields({**current, **changes})
        changed = [name for name in NPC_FIELDS if clean[name] != current[name]]
        if changed:
            prompt_before = selectors.npc_prompt(npc)
            for name in changed:
                setattr(npc, name, clean[name])
            npc.save(update_fields=[*changed, "updated_at"])
            before = {name: current[name] for name in changed}
            after = {name: clean[name] for name in changed}
            prompt_after = selectors.npc_prompt(npc)
            if prompt_after != prompt_before:
                before["prompt"], after["prompt"] = prompt_before, prompt_after
            _audit(npc, "npc.change", actor=actor, before=before, after=after, summary=summary)
            _announce(npc, "updated")
    return npc


def npc_definition(npc: Npc) -> dict[str, Any]:
    """Every stored field of an NPC definition and the prompt it gives the tiers."""
    return {
        **{name: getattr(npc, name) for name in NPC_FIELDS},
        "prompt": selectors.npc_prompt(npc),
    }


def _audit(
    npc: Npc,
    action: str,
    *,
    actor: Actor | None,
    before: Any,
    after: Any,
    summary: str = "",
) -> None:
    from apps.admin_ops.services import audit_record

    audit_record(
        action=action,
        target=f"npc:{npc.slug}",
        actor=actor,
        before=before,
        after=after,
        summary=summary,
    )


def check_npc_change(npc: Npc, changes: dict[str, Any]) -> dict[str, Any]:
    """The fields ``changes`` would really change on ``npc``, cleaned, after validating the NPC
    it would make as a whole (NpcValidationError names each bad or unknown field)."""
    unknown = sorted(set(changes) - set(NPC_FIELDS))
    if unknown:
        raise NpcValidationError({name: ["unknown field"] for name in unknown})
    current = {name: getattr(npc, name) for name in NPC_FIELDS}
    clean = check_npc_fields({**current, **changes})
    return {name: clean[name] for name in NPC_FIELDS if clean[name] != current[name]}


@dataclass(frozen=True)
class NpcChange:
    """What :func:`npc_change` did: ``npc`` as it is now, and the change request a definition
    change became (None when the change applied at once, or changed nothing)."""

    npc: Npc
    change_request: ChangeRequest | None = None
    changed: tuple[str, ...] = ()


def npc_change(
    *, slug: str, changes: dict[str, Any], reason: str, actor: Actor, scopes: frozenset[str]
) -> NpcChange:
    """The door for changing an existing NPC: tuning applies at once, anything else becomes an
    ``npc.update`` change request carrying just the fields that differ.

    Validates the NPC as it would be after the change first (NpcValidationError names each bad
    field; a definition change without a ``reason`` is a ``reason`` error), so a request that
    could never apply is never opened. Raises NpcNotFoundError, and
    ``apps.admin_ops.services.ChangeRequestError`` when ``scopes`` may not ask for the change.
    Locks nothing itself: :func:`npc_update` locks the row, and a change request is tied to the
    definition it was made against (a later edit resets its approvals).
    """
    npc = Npc.objects.filter(slug=slug).first()
    if npc is None:
        raise NpcNotFoundError(f"no NPC '{slug}'")
    differs = check_npc_change(npc, changes)
    if not differs:
        return NpcChange(npc=npc)
    if set(differs) <= TUNING_FIELDS:
        npc = npc_update(
            slug=slug, changes=differs, actor=actor, summary="tuning: applied without approval"
        )
        return NpcChange(npc=npc, changed=tuple(differs))
    if not reason.strip():
        raise NpcValidationError(
            {"reason": ["say why: changing who an NPC is waits for an admin's approval"]}
        )
    from apps.admin_ops.services import change_request_create

    change_request = change_request_create(
        kind=NPC_UPDATE_KIND,
        target=f"npc:{slug}",
        payload=differs,
        reason=reason,
        actor=actor,
        scopes=scopes,
    )
    return NpcChange(npc=npc, change_request=change_request, changed=tuple(differs))
