"""Where an engine's idle cgroup goes (``inference.cpu_class``), on cgroup trees laid out in a
temporary folder as v1 and v2 lay them out; the real one is in ``test_process``."""

from __future__ import annotations

import os
from pathlib import Path

from inference.cpu_class import current_cgroup, join_idle_cgroup


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
