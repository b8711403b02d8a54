"""ASGI entry point: HTTP to Django, websockets to the Channels routes (authenticated)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bodybroker.settings.base")
# Django must be set up before anything imports models (the websocket routes do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.npcs.routing import websocket_urlpatterns  # noqa: E402
from apps.security.websocket import ApiKeyOrSessionAuthStack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": ApiKeyOrSessionAuthStack(URLRouter(websocket_urlpatterns)),
    }
)
