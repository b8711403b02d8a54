"""Prometheus metrics of the router, exposed at ``/metrics`` (admin scope).

Labels are low-cardinality by design: tier, source (model | fallback_model | cache | template |
policy), priority, link, outcome and cancellation reason — never a key, a persona or a prompt.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)
LATENCY_BOUNDS_S = _LATENCY_BUCKETS
"""Upper bounds (seconds) of the answer-latency histogram, here and in ``AnswersDaily``."""
_TOKEN_BUCKETS = (0.001, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.5, 1)

REQUESTS = Counter(
    "bodybroker_requests", "Answered inference requests", ["tier", "source"], registry=REGISTRY
)
ERRORS = Counter(
    "bodybroker_request_errors",
    "Requests that got an error answer",
    ["tier", "kind"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "bodybroker_request_seconds",
    "Total time to answer",
    ["tier", "source"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TTFT = Histogram(
    "bodybroker_time_to_first_token_seconds",
    "Time to the first streamed token",
    ["tier", "source"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TOOL_SECONDS = Histogram(
    "bodybroker_tool_call_seconds",
    "Time to run one tool call the tool relay made for a model (outcome: ok, error, timeout,"
    " refused)",
    ["server", "tool", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PER_TOKEN = Histogram(
    "bodybroker_seconds_per_output_token",
    "Generation time divided by output tokens",
    ["tier", "source"],
    buckets=_TOKEN_BUCKETS,
    registry=REGISTRY,
)
TOKENS = Counter("bodybroker_tokens", "Tokens in and out", ["tier", "direction"], registry=REGISTRY)
FALLBACK_LINKS = Counter(
    "bodybroker_fallback_links",
    "Chain links tried, by outcome",
    ["tier", "link", "outcome"],
    registry=REGISTRY,
)
CACHE = Counter(
    "bodybroker_response_cache", "Response-cache lookups", ["tier", "result"], registry=REGISTRY
)
IN_FLIGHT = Gauge(
    "bodybroker_in_flight",
    "Requests being answered now",
    ["tier", "priority"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "bodybroker_queue_depth", "Bronze jobs waiting, by state", ["state"], registry=REGISTRY
)
COST = Counter(
    "bodybroker_cost_usd", "Cost of answers at the tier price table", ["tier"], registry=REGISTRY
)


def observe_answer(
    tier: str,
    source: str,
    *,
    seconds: float,
    prompt_tokens: int,
    completion_tokens: int,
    ttft_seconds: float | None = None,
    cost_usd: float = 0.0,
) -> None:
    REQUESTS.labels(tier, source).inc()
    LATENCY.labels(tier, source).observe(seconds)
    if ttft_seconds is not None:
        TTFT.labels(tier, source).observe(ttft_seconds)
    if completion_tokens:
        PER_TOKEN.labels(tier, source).observe(seconds / completion_tokens)
    TOKENS.labels(tier, "in").inc(prompt_tokens)
    TOKENS.labels(tier, "out").inc(completion_tokens)
    if cost_usd:
        COST.labels(tier).inc(cost_usd)


CANCEL_REASONS = ("client_disconnect", "dialogue_cancel", "deadline", "worker_lost")


class _Cancellations(Collector):
    """``bodybroker_generations_cancelled_total{tier, reason}``: generations stopped before they
    finished because nobody waits for the answer any more.

    ``client_disconnect`` (an OpenAI-door client or a game socket went away mid-answer),
    ``dialogue_cancel`` (a game client's ``dialogue.cancel``) and ``deadline`` (the request's
    deadline passed mid-answer) are counted by this process as they happen. ``worker_lost`` is
    read from the database at scrape time: a Bronze attempt whose Celery worker died cannot count
    itself, and the attempt the next delivery closes as lost is the record it leaves.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def inc(self, tier: str, reason: str) -> None:
        if reason not in CANCEL_REASONS:
            raise ValueError(f"unknown cancellation reason {reason!r}")
        with self._lock:
            self._counts[tier, reason] = self._counts.get((tier, reason), 0) + 1

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "bodybroker_generations_cancelled",
            "Generations stopped before they finished because nobody waits for the answer",
            labels=["tier", "reason"],
        )

    def describe(self) -> Iterator[Metric]:
        # Registering asks for the names only: no database read at import.
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        with self._lock:
            counts = sorted(self._counts.items())
        for (tier, reason), count in counts:
            if reason != "worker_lost":
                family.add_metric([tier, reason], count)
        lost = _bronze_attempts_lost()
        if lost is not None:
            family.add_metric(["bronze", "worker_lost"], lost)
        yield family


def _bronze_attempts_lost() -> int | None:
    """Bronze attempts closed because their worker died; None where the database cannot be read
    from here (an event loop thread, no database)."""
    from apps.router.selectors import bronze_attempts_lost

    try:
        return bronze_attempts_lost()
    except Exception:  # a scrape reports what it can, it does not fail
        return None


CANCELLED = _Cancellations()
REGISTRY.register(CANCELLED)
