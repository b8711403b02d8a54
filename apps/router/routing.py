from django.urls import path

from apps.router.consumers import JobConsumer

websocket_urlpatterns = [
    path("ws/jobs/", JobConsumer.as_asgi()),
]
