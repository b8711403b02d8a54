"""URL map: pages, the REST API under /api/v1/, the schema, health, and Django's admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from apps.admin_ops import views as ops_views
from apps.npcs import views as npc_views
from apps.router import views as router_views
from apps.security import views as security_views
from bodybroker.health import health

# The product's own error pages (the API's JSON error shape under /api/, /v1/ and /mcp/).
handler400 = "bodybroker.error_pages.bad_request"
handler403 = "bodybroker.error_pages.permission_denied"
handler404 = "bodybroker.error_pages.page_not_found"
handler500 = "bodybroker.error_pages.server_error"


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page that names no icon (the admin, JSON)."""
    response = redirect(static("favicon.svg"))
    response["Cache-Control"] = "public, max-age=86400"
    return response


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("", ops_views.home, name="home"),
    path("accounts/login/", security_views.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("lore/", include("apps.story.page_urls")),
    path("npcs/", npc_views.npcs, name="npcs"),
    path("npcs/ask", npc_views.npcs_ask, name="npcs-ask"),
    path("npcs/", include("apps.npcs.page_urls")),
    path("jobs/", router_views.jobs, name="jobs"),
    path("jobs/<uuid:job_id>/", router_views.job_detail, name="job-detail"),
    path("approvals/", ops_views.approvals, name="approvals"),
    path("", include("apps.admin_ops.page_urls")),
    path("keys/", include("apps.security.page_urls")),
    path("dashboards/", ops_views.dashboards, name="dashboards"),
    path("health/", health, name="health"),
    path("metrics", router_views.metrics_view, name="metrics"),
    path("api/v1/", include("apps.router.urls")),
    path("api/v1/", include("apps.story.urls")),
    path("api/v1/", include("apps.admin_ops.urls")),
    path("api/v1/", include("apps.npcs.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("admin/", admin.site.urls),
]
