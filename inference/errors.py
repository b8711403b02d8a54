"""Exceptions of the inference package.

Two families that callers handle differently:

* ``ProfileError`` and its subclasses: the operator asked for something that cannot be launched
  (unknown tier or engine, GPU engine not installed, model file missing). Raised at start-up,
  never on a request path.
* ``EngineError`` and its subclasses: one request to a running model server failed. The gateway
  catches these to fall back to another tier, a cached intent, or a retry (``retryable``).
"""

from __future__ import annotations


class ProfileError(Exception):
    """A launch profile cannot be found, read or used."""


class UnknownProfile(ProfileError, LookupError):
    """No profile for the requested tier or engine."""


class EngineNotInstalled(ProfileError):
    """The engine's executable or Python module is not on this machine."""


class ModelNotFound(ProfileError, FileNotFoundError):
    """The model file a profile points to is missing."""


class EngineStartError(RuntimeError):
    """A model server process exited, or did not become healthy, during start-up.

    ``output`` holds the last lines the process printed, which is where llama.cpp, vLLM and
    TensorRT-LLM explain why they failed.
    """

    def __init__(self, message: str, *, output: str = "", returncode: int | None = None) -> None:
        full = f"{message}\n--- last engine output ---\n{output}" if output else message
        super().__init__(full)
        self.output = output
        self.returncode = returncode


class EngineError(Exception):
    """A request to a model server failed.

    ``text`` is whatever the engine had generated before the failure ("" when nothing), so a
    real-time caller can still use a partial answer. ``retryable`` says whether sending the same
    request again (to the same or another replica) can reasonably succeed.
    """

    retryable: bool = True

    def __init__(self, message: str, *, text: str = "") -> None:
        super().__init__(message)
        self.text = text


class EngineUnavailable(EngineError):
    """The engine could not be reached, or dropped the connection (connect refused, reset...)."""


class EngineTimeout(EngineError):
    """No first token within ``Timeouts.first_token``, or the request ran past ``Timeouts.total``.

    ``phase`` is ``"first_token"`` or ``"total"``.
    """

    def __init__(self, message: str, *, phase: str, text: str = "") -> None:
        super().__init__(message, text=text)
        self.phase = phase


class EngineStalled(EngineError):
    """A stream produced tokens, then none for longer than ``Timeouts.stall``.

    ``text`` carries the text streamed before the stall.
    """


class EngineHTTPError(EngineError):
    """The engine answered with an error status (or an error event inside a stream)."""

    def __init__(self, status: int, body: str, *, text: str = "") -> None:
        super().__init__(f"engine answered HTTP {status}: {body[:500]}", text=text)
        self.status = status
        self.body = body
        # 5xx, 408 and 429 may succeed on a retry; other 4xx will fail the same way again.
        self.retryable = status >= 500 or status in (408, 429)


class EngineProtocolError(EngineError):
    """The engine answered 200 with something that is not an OpenAI-shaped response."""

    retryable = False
