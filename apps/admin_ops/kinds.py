"""The kinds of change request and their policies, declared in one place.

A kind says who may ask for it (``request_scope``), who may decide (``decide_scope``), how many
distinct approvers it needs (never the author), how long a request lives, and what a valid
target looks like. What a kind *does* belongs to the app that owns the target, which attaches
its hooks from its own code, usually ``AppConfig.ready()`` (so web and worker both have them)::

    from apps.admin_ops.kinds import register_executor

    register_executor(
        "lore.publish",
        publish_revision,  # (*, target, payload, on_behalf_of, change_request_id) -> dict
        read_target=current_lore_state,  # (target) -> JSON-able state or None: the diff's "before"
        preview=proposed_lore_state,     # (target, payload, current) -> JSON-able state: "after"
        validate=check_publish_payload,  # (target, payload) -> None, raises ValueError(message)
    )

``read_target`` is what approvals are tied to: its output is hashed into the request's base
revision, re-read before approving and before executing, and a change resets approvals.
Without it the target counts as unchanging. ``on_closed``
(``(*, target, payload, status, change_request_id) -> None``) hears about rejected and expired
requests. Kinds whose executor has not arrived yet can still
be requested and approved; executing them fails with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from apps.security.scopes import ADMIN, GAME, LORE, NPC

Executor = Callable[..., dict[str, Any]]
TargetReader = Callable[[str], Any]
Preview = Callable[[str, dict[str, Any], Any], Any]
Validator = Callable[[str, dict[str, Any]], None]
ClosedHook = Callable[..., None]

TARGET_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*:[A-Za-z0-9][A-Za-z0-9_.:/-]{0,180}$")


class UnknownKindError(KeyError):
    """A change request kind that is not declared here."""


@dataclass
class ChangeKind:
    """One kind of change request: its policy and (once attached) its hooks."""

    name: str
    description: str
    request_scope: str
    target_prefixes: tuple[str, ...]
    required_approvals: int = 1
    decide_scope: str = ADMIN
    lifetime: timedelta = timedelta(days=3)
    executor: Executor | None = None
    read_target: TargetReader | None = None
    preview: Preview | None = None
    validate: Validator | None = None
    on_closed: list[ClosedHook] = field(default_factory=list)

    @property
    def target_help(self) -> str:
        return " or ".join(f"{prefix}:<name>" for prefix in self.target_prefixes)


KINDS: dict[str, ChangeKind] = {
    kind.name: kind
    for kind in (
        ChangeKind(
            "lore.publish",
            "Publish a lore revision so NPCs and players see it.",
            request_scope=LORE,
            target_prefixes=("lore",),
        ),
        ChangeKind(
            "game_state.write",
            "Apply a state change to an NPC or a world region.",
            request_scope=GAME,
            target_prefixes=("npc", "world"),
            lifetime=timedelta(hours=12),
        ),
        ChangeKind(
            "npc.update",
            "Change an NPC's definition (persona and prompt, intents, lore, refusals, active).",
            request_scope=NPC,
            target_prefixes=("npc",),
        ),
        ChangeKind(
            "admin.aws_action",
            "A cloud action through boto3, e.g. scaling a SageMaker endpoint.",
            request_scope=ADMIN,
            target_prefixes=("sagemaker",),
            lifetime=timedelta(hours=24),
        ),
        ChangeKind(
            "security.write",
            "A security write operation (keys, roles, remediation).",
            request_scope=ADMIN,
            target_prefixes=("security",),
            required_approvals=2,
            lifetime=timedelta(hours=24),
        ),
        ChangeKind(
            "adapter.deploy",
            "Deploy a distilled adapter to the Silver or Gold tier.",
            request_scope=ADMIN,
            target_prefixes=("adapter",),
            required_approvals=2,
        ),
    )
}


def get_kind(name: str) -> ChangeKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKindError(name) from None


def register_executor(
    kind: str,
    execute: Executor,
    *,
    read_target: TargetReader | None = None,
    preview: Preview | None = None,
    validate: Validator | None = None,
    on_closed: ClosedHook | None = None,
) -> None:
    """Attach what ``kind`` does. Registering again replaces the hooks (reloads, tests)."""
    declared = get_kind(kind)
    declared.executor = execute
    declared.read_target = read_target
    declared.preview = preview
    declared.validate = validate
    declared.on_closed = [on_closed] if on_closed else []


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(value: Any) -> str:
    """The revision of a piece of state: SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
