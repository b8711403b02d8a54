"""Pure-Python NPC runtime: micro-policies, the game websocket protocol and the game client.

No Django imports: a game, a load generator or the server can use it alike.
"""

from npc_runtime.policies import (
    POLICIES,
    Action,
    Intent,
    NpcState,
    choose_intent,
    run_policy,
)
from npc_runtime.protocol import PROTOCOL_VERSION, ProtocolError, encode, parse_client_message

__all__ = [
    "POLICIES",
    "PROTOCOL_VERSION",
    "Action",
    "Intent",
    "NpcState",
    "ProtocolError",
    "choose_intent",
    "encode",
    "parse_client_message",
    "run_policy",
]
