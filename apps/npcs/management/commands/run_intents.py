"""``manage.py run_intents [--shard I --shards N]``: the intent updater as its own process."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.npcs.updater import IntentUpdater


class Command(BaseCommand):
    help = "Refresh the intents of watched NPCs at 1–2 Hz through the Gold tier (one shard)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--shard", type=int, default=0, help="this process's shard, 0-based")
        parser.add_argument("--shards", type=int, default=1, help="how many shards run")
        parser.add_argument("--tick", type=float, default=0.05, help="seconds between passes")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.REDIS_URL:
            raise CommandError(
                "run_intents shares NPC state and intents with the web processes through Redis; "
                "set REDIS_URL. On the embedded default the web process runs the updater itself."
            )
        try:
            updater = IntentUpdater(
                shard=options["shard"], shards=options["shards"], tick_s=options["tick"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"intent updater: shard {updater.shard} of {updater.shards}")
        asyncio.run(self._run(updater))

    async def _run(self, updater: IntentUpdater) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await updater.run(stop)
