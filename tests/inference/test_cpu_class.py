"""Where an engine's idle cgroup goes (``inference.cpu_class``), on cgroup trees laid out in a
temporary folder as v1 and v2 lay them out (the real one is in ``test_process``); and that
``python -m inference serve`` puts an engine in the idle class only when asked to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from inference.cpu_class import IDLE_CGROUP, IDLE_CLASS_ENV, current_cgroup, join_idle_cgroup

ROOT = Path(__file__).resolve().parents[2]


def launcher_class(env: dict[str, str], *, new_session: bool) -> tuple[int, str | None]:
    """The scheduling policy and cpu cgroup a process ends up with after the engine launcher
    lowered it (``inference.__main__._lower_priority``, which ``serve`` runs before exec)."""
    probe = (
        "import os\n"
        "from inference.__main__ import _lower_priority\n"
        "from inference.cpu_class import current_cgroup\n"
        "_lower_priority(19)\n"
        "print(os.sched_getscheduler(0), current_cgroup())\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("BODYBROKER_ENGINE_")}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
        start_new_session=new_session,
    )
    policy, cgroup = out.stdout.split()
    return int(policy), cgroup


def test_by_default_an_engine_is_niced_but_not_idle() -> None:
    """SCHED_IDLE and the idle cgroup are opt-in: a session of its own, where the launcher
    would join the cgroup if asked, and still neither."""
    policy, cgroup = launcher_class({}, new_session=True)
    assert policy == os.SCHED_OTHER
    assert cgroup != f"/{IDLE_CGROUP}"


def test_asked_to_an_engine_takes_the_idle_policy() -> None:
    # The cgroup stays out of it here (the real one is in test_process): SCHED_IDLE alone.
    env = {IDLE_CLASS_ENV: "1", "BODYBROKER_ENGINE_IDLE_CGROUP": "0"}
    policy, _cgroup = launcher_class(env, new_session=True)
    assert policy == os.SCHED_IDLE


def v1_cpu_root(tmp_path: Path) -> Path:
    root = tmp_path / "cpu"
    root.mkdir()
    (root / "cpu.idle").write_text("0")
    return root


def test_joins_the_first_root_whose_cpu_controller_has_idle(tmp_path: Path) -> None:
    not_cpu = tmp_path / "memory"
    not_cpu.mkdir()
    root = v1_cpu_root(tmp_path)

    group = join_idle_cgroup((not_cpu, root), name="engines")

    assert group == root / "engines"
    assert (group / "cpu.idle").read_text() == "1"
    assert (group / "cgroup.procs").read_text() == str(os.getpid())
    assert not (not_cpu / "engines").exists()


def test_a_v2_root_counts_once_its_children_get_the_cpu_controller(tmp_path: Path) -> None:
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.subtree_control").write_text("memory pids\n")
    assert join_idle_cgroup((root,), name="engines") is None

    (root / "cgroup.subtree_control").write_text("cpu memory pids\n")
    assert join_idle_cgroup((root,), name="engines") == root / "engines"


def test_an_unwritable_hierarchy_is_passed_over(tmp_path: Path) -> None:
    locked = v1_cpu_root(tmp_path)
    (locked / "engines").write_text("a file where the cgroup would go")  # mkdir fails
    other = tmp_path / "other"
    other.mkdir()
    (other / "cpu.idle").write_text("0")

    assert join_idle_cgroup((locked,), name="engines") is None
    assert join_idle_cgroup((locked, other), name="engines") == other / "engines"


def test_current_cgroup_reads_this_process() -> None:
    path = current_cgroup()
    assert path is not None and path.startswith("/")
    assert current_cgroup(2**22 + 12345) is None  # no such process
