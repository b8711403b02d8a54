from django.apps import AppConfig


class StoryConfig(AppConfig):
    """Lore, revisions, retrieval, quest graphs and storyteller jobs."""

    name = "apps.story"
    label = "story"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.story import approvals

        approvals.register()
