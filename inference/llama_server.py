"""The CPU engine: llama-cpp-python's OpenAI-compatible server, made to stop generating as soon
as the caller hangs up.

llama-cpp-python's server notices a dropped client only between the chunks of a stream. A
non-streamed completion runs in a worker thread to its last token whether or not anyone still
waits for it, and the engine serves one request at a time, so every request behind it waits
too. ``python -m inference.llama_server`` takes the same command line as ``python -m
llama_cpp.server`` (the CPU profiles in ``profiles.toml`` run it) and adds two things:

* ``StopOnDisconnect``, an ASGI middleware that reads a generating request's body, then watches
  its connection and raises that request's stop flag when the client goes away;
* a stopping criterion on every completion that reads the flag of the request it serves, so the
  generation ends at the next token, streamed or not.

No Django here: the engine process only needs llama-cpp-python.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import os
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The paths that run the model; everything else (models, health, tokenize) passes through.
GENERATING_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})

_stop_flag: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "bodybroker_engine_stop_flag", default=None
)


class StopOnDisconnect:
    """Raise a request's stop flag when its client disconnects before the answer is complete.

    The wrapped app gets the body as one message and then, on any further ``receive()``, waits
    for the disconnect; the flag lives in a context variable, which the server's worker threads
    inherit from the request's task.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope["path"] not in GENERATING_PATHS
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before it finished asking: nothing to generate
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        flag = threading.Event()
        gone = asyncio.Event()
        pending: list[Message] = [
            {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        ]

        async def replay() -> Message:
            if pending:
                return pending.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        answered = False

        async def send_and_note(message: Message) -> None:
            nonlocal answered
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True

        async def watch() -> None:
            # The server also reports a disconnect once the answer is complete.
            while (await receive())["type"] != "http.disconnect":
                pass
            if not answered:
                flag.set()
            gone.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        token = _stop_flag.set(flag)
        try:
            await self.app(scope, replay, send_and_note)
        finally:
            _stop_flag.reset(token)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if flag.is_set():
            print(
                f"[inference] client went away: {scope['path']} stopped early",
                file=sys.stderr,
                flush=True,
            )


def install_stop_criterion() -> None:
    """Give every ``Llama.create_completion`` (which every chat handler ends in) a stopping
    criterion that reads the stop flag of the request being served. Idempotent."""
    import llama_cpp

    original = llama_cpp.Llama.create_completion
    if getattr(original, "_bodybroker_stops", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def create_completion(self: Any, *args: Any, **kwargs: Any) -> Any:
        flag = _stop_flag.get()
        if flag is None:
            return original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        criteria = llama_cpp.StoppingCriteriaList([lambda _ids, _logits: flag.is_set()])
        criteria.extend(bound.arguments.get("stopping_criteria") or ())
        bound.arguments["stopping_criteria"] = criteria
        return original(*bound.args, **bound.kwargs)

    create_completion._bodybroker_stops = True  # type: ignore[attr-defined]
    llama_cpp.Llama.create_completion = create_completion  # type: ignore[method-assign]


def settings_variables() -> frozenset[str]:
    """The environment variables llama-cpp-python's server reads as settings (lower case: it
    matches names case-insensitively)."""
    from llama_cpp.server.settings import Settings

    return frozenset({*(name.lower() for name in Settings.model_fields), "config_file"})


def drop_settings_environment(environ: MutableMapping[str, str]) -> list[str]:
    """Remove from ``environ`` every variable the server would take as a setting; returns the
    names removed. The engine is configured by its flags (``profiles.toml``) only."""
    names = settings_variables()
    dropped = sorted(key for key in environ if key.lower() in names)
    for key in dropped:
        del environ[key]
    return dropped


def main() -> None:
    """``python -m llama_cpp.server`` with ``StopOnDisconnect`` around its app."""
    from llama_cpp.server import __main__ as server_main

    dropped = drop_settings_environment(os.environ)
    if dropped:
        print(
            f"[inference] ignoring {', '.join(dropped)} from the environment: "
            "the engine's flags set it",
            file=sys.stderr,
            flush=True,
        )
    install_stop_criterion()
    # The server's main() builds its app with the create_app it imported; hand it ours.
    launcher: Any = server_main
    create_app = launcher.create_app

    def create_stopping_app(**kwargs: Any) -> StopOnDisconnect:
        return StopOnDisconnect(create_app(**kwargs))

    launcher.create_app = create_stopping_app
    launcher.main()


if __name__ == "__main__":
    main()
