"""The web process's event loop at a real-time priority, when asked to and the OS allows it.

Every game socket's frame is read, answered and written on one event loop thread. On a machine
whose cores it shares (with the CPU model engines, the intent updater, Redis), a frame that
wakes the loop waits until the scheduler gives it a core: under EEVDF a woken fair task often
cannot preempt the one running and waits for the next scheduler tick. ``SCHED_FIFO`` preempts
every fair task at once; what that does to ``intents.get``'s round trip is measured in
docs/npcs.md ("Sharing the cores").

It is opt-in (``BODYBROKER_EVENT_LOOP_RT_PRIORITY``, default 0; ``make run`` and
``make bench-npcs`` set 1 for the CPU default): a real-time thread runs before every ordinary
task on the host, so a loop kept busy can hold other work back on a shared machine. Only the
loop thread gets it, and ``SCHED_RESET_ON_FORK`` makes the threads it starts (database reads,
lore retrieval, the lore embedder's load) ordinary ones. The kernel's real-time throttling
(``sched_rt_runtime_us``, 95% of each second by default) keeps a loop that never sleeps from
taking a core for good. It needs ``CAP_SYS_NICE`` or an ``RLIMIT_RTPRIO`` of at least the
priority (systemd ``LimitRTPRIO=1``, docker ``--cap-add SYS_NICE``); without either the loop
stays as it was, and says so once.
"""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings

logger = logging.getLogger(__name__)


def raise_thread_priority(priority: int) -> str:
    """Put the calling thread in ``SCHED_FIFO`` at ``priority`` (1–99), its future threads
    excepted; returns what it did, for the log."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except PermissionError:
        return (
            f"event loop left at its fair priority: SCHED_FIFO {priority} needs CAP_SYS_NICE "
            "or an RLIMIT_RTPRIO of at least that"
        )
    except (AttributeError, OSError) as exc:  # not Linux, or the kernel refused the policy
        return f"event loop left at its fair priority: {exc}"
    return f"event loop thread {threading.get_native_id()} runs SCHED_FIFO {priority}"


def raise_event_loop_priority() -> None:
    """For ``McpRouter``'s start-up, which runs on the server's event loop thread: that thread
    takes ``BODYBROKER_EVENT_LOOP_RT_PRIORITY`` (0: leave it)."""
    priority = settings.BODYBROKER_EVENT_LOOP_RT_PRIORITY
    if priority:
        logger.info(raise_thread_priority(priority))
