"""``/ws/approvals/``: live updates of the approvals queue for admins.

Each frame is ``{"type": "change_request", "event": "created|approved|rejected|…", "id",
"kind", "status"}``; pages re-fetch what changed. Clients send nothing but ``ping``; anything
else gets an ``error`` frame and the socket stays open.
"""

from __future__ import annotations

import json
from typing import Any

from apps.admin_ops.services import APPROVALS_GROUP
from apps.security.scopes import ADMIN
from apps.security.websocket import KeyBoundConsumer


class ApprovalsConsumer(KeyBoundConsumer):
    async def connect(self) -> None:
        if ADMIN not in self.scope.get("scopes", frozenset()):
            await self.close()  # before accept: the handshake is refused with 403
            return
        await self.channel_layer.group_add(APPROVALS_GROUP, self.channel_name)
        await self.follow_key()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(APPROVALS_GROUP, self.channel_name)
        await self.unfollow_key()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data or "")
        except json.JSONDecodeError:
            message = None
        if isinstance(message, dict) and message.get("type") == "ping":
            await self.send_json({"type": "pong", "ref": message.get("ref")})
            return
        await self.send_json(
            {"type": "error", "code": "bad_frame", "message": "this socket only takes 'ping'"}
        )

    async def approvals_update(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "change_request",
                "event": event["event"],
                "id": event["id"],
                "kind": event["kind"],
                "status": event["status"],
            }
        )

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(payload, separators=(",", ":")))
