"""The product's URL map plus one view that fails, to see the 500 page the product answers with."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from bodybroker.urls import handler500
from bodybroker.urls import urlpatterns as product_urlpatterns

__all__ = ["handler500", "urlpatterns"]  # Django reads the handler from the URL map's module


def fails(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a view that fails")


urlpatterns = [path("fails/", fails), *product_urlpatterns]
