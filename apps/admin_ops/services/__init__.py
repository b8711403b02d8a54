"""Writes for operations; the modules of this package hold them by family."""

from apps.admin_ops.services.change_requests import *  # noqa: F403
