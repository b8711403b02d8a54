"""Page routes of identity and access, mounted under ``/keys/``."""

from django.urls import path

from apps.security import views

urlpatterns = [
    path("", views.api_keys, name="api-keys"),
    path("<int:key_id>/", views.api_key_detail, name="api-key-detail"),
    path("<int:key_id>/revoke", views.api_key_revoke_view, name="api-key-revoke"),
]
