"""Writes for assets: uploaded files, stored and catalogued."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.text import slugify

from apps.story.models import Asset, AssetKind, LoreEntry
from apps.story.services.lore import LoreValidationError

# --- assets -------------------------------------------------------------------------------------

ASSET_TYPES = {
    AssetKind.IMAGE: ("image/png", "image/jpeg", "image/webp", "image/gif"),
    AssetKind.AUDIO: ("audio/mpeg", "audio/ogg", "audio/wav", "audio/x-wav", "audio/flac"),
    AssetKind.TEMPLATE: ("text/plain", "text/markdown", "application/json", "text/html"),
}


@transaction.atomic
def asset_upload(
    *,
    kind: str,
    name: str,
    upload: UploadedFile,
    entry_slugs: list[str] | None = None,
    uploaded_by: Any = None,
) -> Asset:
    """Store an uploaded file in the asset storage and catalog it.

    Checks kind, name, size and content type before writing. The file is written through
    ``STORAGES["assets"]`` (filesystem by default, S3 in production). Locks nothing.
    """
    errors: dict[str, list[str]] = {}
    if kind not in AssetKind.values:
        errors["kind"] = [f"choose one of {', '.join(AssetKind.values)}"]
    name = name.strip() or (upload.name or "")
    if not name or len(name) > 200:
        errors["name"] = ["give a name of 1–200 characters"]
    size = upload.size or 0
    if size == 0:
        errors["file"] = ["the file is empty"]
    elif size > settings.BODYBROKER_ASSET_MAX_BYTES:
        errors["file"] = [f"is {size} bytes; the limit is {settings.BODYBROKER_ASSET_MAX_BYTES}"]
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    if kind in AssetKind.values and content_type not in ASSET_TYPES[AssetKind(kind)]:
        errors["file"] = [f"a {kind} must be one of {', '.join(ASSET_TYPES[AssetKind(kind)])}"]
    slugs = entry_slugs or []
    entries = list(LoreEntry.objects.filter(slug__in=slugs))
    missing = sorted(set(slugs) - {e.slug for e in entries})
    if missing:
        errors["entries"] = [f"no lore entry {', '.join(missing)}"]
    if errors:
        raise LoreValidationError(errors)
    digest = hashlib.sha256()
    for part in upload.chunks():
        digest.update(part)
    upload.seek(0)
    asset = Asset(
        kind=kind,
        name=name,
        content_type=content_type,
        size=size,
        sha256=digest.hexdigest(),
        uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
    )
    extension = os.path.splitext(upload.name or "")[1].lower()[:10]
    asset.file.save(f"{slugify(name)[:80] or 'asset'}{extension}", upload, save=False)
    asset.save()
    asset.entries.set(entries)
    return asset
