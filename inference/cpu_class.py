"""Putting a CPU engine below everything it shares the cores with, when asked to.

A CPU engine on the web tier's machine is busy all the time (Gold deciding intents, Silver
guessing replies), and the game socket's round trip waits whenever a woken web process finds
an engine on the core. ``nice`` only sets how the CPU is *shared*: under EEVDF a woken nice-0
task often cannot preempt a nice-19 one and waits for the next scheduler tick. An *idle*
scheduling entity is preempted at once by any other that wakes. This module makes the engine
one, as far as the process is allowed:

- ``SCHED_IDLE`` for the process (always allowed: it lowers priority). It counts among the
  processes of one cgroup — a container, a systemd unit — where it is what makes the web
  process preempt the engine.
- With autogroup scheduling (processes of the root cgroup, each session its own group) the
  kernel first compares sessions, and a session cannot be made idle. Where the cpu cgroup
  hierarchy is writable (root, or a delegated subtree), the engine moves into a cgroup of its
  own with ``cpu.idle = 1`` (:data:`IDLE_CGROUP`), which the kernel treats as ``SCHED_IDLE``
  among its siblings. systemd's ``CPUWeight=idle`` does the same for a unit.

Both are opt-in (:data:`IDLE_CLASS_ENV`; ``make run`` and ``make bench-npcs`` turn it on for
the CPU default): an idle engine runs only on cores nothing else wants, so on a host shared
with other busy work it may make no progress at all, and the cgroup is a write to the host's
cgroup tree that outlives the process. What the classes change in the game socket's round trip
is measured in docs/npcs.md ("Sharing the cores").
"""

from __future__ import annotations

import os
from pathlib import Path

IDLE_CLASS_ENV = "BODYBROKER_ENGINE_IDLE_CLASS"  # "1": SCHED_IDLE and the idle cgroup
IDLE_CGROUP = "bodybroker-engines"
# cgroup v1 mounts the cpu controller on its own (or with cpuacct); v2 has one hierarchy.
CGROUP_ROOTS = (
    Path("/sys/fs/cgroup/cpu"),
    Path("/sys/fs/cgroup/cpu,cpuacct"),
    Path("/sys/fs/cgroup"),
)


def set_idle_policy() -> bool:
    """``SCHED_IDLE`` for this process (and the threads it starts afterwards)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        return False
    return True


def join_idle_cgroup(
    roots: tuple[Path, ...] = CGROUP_ROOTS, name: str = IDLE_CGROUP
) -> Path | None:
    """Move this process into ``<root>/<name>`` with ``cpu.idle = 1``, under the first ``root``
    whose cpu controller offers ``cpu.idle`` and lets us write; the cgroup, or None."""
    for root in roots:
        if not (root / "cpu.idle").exists() and not _v2_root_with_cpu(root):
            continue
        group = root / name
        try:
            group.mkdir(exist_ok=True)
            (group / "cpu.idle").write_text("1")
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            continue
        return group
    return None


def _v2_root_with_cpu(root: Path) -> bool:
    """A cgroup v2 root whose children get the cpu controller (``cpu.idle`` lives there)."""
    try:
        return "cpu" in (root / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def current_cgroup(pid: int | str = "self") -> str | None:
    """The cpu cgroup of ``pid`` (``/`` for the root), from ``/proc/<pid>/cgroup``."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    for line in lines:  # cgroup v2 only: "0::/path"
        if line.startswith("0::"):
            return line[3:]
    return None
