"""REST routes of NPC definitions, under /api/v1/."""

from django.urls import path

from apps.npcs import api

urlpatterns = [
    path("npcs/", api.NpcListView.as_view(), name="api-npcs"),
    path("npcs/<slug:slug>", api.NpcDetailView.as_view(), name="api-npc"),
]
