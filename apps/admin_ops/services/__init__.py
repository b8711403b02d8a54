"""Writes for operations, one module per family: worker heartbeats, the audit log, change
requests and admin reports. Other apps import them from here.
"""

from apps.admin_ops.services.audit import (
    audit_api_key,
    audit_job_submit,
    audit_record,
)
from apps.admin_ops.services.change_requests import (
    APPROVALS_GROUP,
    MAX_COMMENT_CHARS,
    MAX_PAYLOAD_BYTES,
    MAX_REASON_CHARS,
    NO_CHANGE_DIFF,
    Blocker,
    ChangeRequestError,
    approval_blockers,
    change_request_approve,
    change_request_create,
    change_request_execute,
    change_request_reject,
    change_request_revise,
    change_requests_expire,
    change_requests_fail_stuck,
    changes_nothing,
    check_may_reject,
    check_may_request,
    check_may_revise,
    current_approvals,
    is_author,
    target_is_stale,
)
from apps.admin_ops.services.heartbeats import (
    worker_heartbeat_record,
)
from apps.admin_ops.services.reports import (
    admin_report_request,
)

__all__ = [
    "APPROVALS_GROUP",
    "Blocker",
    "ChangeRequestError",
    "MAX_COMMENT_CHARS",
    "MAX_PAYLOAD_BYTES",
    "MAX_REASON_CHARS",
    "NO_CHANGE_DIFF",
    "admin_report_request",
    "approval_blockers",
    "audit_api_key",
    "audit_job_submit",
    "audit_record",
    "change_request_approve",
    "change_request_create",
    "change_request_execute",
    "change_request_reject",
    "change_request_revise",
    "change_requests_expire",
    "change_requests_fail_stuck",
    "changes_nothing",
    "check_may_reject",
    "check_may_request",
    "check_may_revise",
    "current_approvals",
    "is_author",
    "target_is_stale",
    "worker_heartbeat_record",
]
