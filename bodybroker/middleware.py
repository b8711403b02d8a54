"""Every error a REST door answers (``/api/``) is counted in the router's error metric, as the
OpenAI-compatible door counts its own: ``bodybroker_request_errors{tier="none",
kind="http_<status>"}``. Counted here, on the way out, so that a refusal is counted however it
was made (an exception DRF shaped, a view's own error response, a parse error).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from apps.router import metrics

API_PREFIX = "/api/"


def _count(request: HttpRequest, response: HttpResponseBase) -> None:
    if response.status_code >= 400 and request.path.startswith(API_PREFIX):
        metrics.ERRORS.labels("none", f"http_{response.status_code}").inc()


class ApiErrorMetricsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        response: HttpResponseBase = self.get_response(request)
        _count(request, response)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        _count(request, response)
        return response
