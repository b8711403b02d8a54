from django.apps import AppConfig


class SecurityConfig(AppConfig):
    """Identity and access (users, roles, API keys), scans and audits."""

    name = "apps.security"
    label = "security"
    default_auto_field = "django.db.models.BigAutoField"
