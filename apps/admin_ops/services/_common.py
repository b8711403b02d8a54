"""Private helpers the operations service modules share."""

from __future__ import annotations

import json
from typing import Any

from apps.admin_ops.kinds import canonical_json, content_hash


def _summarise(value: Any) -> Any:
    """Keep before/after summaries small: an audit row is a record, not a backup."""
    if value is None:
        return None
    text = canonical_json(value)
    if len(text) <= 4000:
        return json.loads(text)
    return {"truncated": True, "sha256": content_hash(value), "preview": text[:1000]}
