"""Game state the server keeps: the latest state of each NPC and of each world region, and the
state-change events queued against them.

NPC ids and regions are plain slugs, so NPC definitions (a later model) can attach by id.
Nothing writes these rows directly from a model or an integration: a ``write`` event becomes a
``game_state.write`` change request and is applied when a person approves it.
"""

from __future__ import annotations

import uuid

from django.db import models


class NpcState(models.Model):
    """The latest state snapshot of one NPC (mood, location, what it knows…), versioned."""

    npc_id = models.SlugField(max_length=100, unique=True)
    state = models.JSONField(default=dict)
    version = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("npc_id",)

    def __str__(self) -> str:
        return f"npc {self.npc_id} v{self.version}"


class WorldState(models.Model):
    """The state of one world region (weather, alarms, doors, who is where), versioned."""

    region = models.SlugField(max_length=100, unique=True)
    state = models.JSONField(default=dict)
    version = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("region",)

    def __str__(self) -> str:
        return f"region {self.region} v{self.version}"


class GameStateEvent(models.Model):
    """A state change someone asked for, published on the event bus and kept.

    A ``hint`` is advisory (game clients may react; nothing is stored as state). A ``write``
    changes stored state and waits for its change request: ``pending`` until approved and
    applied (``applied``), or closed (``rejected``/``expired``).
    """

    class Kind(models.TextChoices):
        HINT = "hint"
        WRITE = "write"

    class Status(models.TextChoices):
        PUBLISHED = "published"  # hints: delivered, nothing more to do
        PENDING = "pending"  # writes: waiting for approval
        APPLIED = "applied"
        REJECTED = "rejected"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subject = models.CharField(
        max_length=120, db_index=True, help_text="npc:<id> or world:<region>"
    )
    kind = models.CharField(max_length=5, choices=Kind.choices)
    changes = models.JSONField(help_text='{"set": {...}, "unset": [...]}')
    reason = models.TextField(blank=True)
    status = models.CharField(max_length=9, choices=Status.choices, db_index=True)
    source = models.CharField(max_length=200, help_text="who queued it")
    change_request_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.kind} {self.subject} ({self.status})"
