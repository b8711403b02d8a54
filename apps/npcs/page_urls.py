"""NPC definition pages, under /npcs/ (the list and the playground are in bodybroker/urls.py)."""

from django.urls import path

from apps.npcs import views

urlpatterns = [
    path("new", views.npc_new, name="npc-new"),
    path("<slug:slug>/edit", views.npc_edit, name="npc-edit"),
]
