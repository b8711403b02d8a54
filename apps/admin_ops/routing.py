from django.urls import path

from apps.admin_ops.consumers import ApprovalsConsumer

websocket_urlpatterns = [
    path("ws/approvals/", ApprovalsConsumer.as_asgi()),
]
