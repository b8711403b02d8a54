from django.apps import AppConfig


class NpcsConfig(AppConfig):
    """NPC personas, the intent cache, and the game-client websocket protocol."""

    name = "apps.npcs"
    label = "npcs"
    default_auto_field = "django.db.models.BigAutoField"
