"""The product's own error answers: a page in the console's layout for people, the API's JSON
error shape for programs (``/api/``, ``/v1/``, ``/mcp/``), whatever the path.

Django uses these handlers when ``DEBUG`` is off, as under ``make run`` and in production; with
``DEBUG`` on it shows its technical pages instead (a developer's choice: ``DEBUG=1 make run``).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults

from apps.security.errors import error_body

API_PREFIXES = ("/api/", "/v1/", "/mcp/")


def _api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _api(request):
        return JsonResponse(error_body("bad request", type_="invalid_request"), status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _api(request):
        return JsonResponse(
            error_body("you may not do this", type_="permission_denied"), status=403
        )
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _api(request):
        return JsonResponse(
            error_body(f"nothing at {request.path!r}", type_="not_found"), status=404
        )
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """Rendered without the request's context processors: whatever failed (the database, the
    session) must not fail the error page too."""
    if _api(request):
        return JsonResponse(
            error_body("internal error; the request id names it in the logs", type_="server_error"),
            status=500,
        )
    return HttpResponse(loader.get_template("500.html").render(), status=500)
