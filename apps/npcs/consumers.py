"""The game-client websocket, ``/ws/game/``.

Frames are JSON objects with a ``type``. A client needs the ``game`` scope (API key) or a
signed-in session; anything else is refused at the handshake. Bad frames get an ``error`` frame
and the connection stays open.
"""

from __future__ import annotations

import json
import time
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from apps.security.scopes import GAME

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024


class GameConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        if GAME not in self.scope.get("scopes", frozenset()):
            # Closing before accept makes the server answer the handshake with HTTP 403.
            await self.close()
            return
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_error("bad_frame", "frames must be JSON text, not binary")
            return
        if len(text_data.encode()) > MAX_FRAME_BYTES:
            await self.send_error("too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes")
            return
        try:
            message = json.loads(text_data)
        except json.JSONDecodeError as exc:
            await self.send_error("invalid_json", f"frame is not valid JSON: {exc.msg}")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.send_error("bad_frame", "a frame is a JSON object with a string 'type'")
            return
        ref = message.get("ref")
        if message["type"] == "ping":
            await self.send_json(
                {
                    "type": "pong",
                    "ref": ref,
                    "server_time": time.time(),
                    "protocol": PROTOCOL_VERSION,
                }
            )
            return
        await self.send_error("unknown_type", f"unknown message type {message['type']!r}", ref)

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(payload, separators=(",", ":")))

    async def send_error(self, code: str, message: str, ref: Any = None) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, "ref": ref})
