"""Writes for lore, one module per family: entries and their revisions and links, publishing,
the retrieval index, quests, storyteller jobs and assets. Other apps import them from here.
"""

from apps.story.services.assets import (
    ASSET_TYPES,
    asset_upload,
)
from apps.story.services.indexing import (
    lore_entry_index,
    lore_index_rebuild,
    retrieval_preload,
)
from apps.story.services.lore import (
    MAX_SCOPE,
    MAX_TAGS,
    RESERVED_SLUGS,
    LoreConflictError,
    LorePermissionError,
    LoreValidationError,
    SaveResult,
    check_lore_fields,
    check_slug,
    lore_entry_create,
    lore_entry_restore,
    lore_entry_update,
)
from apps.story.services.publishing import (
    PublishOutcome,
    lore_entry_publish,
    lore_publish_allowed,
    lore_publish_direct,
    lore_publish_request,
)
from apps.story.services.quests import (
    quest_create,
    quest_edge_add,
    quest_edge_delete,
    quest_node_delete,
    quest_node_save,
)
from apps.story.services.storyteller import (
    storyteller_arc_request,
    storyteller_expand_request,
    storyteller_job_cancel,
    storyteller_job_collect,
    storyteller_review_request,
)

__all__ = [
    "ASSET_TYPES",
    "LoreConflictError",
    "LorePermissionError",
    "LoreValidationError",
    "MAX_SCOPE",
    "MAX_TAGS",
    "PublishOutcome",
    "RESERVED_SLUGS",
    "SaveResult",
    "asset_upload",
    "check_lore_fields",
    "check_slug",
    "lore_entry_create",
    "lore_entry_index",
    "lore_entry_publish",
    "lore_entry_restore",
    "lore_entry_update",
    "lore_index_rebuild",
    "lore_publish_allowed",
    "lore_publish_direct",
    "lore_publish_request",
    "quest_create",
    "quest_edge_add",
    "quest_edge_delete",
    "quest_node_delete",
    "quest_node_save",
    "retrieval_preload",
    "storyteller_arc_request",
    "storyteller_expand_request",
    "storyteller_job_cancel",
    "storyteller_job_collect",
    "storyteller_review_request",
]
