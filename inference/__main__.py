"""Command line: ``python -m inference serve ...`` and ``python -m inference profiles``.

``serve`` replaces itself with the engine (``os.execvpe``): the engine gets this process's pid,
so signals from a supervisor, ``EngineProcess.stop()`` or Ctrl-C reach it directly and nothing is
left running when it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Sequence

from inference import cpu_class
from inference.errors import ProfileError
from inference.profiles import DEFAULT_ENGINE, ENGINE_ENV, load_profiles


def _parser() -> argparse.ArgumentParser:
    profiles = load_profiles()
    parser = argparse.ArgumentParser(
        prog="python -m inference", description="Body Broker model servers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run a tier's model server in the foreground",
        description=(
            "Exec the model server of a tier. Model override: BODYBROKER_<TIER>_MODEL; "
            "extra engine flags: BODYBROKER_<TIER>_EXTRA_ARGS; cpu threads: "
            "BODYBROKER_CPU_THREADS."
        ),
    )
    serve.add_argument("--tier", required=True, choices=profiles.tiers)
    serve.add_argument(
        "--engine",
        default=None,
        help=(
            f"{', '.join([*profiles.engines(), *profiles.aliases])} "
            f"(default: ${ENGINE_ENV} or {DEFAULT_ENGINE})"
        ),
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: the tier's port")
    serve.add_argument("--model", default=None, help="model path or hub id")
    serve.add_argument("--n-threads", type=int, default=None, help="cpu engine threads")
    serve.add_argument(
        "--dry-run", action="store_true", help="print the command instead of running it"
    )

    sub.add_parser("profiles", help="list launch profiles and whether each engine is installed")
    return parser


def _lower_priority(nice: int) -> None:
    """Run the engine ``nice`` steps below the caller and, with
    ``BODYBROKER_ENGINE_IDLE_CLASS=1``, in the idle CPU class, so a woken web process or intent
    updater takes the core from it at once (``inference.cpu_class``).

    With Linux's autogroup scheduling (on by default on desktops and many servers) the
    scheduler first shares the CPU fairly between sessions, and a process's own nice value
    only counts inside its session. An engine started in a session of its own (as
    ``EngineProcess`` does) therefore also sets its session's nice value, where there is one.
    Only then: a session's nice applies to everything in it, and an engine started from a
    shell would otherwise renice the shell and all it starts afterwards.

    The idle class is off unless asked for (``make run`` on the CPU default asks): an idle
    engine gets a core only when nothing else wants one, so on a host busy with other work it
    may all but stop. With it on, where the cpu cgroup hierarchy is writable, the engine also
    leaves its session's group for an idle cgroup (``BODYBROKER_ENGINE_IDLE_CGROUP=0`` keeps
    it out).
    """
    os.nice(nice)
    done = [f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"]
    idle = os.environ.get(cpu_class.IDLE_CLASS_ENV, "0") == "1"
    if idle and cpu_class.set_idle_policy():
        done.append("SCHED_IDLE")
    if os.getsid(0) == os.getpid():
        # No autogroup scheduling here, or not allowed: the process nice stands alone.
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
        if idle and os.environ.get("BODYBROKER_ENGINE_IDLE_CGROUP", "1") != "0":
            group = cpu_class.join_idle_cgroup()
            if group is not None:
                done.append(f"idle cgroup {group}")
    print(f"[inference] CPU class: {', '.join(done)}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    profile = load_profiles().get(args.tier, args.engine)
    argv = profile.command(args.host, args.port, args.model, n_threads=args.n_threads)
    if args.dry_run:
        for key, value in profile.env.items():
            print(f"{key}={shlex.quote(value)}", end=" ")
        print((f"nice -n {profile.nice} " if profile.nice else "") + shlex.join(argv))
        return 0
    profile.check_installed()
    env = {**profile.env, **os.environ}  # the caller's environment wins
    if profile.nice:
        _lower_priority(profile.nice)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(argv[0], argv, env)  # noqa: S606 - replaces this process with the engine
    return 0  # unreachable: execvpe does not return


def _list_profiles() -> int:
    profiles = load_profiles()
    rows = [("TIER", "ENGINE", "PORT", "MODEL NAME", "HEALTH", "INSTALLED", "DESCRIPTION")]
    for p in profiles:
        missing = p.missing_requirement()
        rows.append(
            (
                p.tier,
                p.engine,
                str(p.port),
                p.served_model_name,
                p.health_path,
                "yes" if missing is None else "no",
                p.description,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]))
    for alias, mapping in profiles.aliases.items():
        print(f"engine alias {alias!r}: " + ", ".join(f"{t} -> {e}" for t, e in mapping.items()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        return _list_profiles()
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
