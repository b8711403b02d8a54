from django.apps import AppConfig


class NpcsConfig(AppConfig):
    """NPC personas, the intent cache, the game-client websocket protocol, and game state."""

    name = "apps.npcs"
    label = "npcs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.npcs import change_kinds

        change_kinds.register()  # game_state.write and npc.update change requests apply here

        from apps.npcs import personas
        from apps.router.personas import register_persona_provider

        register_persona_provider(personas.provide)  # persona="<npc slug>" plays that NPC

        from apps.npcs.dialogue import lore_for_dialogue
        from apps.router.caches import register_lore_provider

        register_lore_provider(lore_for_dialogue)  # dialogue knows the lore its NPC may know
