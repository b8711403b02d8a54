"""REST routes of the lore workspace, under /api/v1/."""

from django.urls import path

from apps.story import api

urlpatterns = [
    path("lore/", api.LoreListView.as_view(), name="api-lore"),
    path("lore/search", api.LoreSearchView.as_view(), name="api-lore-search"),
    path("lore/storyteller/arc", api.StoryArcView.as_view(), name="api-story-arc"),
    path(
        "lore/storyteller/<uuid:story_job_id>",
        api.StoryJobView.as_view(),
        name="api-story-job",
    ),
    path(
        "lore/storyteller/<uuid:story_job_id>/cancel",
        api.StoryJobCancelView.as_view(),
        name="api-story-job-cancel",
    ),
    path("lore/<slug:slug>", api.LoreDetailView.as_view(), name="api-lore-entry"),
    path("lore/<slug:slug>/history", api.LoreHistoryView.as_view(), name="api-lore-history"),
    path(
        "lore/<slug:slug>/revisions/<int:number>",
        api.LoreRevisionView.as_view(),
        name="api-lore-revision",
    ),
    path("lore/<slug:slug>/restore", api.LoreRestoreView.as_view(), name="api-lore-restore"),
    path("lore/<slug:slug>/publish", api.LorePublishView.as_view(), name="api-lore-publish"),
    path("lore/<slug:slug>/expand", api.StoryExpandView.as_view(), name="api-story-expand"),
]
