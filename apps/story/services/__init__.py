"""Writes for lore; the modules of this package hold them by family."""

from apps.story.services.lore import *  # noqa: F403
