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


class MicroPolicy(models.TextChoices):
    """The deterministic per-frame policies of ``npc_runtime`` (same names there)."""

    GUARD = "guard"
    CIVILIAN = "civilian"
    STALKER = "stalker"


class Npc(models.Model):
    """An NPC definition: its persona, the closed vocabulary of intents the Gold tier may pick
    for it, the lore it may know, its in-character refusals, its tier settings, and the
    micro-policy that runs it every frame.

    ``slug`` is the NPC id the game and the game-state tables (``NpcState.npc_id``) use.
    ``allowed_intents`` is a list of ``{"name": <slug>, "args": [<identifier>, ...]}``;
    ``knowledge_scope`` lists lore persona (character entry) slugs whose restricted lore this NPC
    may know — the same vocabulary as ``LoreEntry.knowledge_scope``; common lore is always known.
    Validation lives in ``services.check_npc_fields``; rows are written through the services.
    """

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=120)
    role = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    motivation = models.TextField(blank=True)
    speaking_style = models.CharField(max_length=300, blank=True)
    archetype = models.SlugField(max_length=40, default="civilian")
    allowed_intents = models.JSONField(default=list)
    default_intent = models.SlugField(max_length=40, default="idle")
    knowledge_scope = models.JSONField(default=list, blank=True)
    safety_lines = models.JSONField(default=list)
    intent_hz = models.FloatField(default=1.0)
    intent_max_tokens = models.PositiveSmallIntegerField(default=8)
    dialogue_max_tokens = models.PositiveSmallIntegerField(default=96)
    micro_policy = models.CharField(
        max_length=20, choices=MicroPolicy.choices, default=MicroPolicy.CIVILIAN
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name", "slug")

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class Conversation(models.Model):
    """A player's dialogue with one NPC over the game websocket; its turns feed distillation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    npc_slug = models.SlugField(max_length=100, db_index=True)
    api_key = models.ForeignKey(
        "security.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-started_at",)

    def __str__(self) -> str:
        return f"conversation {self.id} with {self.npc_slug}"


class DialogueTurn(models.Model):
    """One line of a conversation: the player's, or the NPC's with the link that produced it."""

    class Speaker(models.TextChoices):
        PLAYER = "player"
        NPC = "npc"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    speaker = models.CharField(max_length=10, choices=Speaker.choices)
    text = models.TextField()
    source = models.CharField(max_length=20, blank=True)
    cancelled = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("conversation", "created_at", "id")

    def __str__(self) -> str:
        return f"{self.speaker}: {self.text[:40]}"
