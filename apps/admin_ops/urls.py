"""REST routes of operations, mounted under ``/api/v1/``."""

from django.urls import path

from apps.admin_ops import api

urlpatterns = [
    path("change-requests/", api.ChangeRequestListView.as_view(), name="api-change-requests"),
    path(
        "change-requests/<uuid:change_request_id>",
        api.ChangeRequestDetailView.as_view(),
        name="api-change-request",
    ),
    path(
        "change-requests/<uuid:change_request_id>/approve",
        api.ApproveView.as_view(),
        name="api-change-request-approve",
    ),
    path(
        "change-requests/<uuid:change_request_id>/reject",
        api.RejectView.as_view(),
        name="api-change-request-reject",
    ),
    path(
        "change-requests/<uuid:change_request_id>/revise",
        api.ReviseView.as_view(),
        name="api-change-request-revise",
    ),
    path("audit/", api.AuditListView.as_view(), name="api-audit"),
    path(
        "admin-reports/<uuid:report_id>/download",
        api.AdminReportDownloadView.as_view(),
        name="api-admin-report-download",
    ),
]
