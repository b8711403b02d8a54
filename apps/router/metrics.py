"""Prometheus metrics of the router, exposed at ``/metrics`` (admin scope).

Labels are low-cardinality by design: tier, source (model | fallback_model | cache | template |
policy), priority, link and outcome — never a key, a persona or a prompt.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
