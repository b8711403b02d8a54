"""Lore, its immutable revisions and links, the retrieval index's passages, quest graphs,
storyteller jobs and the asset catalog."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db import models
from django.utils.deconstruct import deconstructible

SPOILER_LEVELS = (
    (0, "none"),
    (1, "minor"),
    (2, "major"),
    (3, "ending"),
)


class LoreKind(models.TextChoices):
    CHARACTER = "character"
    LOCATION = "location"
    FACTION = "faction"
    ITEM = "item"
    EVENT = "event"
    RULE = "rule"
    FREEFORM = "freeform", "free-form"


class LoreStatus(models.TextChoices):
    DRAFT = "draft"
    PUBLISHED = "published"


CONTENT_FIELDS = ("kind", "title", "summary", "body", "tags", "knowledge_scope", "spoiler_level")


class LoreContent(models.Model):
    """The fields a writer edits; shared by an entry's head and each of its revisions."""

    kind = models.CharField(max_length=12, choices=LoreKind.choices, default=LoreKind.FREEFORM)
    title = models.CharField(max_length=200)
    summary = models.CharField(max_length=500, blank=True)
    body = models.TextField(blank=True, help_text="markdown; [[slug]] or [[slug|label]] links")
    tags = models.JSONField(default=list, blank=True)
    knowledge_scope = models.JSONField(
        default=list,
        blank=True,
        help_text="slugs of the characters (personas) who may know this; empty: common knowledge",
    )
    spoiler_level = models.PositiveSmallIntegerField(choices=SPOILER_LEVELS, default=0)

    class Meta:
        abstract = True


class LoreEntry(LoreContent):
    """One piece of lore. Its content fields mirror its newest revision (for listing and search);
    the revisions are the record. ``published_number`` names the revision players' NPCs know."""

    slug = models.SlugField(max_length=80, unique=True)
    status = models.CharField(
        max_length=10, choices=LoreStatus.choices, default=LoreStatus.DRAFT, db_index=True
    )
    head_number = models.PositiveIntegerField(default=0)
    published_number = models.PositiveIntegerField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ("title",)
        verbose_name_plural = "lore entries"

    def __str__(self) -> str:
        return f"{self.title} ({self.slug})"

    @property
    def has_unpublished_changes(self) -> bool:
        return self.published_number is not None and self.head_number != self.published_number

    @property
    def status_pill(self) -> str:
        """What the status pill says: whether players' NPCs know this entry, at which revision,
        and whether newer saves wait to be published."""
        if self.published_number is None:
            return "draft"
        if self.has_unpublished_changes:
            return f"published (rev {self.published_number}), newer edits unpublished"
        return f"published (rev {self.published_number})"

    @property
    def status_pill_class(self) -> str:
        if self.published_number is None:
            return "draft"
        return "edited" if self.has_unpublished_changes else "published"


class LoreRevision(LoreContent):
    """One save of an entry: an immutable snapshot with its author, time and message.

    Services only ever insert revisions; a restore is a new revision copying an old one."""

    entry = models.ForeignKey(LoreEntry, on_delete=models.PROTECT, related_name="revisions")
    number = models.PositiveIntegerField()
    message = models.CharField(max_length=300, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_key = models.ForeignKey(
        "security.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    restored_from = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("entry", "-number")
        constraints = [
            models.UniqueConstraint(fields=("entry", "number"), name="lore_revision_number_unique")
        ]

    def __str__(self) -> str:
        return f"{self.entry_id} r{self.number}"

    @property
    def author_name(self) -> str:
        if self.author is not None:
            return self.author.get_username()
        if self.author_key is not None:
            return f"key:{self.author_key.name}"
        return "system"


class LoreLink(models.Model):
    """A ``[[link]]`` in an entry's newest revision; ``target`` is empty while it is broken."""

    source = models.ForeignKey(LoreEntry, on_delete=models.CASCADE, related_name="outgoing_links")
    target_slug = models.SlugField(max_length=80)
    target = models.ForeignKey(
        LoreEntry,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="incoming_links",
    )
    label = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("target_slug",)
        constraints = [
            models.UniqueConstraint(fields=("source", "target_slug"), name="lore_link_unique")
        ]

    def __str__(self) -> str:
        return f"{self.source_id} → {self.target_slug}"


class LoreChunk(models.Model):
    """One passage of a published revision with its embedding: the embedded index's storage."""

    entry = models.ForeignKey(LoreEntry, on_delete=models.CASCADE, related_name="chunks")
    revision_number = models.PositiveIntegerField()
    title = models.CharField(max_length=200, help_text="the published revision's title")
    ordinal = models.PositiveIntegerField()
    heading = models.CharField(max_length=300, blank=True)
    text = models.TextField()
    knowledge_scope = models.JSONField(default=list)
    spoiler_level = models.PositiveSmallIntegerField(default=0)
    vector = models.BinaryField(help_text="float32 little-endian, L2-normalised")

    class Meta:
        ordering = ("entry", "ordinal")
        constraints = [
            models.UniqueConstraint(fields=("entry", "ordinal"), name="lore_chunk_ordinal_unique")
        ]

    def __str__(self) -> str:
        return f"{self.entry_id}#{self.ordinal}"


class LoreIndexState(models.Model):
    """A counter bumped on every change to the embedded index, so each process knows when the
    copy it holds in memory is stale."""

    name = models.CharField(max_length=40, unique=True)
    generation = models.BigIntegerField(default=0)
    # Set anew on every change: unlike the counter it never repeats, even if the row is
    # deleted and created again (a flushed test database, a restored backup).
    token = models.UUIDField(default=uuid.uuid4)

    def __str__(self) -> str:
        return f"{self.name}@{self.generation}"


class Quest(models.Model):
    """A quest or plot graph: beats (nodes) joined by conditions (edges)."""

    slug = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("title",)

    def __str__(self) -> str:
        return self.title


class QuestNode(models.Model):
    """One beat of a quest. ``lore_refs`` names the lore entries the beat relies on."""

    quest = models.ForeignKey(Quest, on_delete=models.CASCADE, related_name="nodes")
    key = models.SlugField(max_length=60)
    title = models.CharField(max_length=200)
    text = models.TextField(blank=True)
    is_start = models.BooleanField(default=False)
    is_ending = models.BooleanField(default=False)
    lore_refs = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("quest", "id")
        constraints = [
            models.UniqueConstraint(fields=("quest", "key"), name="quest_node_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.quest_id}:{self.key}"


class QuestEdge(models.Model):
    """A way from one beat to another, taken when its condition holds (empty: always)."""

    quest = models.ForeignKey(Quest, on_delete=models.CASCADE, related_name="edges")
    source = models.ForeignKey(QuestNode, on_delete=models.CASCADE, related_name="outgoing")
    target = models.ForeignKey(QuestNode, on_delete=models.CASCADE, related_name="incoming")
    condition = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ("quest", "id")
        constraints = [
            models.UniqueConstraint(
                fields=("source", "target", "condition"), name="quest_edge_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source_id} → {self.target_id}"


class StoryJobKind(models.TextChoices):
    ARC = "story.arc", "story arc"
    EXPAND = "story.expand", "expand entry"
    REVIEW = "story.review", "consistency review"


class StoryJob(models.Model):
    """A storyteller request run as a Bronze job. When the job finishes its text becomes a draft
    entry (arcs, expansions; never published) or a review report (consistency reviews)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20, choices=StoryJobKind.choices)
    params = models.JSONField(default=dict)
    job = models.ForeignKey(
        "router.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    entry = models.ForeignKey(
        LoreEntry, null=True, blank=True, on_delete=models.CASCADE, related_name="story_jobs"
    )
    revision_number = models.PositiveIntegerField(null=True, blank=True)
    draft = models.ForeignKey(
        LoreEntry, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    report_text = models.TextField(blank=True)
    cut_off = models.BooleanField(
        default=False, help_text="the model's answer stopped at the length limit, mid-way"
    )
    error = models.TextField(blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    collected_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_key = models.ForeignKey(
        "security.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-created_at",)

    # Set (not stored) when a request returned this job because the same one was running.
    reused = False

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"

    @property
    def state(self) -> str:
        """queued | running | finishing | done | failed | cancelled, as a writer watching it
        would say."""
        if self.cancelled_at is not None:
            return "cancelled"
        if self.collected_at is not None:
            return "failed" if self.error else "done"
        if self.job is None:
            return "failed"
        if self.job.status in ("succeeded", "failed"):
            return "finishing"
        return str(self.job.status)


class AssetKind(models.TextChoices):
    IMAGE = "image"
    AUDIO = "audio"
    TEMPLATE = "template"


@deconstructible
class AssetStorage(Storage):
    """``STORAGES["assets"]`` (filesystem, or S3 in production), looked up on every call so a
    settings change — tests, a deployment's environment — takes effect without a restart."""

    @staticmethod
    def _target() -> Storage:
        return storages["assets"]

    def _open(self, name: str, mode: str = "rb") -> File[Any]:
        opened: File[Any] = self._target().open(name, mode)
        return opened

    def _save(self, name: str, content: File[Any]) -> str:
        return self._target().save(name, content)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return self._target().get_available_name(name, max_length=max_length)

    def delete(self, name: str) -> None:
        self._target().delete(name)

    def exists(self, name: str) -> bool:
        return self._target().exists(name)

    def size(self, name: str) -> int:
        return self._target().size(name)

    def url(self, name: str | None) -> str:
        return self._target().url(name)


def asset_storage() -> Storage:
    """The storage assets live in (see :class:`AssetStorage`)."""
    return AssetStorage()


class Asset(models.Model):
    """An image, sound or template in the catalog, stored through Django's storages."""

    kind = models.CharField(max_length=10, choices=AssetKind.choices)
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to="assets/%Y/%m/", storage=asset_storage, max_length=300)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    entries = models.ManyToManyField(LoreEntry, blank=True, related_name="assets")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.name
