from django.apps import AppConfig


class RouterConfig(AppConfig):
    """Tier routing, fallback chains, Bronze jobs, and the inference doors (REST, OpenAI)."""

    name = "apps.router"
    label = "router"
    default_auto_field = "django.db.models.BigAutoField"
