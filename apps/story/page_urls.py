"""Writers' pages, under /lore/."""

from django.urls import path

from apps.story import views

urlpatterns = [
    path("", views.lore, name="lore"),
    path("new", views.lore_new, name="lore-new"),
    path("preview", views.lore_preview, name="lore-preview"),
    path("ask", views.lore_ask, name="lore-ask"),
    path("quests/", views.quests, name="quests"),
    path("quests/<slug:slug>/", views.quest, name="quest"),
    path("storyteller/", views.storyteller, name="storyteller"),
    path("storyteller/<uuid:story_job_id>/", views.story_job, name="story-job"),
    path("storyteller/<uuid:story_job_id>/cancel", views.story_job_cancel, name="story-job-cancel"),
    path("assets/", views.assets, name="lore-assets"),
    path("assets/<int:asset_id>/file", views.asset_file, name="lore-asset-file"),
    path("<slug:slug>/", views.lore_entry, name="lore-entry"),
    path("<slug:slug>/edit", views.lore_edit, name="lore-edit"),
    path("<slug:slug>/history", views.lore_history, name="lore-history"),
    path("<slug:slug>/diff", views.lore_diff, name="lore-diff"),
    path("<slug:slug>/restore/<int:number>", views.lore_restore, name="lore-restore"),
    path("<slug:slug>/publish", views.lore_publish, name="lore-publish"),
    path("<slug:slug>/expand", views.lore_expand, name="lore-expand"),
]
