from typing import Any

from django.apps import AppConfig


class AdminOpsConfig(AppConfig):
    """Operations: worker liveness, dashboards, change requests and approvals, the audit log,
    admin reports and the admin MCP server."""

    name = "apps.admin_ops"
    label = "admin_ops"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from apps.admin_ops import aws

        aws.register()  # admin.aws_action change requests run through boto3
        user_logged_in.connect(_audit_login, dispatch_uid="admin_ops.audit_login")
        user_login_failed.connect(_audit_login_failed, dispatch_uid="admin_ops.audit_login_failed")


def _audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Transport only: the signal carries the event to the audit service."""
    from apps.admin_ops.actors import actor_for
    from apps.admin_ops.services import audit_record

    audit_record(
        action="auth.login", target=f"user:{user.get_username()}", actor=actor_for(user=user)
    )


def _audit_login_failed(sender: Any, credentials: Any, request: Any = None, **kwargs: Any) -> None:
    from apps.admin_ops.actors import Actor
    from apps.admin_ops.services import audit_record

    username = str(credentials.get("username", ""))[:150]
    audit_record(
        action="auth.login_failed",
        target=f"user:{username}",
        actor=Actor(system="login form"),
        summary="wrong username or password",
    )
