"""Body Broker: the Django project (settings, ASGI entry, Celery app, URL map)."""

from bodybroker.celery import app as celery_app

__all__ = ("celery_app",)
