"""What the change request kinds this app owns do, attached from NpcsConfig.ready().

``game_state.write``: the target is the subject (``npc:<id>`` or ``world:<region>``), the
payload the change (``{"set": {...}, "unset": [...]}``); the diff is the subject's state before
and after.

``npc.update``: the target is ``npc:<slug>``, the payload the definition fields to change
(``{"name": ..., "active": false, ...}``, names as in ``services.NPC_FIELDS``); the diff is the
definition, prompt included, before and after. ``services.npc_change`` opens these requests;
the executor applies them through ``services.npc_update`` on behalf of the approver.
"""

from __future__ import annotations

from typing import Any

from apps.npcs import selectors, services
from apps.npcs.models import Npc


def validate(target: str, payload: dict[str, Any]) -> None:
    selectors.parse_subject(target)
    services.check_changes(payload)


def preview(target: str, payload: dict[str, Any], current: Any) -> dict[str, Any]:
    return services.apply_changes(current or {}, payload)


def execute(
    *, target: str, payload: dict[str, Any], on_behalf_of: Any, change_request_id: Any
) -> dict[str, Any]:
    by = on_behalf_of.get_username() if on_behalf_of is not None else "system"
    return services.game_state_apply(
        subject=target,
        changes=payload,
        by=f"change request {str(change_request_id)[:8]} approved by {by}",
        change_request_id=change_request_id,
    )


def on_closed(*, target: str, payload: dict[str, Any], status: str, change_request_id: Any) -> None:
    services.game_state_events_close(change_request_id=change_request_id, status=status)


# --- npc.update ----------------------------------------------------------------------------------


def _npc_slug(target: str) -> str:
    scope, slug = selectors.parse_subject(target)
    if scope != "npc":
        raise ValueError("the target of npc.update is npc:<slug>")
    return slug


def npc_definition_read(target: str) -> dict[str, Any] | None:
    """What approvals are tied to: the NPC's whole definition and its prompt (None if gone)."""
    npc = selectors.npc_get(slug=_npc_slug(target))
    return services.npc_definition(npc) if npc is not None else None


def npc_update_validate(target: str, payload: dict[str, Any]) -> None:
    """The payload names known fields, and the NPC it would make validates as a whole."""
    npc = selectors.npc_get(slug=_npc_slug(target))
    if npc is None:
        raise ValueError(f"no NPC '{_npc_slug(target)}'")
    if not payload:
        raise ValueError("name at least one field of the NPC to change")
    try:
        services.check_npc_change(npc, payload)
    except services.NpcValidationError as exc:
        raise ValueError(str(exc)) from exc


def npc_update_preview(target: str, payload: dict[str, Any], current: Any) -> dict[str, Any]:
    """The definition after the change, with the prompt it would give the tiers."""
    if current is None:
        return dict(payload)
    proposed = {name: current.get(name) for name in services.NPC_FIELDS}
    proposed.update(payload)
    try:
        clean = services.check_npc_fields(proposed)
    except services.NpcValidationError:
        clean = proposed  # shown as asked; executing it fails with the reasons
    unsaved = Npc(**{name: clean[name] for name in services.NPC_FIELDS})
    return {**clean, "prompt": selectors.npc_prompt(unsaved)}


def npc_update_execute(
    *, target: str, payload: dict[str, Any], on_behalf_of: Any, change_request_id: Any
) -> dict[str, Any]:
    from apps.admin_ops.actors import SYSTEM, Actor

    by = on_behalf_of.get_username() if on_behalf_of is not None else "system"
    npc = services.npc_update(
        slug=_npc_slug(target),
        changes=payload,
        actor=Actor(user=on_behalf_of) if on_behalf_of is not None else SYSTEM,
        summary=f"change request {str(change_request_id)[:8]} approved by {by}",
    )
    return {"slug": npc.slug, "changed": sorted(payload), "active": npc.active}


def register() -> None:
    from apps.admin_ops.kinds import register_executor

    register_executor(
        "game_state.write",
        execute,
        read_target=selectors.game_state_read,
        preview=preview,
        validate=validate,
        on_closed=on_closed,
    )
    register_executor(
        services.NPC_UPDATE_KIND,
        npc_update_execute,
        read_target=npc_definition_read,
        preview=npc_update_preview,
        validate=npc_update_validate,
    )
