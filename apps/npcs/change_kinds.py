"""What a ``game_state.write`` change request does, attached to the kind from NpcsConfig.ready().

The target is the subject (``npc:<id>`` or ``world:<region>``), the payload the change
(``{"set": {...}, "unset": [...]}``); the diff is the subject's state before and after.
"""

from __future__ import annotations

from typing import Any

from apps.npcs import selectors, services


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
