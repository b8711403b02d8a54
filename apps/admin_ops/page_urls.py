"""Page routes of operations (the approvals queue itself is ``approvals`` in bodybroker.urls)."""

from django.urls import path

from apps.admin_ops import views

urlpatterns = [
    path("approvals/<uuid:change_request_id>/", views.approval_detail, name="approval-detail"),
    path(
        "approvals/<uuid:change_request_id>/decide", views.approval_decide, name="approval-decide"
    ),
    path("audit/", views.audit, name="audit"),
]
