"""The pages' one htmx check: which requests get a partial, and how htmx is redirected."""

from __future__ import annotations

from django.test import RequestFactory

from bodybroker.htmx import htmx_partial, htmx_redirect

rf = RequestFactory()


def test_an_htmx_request_gets_the_partial_and_a_plain_or_boosted_one_the_page() -> None:
    assert htmx_partial(rf.get("/lore/", HTTP_HX_REQUEST="true"))
    assert not htmx_partial(rf.get("/lore/"))
    assert not htmx_partial(rf.get("/lore/", HTTP_HX_REQUEST="true", HTTP_HX_BOOSTED="true"))


def test_a_target_narrows_the_partial_to_requests_that_swap_that_element() -> None:
    results = rf.get("/lore/?q=salt", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="results")
    elsewhere = rf.get("/lore/?q=salt", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="sidebar")
    assert htmx_partial(results, target="results")
    assert not htmx_partial(elsewhere, target="results")
    assert not htmx_partial(rf.get("/lore/?q=salt", HTTP_HX_TARGET="results"), target="results")


def test_a_named_section_is_asked_for_by_its_own_url() -> None:
    assert htmx_partial(rf.get("/dashboards/?partial=health"), name="health")
    assert not htmx_partial(rf.get("/dashboards/?partial=queue"), name="health")
    assert not htmx_partial(rf.get("/dashboards/", HTTP_HX_REQUEST="true"), name="health")


def test_htmx_is_redirected_with_hx_redirect_and_a_browser_with_a_302() -> None:
    swapped = htmx_redirect(rf.post("/npcs/new", HTTP_HX_REQUEST="true"), "/npcs/")
    assert (swapped.status_code, swapped["HX-Redirect"]) == (204, "/npcs/")
    plain = htmx_redirect(rf.post("/npcs/new"), "/npcs/")
    assert (plain.status_code, plain["Location"]) == (302, "/npcs/")
