"""Request ids and the fallback audit actor for every HTTP request.

Takes ``X-Request-ID`` from the caller when it is a sane token (or makes one), echoes it on the
response, and lets audit events recorded anywhere below find it. The signed-in person becomes
the fallback actor, resolved only if something is audited.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from apps.admin_ops.actors import Actor, actor_context, actor_for

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _request_id(request: HttpRequest) -> str:
    supplied = request.headers.get("X-Request-ID", "")
    return supplied if _SANE_ID.match(supplied) else ""


def _lazy_actor(request: HttpRequest) -> Callable[[], Actor | None]:
    def resolve() -> Actor | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        return actor_for(user=user)

    return resolve


class RequestIdMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self._acall(request)
        with actor_context(actor=_lazy_actor(request), request_id=_request_id(request)) as rid:
            request.request_id = rid  # type: ignore[attr-defined]
            response: HttpResponseBase = self.get_response(request)
        response["X-Request-ID"] = rid
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        with actor_context(actor=_lazy_actor(request), request_id=_request_id(request)) as rid:
            request.request_id = rid  # type: ignore[attr-defined]
            response = await get_response(request)
        response["X-Request-ID"] = rid
        return response
