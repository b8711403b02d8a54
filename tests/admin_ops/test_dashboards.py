"""``/dashboards/``: renders without waiting on probes, one source for every count, numbers as
people read them, busy engines shown as busy."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from apps.router import costs
from apps.router.models import AnswersDaily, Job, UsageDaily
from tests.router.conftest import tiers

pytestmark = pytest.mark.django_db


class SilentEngine:
    """A port that accepts connections and never answers: what a CPU engine deep in a long
    generation looks like to a probe. Counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent_engine() -> Iterator[SilentEngine]:
    engine = SilentEngine()
    yield engine
    engine.close()


def _row(page: str, check: str) -> str:
    found = re.search(rf"<tr><td>{re.escape(check)}</td>(.*?)</tr>", page, re.S)
    assert found, f"no row for {check} in {page}"
    return found.group(1)


def test_the_page_renders_without_probing_and_loads_the_health_table_after(
    client: Client, adam: User, settings: Any, silent_engine: SilentEngine
) -> None:
    settings.BODYBROKER_TIERS = tiers(gold={"urls": [silent_engine.url]})
    client.force_login(adam)
    page = client.get("/dashboards/").content.decode()
    assert silent_engine.connections == 0  # no probe ran for the page itself
    assert "engine:gold" not in page
    section = re.search(r'<section[^>]*id="health"[^>]*>', page)
    assert section, page
    assert 'hx-get="/dashboards/?partial=health"' in section.group(0)
    assert 'hx-trigger="load, every 5s"' in section.group(0)
    partial = client.get("/dashboards/?partial=health").content.decode()
    assert silent_engine.connections >= 1
    assert "engine:gold" in partial


def test_busy_engines_are_busy_not_down_on_every_tier_bronze_included(
    client: Client, adam: User, settings: Any, silent_engine: SilentEngine
) -> None:
    # On the CPU default Bronze shares Silver's engine: both are busy together.
    settings.BODYBROKER_TIERS = tiers(
        silver={"urls": [silent_engine.url]}, bronze={"urls": [silent_engine.url]}
    )
    client.force_login(adam)
    partial = client.get("/dashboards/?partial=health").content.decode()
    for check in ("engine:silver", "engine:bronze"):
        row = _row(partial, check)
        assert ">busy<" in row and "down" not in row, row
    assert "busy: " in partial and "engine:silver, engine:bronze" in partial


@pytest.mark.django_db(transaction=True)
def test_counts_come_from_one_source_whichever_process_answered(client: Client, adam: User) -> None:
    # Answers counted by another process (a worker, or this web process before a restart)
    # reach the page through the database, like their cost: never "no answers" beside a cost.
    costs._pending.clear()
    costs._pending_answers.clear()
    for seconds in (0.2, 0.4, 30.0, 12.0, 21.7, 25.0, 0.3):
        costs.answer_add(tier="silver", source="model", seconds=seconds)
    costs.answer_add(tier="silver", source="cache", seconds=0.001)
    costs.usage_add(key_id=None, tier="silver", prompt_tokens=1234, completion_tokens=56)
    costs.usage_flush()
    assert AnswersDaily.objects.get(tier="silver", source="model").requests == 7
    client.force_login(adam)
    page = client.get("/dashboards/").content.decode()
    assert "No answers" not in page
    row = _row(page, "silver")
    cells = re.findall(r"<td>(.*?)</td>", row, re.S)
    assert cells[0] == "8"  # every answer of the day, whichever source
    assert "model 7" in cells[1] and "cache 1" in cells[1]
    assert cells[4] == "12 %"  # one of eight from the cache
    assert cells[5] == "1,234 / 56"


def test_numbers_are_readable(client: Client, adam: User) -> None:
    now = timezone.now()
    for seconds in (21.7363, 21.7363):
        Job.objects.create(
            request={"messages": [], "max_tokens": 1},
            status="succeeded",
            prompt_tokens=12345,
            completion_tokens=678,
            started_at=now - timezone.timedelta(seconds=seconds),
            finished_at=now,
        )
    UsageDaily.objects.create(day=now.date(), tier="bronze", requests=2, prompt_tokens=24690)
    client.force_login(adam)
    page = client.get("/dashboards/").content.decode()
    assert "21.7 s on average" in page
    assert "24,690 prompt" in page
    assert "21736" not in page and "ms" not in page.split("Bronze jobs")[1]


@pytest.mark.parametrize(
    ("milliseconds", "shown"),
    [
        (0.42, "0.4 ms"),
        (340.2, "340 ms"),
        (21736.3, "21.7 s"),
        (185_000, "3 min 05 s"),
        (3_725_000, "1 h 02 min"),
        (None, ""),
    ],
)
def test_durations_read_in_their_unit(milliseconds: float | None, shown: str) -> None:
    from apps.router.templatetags.operator_numbers import duration

    assert duration(milliseconds) == shown


def test_percent_and_thousands() -> None:
    from apps.router.templatetags.operator_numbers import percent, thousands

    assert (percent(0.93), percent(0.004), percent(0), percent(None)) == (
        "93 %",
        "0.4 %",
        "0 %",
        "",
    )
    assert (thousands(1234), thousands(1234567.0), thousands(None)) == ("1,234", "1,234,567", "")
