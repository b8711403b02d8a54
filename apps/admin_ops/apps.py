from django.apps import AppConfig


class AdminOpsConfig(AppConfig):
    """Operations: worker liveness, dashboards; later approvals, audit log and distillation."""

    name = "apps.admin_ops"
    label = "admin_ops"
    default_auto_field = "django.db.models.BigAutoField"
