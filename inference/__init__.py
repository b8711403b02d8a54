"""Model-serving processes and the one client that talks to them.

Never imports Django: it exchanges plain dataclasses with the apps.

* ``inference.profiles``: launch profiles per tier and engine (``profiles.toml``).
* ``inference.cpu_model``: the GGUF bundled for the CPU engine.
* ``inference.process``: ``EngineProcess``, a model server as a child process.
* ``inference.client``: ``EngineClient`` / ``get_client``, the OpenAI-compatible async client.
* ``python -m inference serve --tier gold`` / ``python -m inference profiles``.
"""

from inference.client import (
    DEFAULT_TIMEOUTS,
    Chunk,
    Completion,
    EngineClient,
    HealthResult,
    Message,
    Timeouts,
    ToolCall,
    aclose_loop_clients,
    get_client,
    translate_response_format,
)
from inference.cpu_model import default_cpu_model, locate_bundled_gguf
from inference.errors import (
    EngineError,
    EngineHTTPError,
    EngineNotInstalled,
    EngineProtocolError,
    EngineStalled,
    EngineStartError,
    EngineTimeout,
    EngineUnavailable,
    ModelNotFound,
    ProfileError,
    UnknownProfile,
)
from inference.process import EngineProcess, free_port
from inference.profiles import Profile, Profiles, get_profile, load_profiles

__all__ = [
    "DEFAULT_TIMEOUTS",
    "Chunk",
    "Completion",
    "EngineClient",
    "EngineError",
    "EngineHTTPError",
    "EngineNotInstalled",
    "EngineProcess",
    "EngineProtocolError",
    "EngineStalled",
    "EngineStartError",
    "EngineTimeout",
    "EngineUnavailable",
    "HealthResult",
    "Message",
    "ModelNotFound",
    "Profile",
    "ProfileError",
    "Profiles",
    "Timeouts",
    "ToolCall",
    "UnknownProfile",
    "aclose_loop_clients",
    "default_cpu_model",
    "free_port",
    "get_client",
    "get_profile",
    "load_profiles",
    "locate_bundled_gguf",
    "translate_response_format",
]
