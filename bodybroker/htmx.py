"""The console's htmx conventions: a view answers the whole page, or its partial for htmx.

``htmx_partial(request)`` is every page's one check (netbox's ``utilities/htmx.py`` is the idea):

- ``htmx_partial(request)``: an htmx request (a form that swaps itself, a button that swaps its
  row). A boosted link is a navigation and gets the whole page.
- ``htmx_partial(request, target="results")``: an htmx request that swaps the element with that
  id, for a page whose other htmx requests want something else.
- ``htmx_partial(request, name="health")``: a section the page reloads on its own (on a timer, or
  on a pushed event) asks for ``?partial=<name>``: a URL of its own, so neither the browser's
  cache nor its history ever serves the fragment as the page.

``htmx_redirect(request, url)`` sends htmx to ``url`` (204 with ``HX-Redirect``; a 302 would be
followed inside the swap) and anything else with a plain redirect.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect


def htmx_partial(request: HttpRequest, *, target: str = "", name: str = "") -> bool:
    """Whether to answer with a partial rather than the whole page (see the module's doc)."""
    if name:
        return request.GET.get("partial") == name
    headers = request.headers
    if headers.get("HX-Request") != "true" or headers.get("HX-Boosted") == "true":
        return False
    return not target or headers.get("HX-Target") == target


def htmx_redirect(request: HttpRequest, url: str) -> HttpResponse:
    """A redirect that htmx follows with the whole page (a boosted request too)."""
    if request.headers.get("HX-Request") == "true":
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)
