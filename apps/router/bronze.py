"""Bronze backends: where a Bronze job's model call goes, in order of preference.

- ``engine``: an OpenAI-compatible engine (the local CPU engine by default; vLLM/SGLang in a
  cluster), called through ``inference.client``.
- ``sagemaker``: a SageMaker *asynchronous* endpoint (DeepSeek-V3 in production): the request is
  written to S3, ``invoke_endpoint_async`` queues it, and the answer (or the failure) is read back
  from the S3 locations the call returns. The container behind it speaks OpenAI's chat format.

``BODYBROKER_BRONZE_BACKENDS`` orders them (default: ``engine`` on the Bronze URLs, then
``engine-fallback`` on Bronze's fallback URLs; with ``BODYBROKER_SAGEMAKER_ENDPOINT`` set,
SageMaker first). A job tries each backend ``BODYBROKER_BRONZE_TRIES_PER_BACKEND`` times with
exponential backoff and jitter before moving to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.conf import settings

from apps.router.pools import engine_timeouts
from inference.client import EngineClient
from inference.errors import EngineError, EngineTimeout, EngineUnavailable


@dataclass(frozen=True, slots=True)
class BronzeResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = ""


class BronzeBackend(Protocol):
    label: str

    def complete(
        self,
        *,
        job_id: str,
        attempt: int,
        request: dict[str, Any],
        stop_when: StopCheck | None = None,
    ) -> BronzeResult:
        """Run one attempt; raises ``EngineError`` (``retryable`` or not) when it fails, and
        ``JobCancelled`` once ``stop_when()`` (asked about once a second) says to stop."""
        ...


StopCheck = Callable[[], bool]
CANCEL_CHECK_S = 1.0


class JobCancelled(Exception):
    """The job was cancelled while this attempt ran: its model call was stopped."""


async def _unless_stopped(call: asyncio.Future[Any], stop_when: StopCheck) -> None:
    """Wait for ``call``; if ``stop_when()`` (run on a helper thread: it may read the database)
    says so first, cancel it, which closes the engine's connection so the engine stops
    generating, and raise ``JobCancelled``."""
    while not call.done():
        await asyncio.wait({call}, timeout=CANCEL_CHECK_S)
        if not call.done() and await asyncio.to_thread(stop_when):
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            raise JobCancelled


class EngineBackend:
    def __init__(self, url: str, model: str, engine: str | None) -> None:
        self.url, self.model, self.engine = url, model, engine
        self.label = f"engine:{url}"

    def complete(
        self,
        *,
        job_id: str,
        attempt: int,
        request: dict[str, Any],
        stop_when: StopCheck | None = None,
    ) -> BronzeResult:
        # The attempt runs on an event loop in this very thread (not on async_to_sync's helper
        # thread, which would go on alone): when the worker interrupts it, as a soft time limit
        # does by raising here, leaving the loop cancels the engine call, which closes its
        # connection, and the engine stops generating. A worker that dies outright closes the
        # connection with it. A cancelled job stops the call the same way (``stop_when``).
        return asyncio.run(self._complete(request, stop_when))

    async def _complete(
        self, request: dict[str, Any], stop_when: StopCheck | None = None
    ) -> BronzeResult:
        # Each job runs on a fresh event loop in the worker, so it owns its client.
        seed = request.get("seed")
        async with EngineClient(
            self.url, self.model, engine_timeouts(), engine=self.engine
        ) as client:
            call = asyncio.ensure_future(
                client.chat(
                    request["messages"],
                    max_tokens=request["max_tokens"],
                    temperature=request.get("temperature"),
                    stop=request.get("stop"),
                    response_format=request.get("response_format"),
                    extra=None if seed is None else {"seed": seed},
                )
            )
            if stop_when is not None:
                await _unless_stopped(call, stop_when)
            completion = await call
        return BronzeResult(
            completion.text,
            completion.prompt_tokens or 0,
            completion.completion_tokens or 0,
            completion.finish_reason or "",
        )


class SageMakerBackend:
    """A SageMaker async endpoint, with request and answer on S3."""

    def __init__(self, endpoint: str, s3_uri: str, region: str, poll_timeout_s: float) -> None:
        parts = urlsplit(s3_uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"BODYBROKER_SAGEMAKER_S3_URI {s3_uri!r} is not s3://bucket/prefix")
        self.endpoint, self.region = endpoint, region
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self.poll_timeout_s = poll_timeout_s
        self.label = f"sagemaker:{endpoint}"

    def _clients(self) -> tuple[Any, Any]:
        import boto3

        return (
            boto3.client("s3", region_name=self.region),
            boto3.client("sagemaker-runtime", region_name=self.region),
        )

    def complete(
        self,
        *,
        job_id: str,
        attempt: int,
        request: dict[str, Any],
        stop_when: StopCheck | None = None,
    ) -> BronzeResult:
        from botocore.exceptions import BotoCoreError, ClientError

        s3, runtime = self._clients()
        key = "/".join(filter(None, [self.prefix, "input", job_id, f"{attempt}.json"]))
        payload = {"messages": request["messages"], "max_tokens": request["max_tokens"]}
        if request.get("temperature") is not None:
            payload["temperature"] = request["temperature"]
        try:
            s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(payload).encode(),
                ContentType="application/json",
            )
            queued = runtime.invoke_endpoint_async(
                EndpointName=self.endpoint,
                InputLocation=f"s3://{self.bucket}/{key}",
                ContentType="application/json",
                InferenceId=f"{job_id}-{attempt}",
            )
        except (BotoCoreError, ClientError) as exc:
            raise EngineUnavailable(f"SageMaker {self.endpoint}: {exc}") from exc
        return self._await_answer(
            s3, queued["OutputLocation"], queued.get("FailureLocation"), stop_when
        )

    def _await_answer(
        self, s3: Any, output: str, failure: str | None, stop_when: StopCheck | None = None
    ) -> BronzeResult:
        from botocore.exceptions import ClientError

        deadline = time.monotonic() + self.poll_timeout_s
        delay = 0.2
        while time.monotonic() < deadline:
            for location, failed in ((output, False), (failure, True)):
                if location is None:
                    continue
                parts = urlsplit(location)
                try:
                    body = s3.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                        continue
                    raise EngineUnavailable(f"reading {location}: {exc}") from exc
                raw = body["Body"].read().decode()
                if failed:
                    raise EngineError(f"SageMaker {self.endpoint} failed: {raw[:500]}")
                return _parse_openai(raw, self.endpoint)
            if stop_when is not None and stop_when():
                raise JobCancelled  # the endpoint finishes on its own; nobody reads its answer
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise EngineTimeout(
            f"no answer from SageMaker {self.endpoint} within {self.poll_timeout_s:.0f} s",
            phase="total",
        )


def _parse_openai(raw: str, endpoint: str) -> BronzeResult:
    try:
        body = json.loads(raw)
        choice = body["choices"][0]
        message = choice["message"]
        usage = body.get("usage") or {}
        return BronzeResult(
            str(message.get("content") or ""),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            str(choice.get("finish_reason") or ""),
        )
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        error = EngineError(
            f"SageMaker {endpoint} answered something that is not a chat completion: {raw[:200]!r}"
        )
        error.retryable = False
        raise error from exc


def backends() -> list[BronzeBackend]:
    """The configured Bronze backends, in the order a job tries them."""
    conf = settings.BODYBROKER_TIERS["bronze"]
    found: dict[str, BronzeBackend] = {}
    if conf["urls"]:
        found["engine"] = EngineBackend(
            str(conf["urls"][0]), str(conf["model"]), conf.get("engine")
        )
    if conf.get("fallback_urls"):
        found["engine-fallback"] = EngineBackend(
            str(conf["fallback_urls"][0]),
            str(conf.get("fallback_model", conf["model"])),
            conf.get("engine"),
        )
    if settings.BODYBROKER_SAGEMAKER_ENDPOINT:
        found["sagemaker"] = SageMakerBackend(
            settings.BODYBROKER_SAGEMAKER_ENDPOINT,
            settings.BODYBROKER_SAGEMAKER_S3_URI,
            settings.BODYBROKER_AWS_REGION,
            settings.BODYBROKER_BRONZE_TIMEOUT_S,
        )
    order = settings.BODYBROKER_BRONZE_BACKENDS or (
        ["sagemaker", "engine", "engine-fallback"]
        if "sagemaker" in found
        else ["engine", "engine-fallback"]
    )
    unknown = [name for name in order if name not in found]
    if unknown and settings.BODYBROKER_BRONZE_BACKENDS:
        raise ValueError(f"BODYBROKER_BRONZE_BACKENDS names unconfigured backends: {unknown}")
    return [found[name] for name in order if name in found]
