"""What an answer costs: the tier price table, and usage summed per key, tier and day.

Price of a token on a tier = GPU-hour price ÷ (measured tokens per second × 3600). The defaults
(``BODYBROKER_PRICES``) are the seed's instances at on-demand prices and the throughput each
engine is expected to sustain under batching; replace the throughput with what ``make bench``
measures on your hardware. The reference is the for-pay API price the tiers replace.

Usage is counted in memory on the request path and written to ``UsageDaily`` by
:func:`usage_flush` (at most every few seconds, in a worker thread, and at exit), so answering
a request never waits on a database write. Every answer's tier, source and latency is counted
the same way into ``AnswersDaily`` (:func:`answer_add`), which the dashboards read.
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import contextlib
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from apps.router.metrics import LATENCY_BOUNDS_S


@dataclass(frozen=True, slots=True)
class Price:
    gpu_hour_usd: float
    tokens_per_s: float

    @property
    def per_token_usd(self) -> float:
        return self.gpu_hour_usd / (self.tokens_per_s * 3600)


def price(tier: str) -> Price:
    entry = settings.BODYBROKER_PRICES[tier]
    return Price(float(entry["gpu_hour_usd"]), float(entry["tokens_per_s"]))


def cost_usd(tier: str, prompt_tokens: int, completion_tokens: int) -> float:
    """Prompt tokens are prefilled in parallel: they cost a tenth of a generated token."""
    return price(tier).per_token_usd * (completion_tokens + prompt_tokens / 10)


def reference_cost_usd(prompt_tokens: int, completion_tokens: int) -> float:
    return (
        settings.BODYBROKER_REFERENCE_USD_PER_1K_TOKENS * (prompt_tokens + completion_tokens) / 1000
    )


@dataclass(slots=True)
class _Tally:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    reference_cost_usd: float = 0.0


_lock = threading.Lock()
_pending: defaultdict[tuple[date, str, int | None], _Tally] = defaultdict(_Tally)
_pending_answers: defaultdict[tuple[date, str, str], list[int]] = defaultdict(
    lambda: [0] * (len(LATENCY_BOUNDS_S) + 1)
)


def answer_add(*, tier: str, source: str, seconds: float) -> None:
    """Count one answer of ``tier`` by ``source`` that took ``seconds``; written by
    :func:`usage_flush`. Cheap enough for the request path."""
    slot = bisect.bisect_left(LATENCY_BOUNDS_S, seconds)
    with _lock:
        _pending_answers[(timezone.now().date(), tier, source)][slot] += 1


def usage_add(
    *, key_id: int | None, tier: str, prompt_tokens: int, completion_tokens: int
) -> float:
    """Count one answer; returns its cost. Cheap enough for the request path."""
    cost = cost_usd(tier, prompt_tokens, completion_tokens)
    with _lock:
        tally = _pending[(timezone.now().date(), tier, key_id)]
        tally.requests += 1
        tally.prompt_tokens += prompt_tokens
        tally.completion_tokens += completion_tokens
        tally.cost_usd += cost
        tally.reference_cost_usd += reference_cost_usd(prompt_tokens, completion_tokens)
    return cost


def usage_flush() -> int:
    """Write the counted usage to ``UsageDaily`` (upserts with F() increments) and the counted
    answers to ``AnswersDaily`` (each row locked while its histogram is merged); rows written."""
    from apps.router.models import UsageDaily

    with _lock:
        batch = dict(_pending)
        _pending.clear()
        answers = dict(_pending_answers)
        _pending_answers.clear()
    if not batch and not answers:
        return 0
    close_old_connections()
    _answers_flush(answers)
    from apps.security.models import ApiKey

    wanted = {key_id for (_, _, key_id) in batch if key_id is not None}
    existing = set(ApiKey.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    with transaction.atomic():
        for (day, tier, counted_key), tally in batch.items():
            # A key deleted since the request still counts, as keyless usage.
            key_id = counted_key if counted_key in existing else None
            row, _ = UsageDaily.objects.get_or_create(day=day, tier=tier, key_id=key_id)
            UsageDaily.objects.filter(pk=row.pk).update(
                requests=F("requests") + tally.requests,
                prompt_tokens=F("prompt_tokens") + tally.prompt_tokens,
                completion_tokens=F("completion_tokens") + tally.completion_tokens,
                cost_usd=F("cost_usd") + tally.cost_usd,
                reference_cost_usd=F("reference_cost_usd") + tally.reference_cost_usd,
            )
    return len(batch) + len(answers)


def _answers_flush(answers: dict[tuple[date, str, str], list[int]]) -> None:
    from apps.router.models import AnswersDaily

    with transaction.atomic():
        for (day, tier, source), counts in answers.items():
            AnswersDaily.objects.get_or_create(day=day, tier=tier, source=source)
            row = AnswersDaily.objects.select_for_update().get(day=day, tier=tier, source=source)
            stored = list(row.latency_counts) + [0] * (len(counts) - len(row.latency_counts))
            row.latency_counts = [a + b for a, b in zip(stored, counts, strict=True)]
            row.requests += sum(counts)
            row.save(update_fields=["latency_counts", "requests"])


FLUSH_EVERY_S = 5.0
_last_flush = 0.0
_flushing: set[asyncio.Task[int]] = set()


def usage_flush_soon() -> None:
    """From async code: flush in a worker thread if the last flush is ``FLUSH_EVERY_S`` old.

    Costs a clock read on most requests; the database write never sits on the request path.
    """
    global _last_flush
    now = time.monotonic()
    if now - _last_flush < FLUSH_EVERY_S or _flushing:
        return
    _last_flush = now
    task = asyncio.get_running_loop().create_task(
        sync_to_async(usage_flush, thread_sensitive=False)()
    )
    _flushing.add(task)
    task.add_done_callback(_flushing.discard)


def _flush_at_exit() -> None:
    # The process is ending: a failed last flush has nobody left to report to.
    with contextlib.suppress(Exception):
        usage_flush()


atexit.register(_flush_at_exit)
