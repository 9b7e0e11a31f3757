"""Options of ``python -m backends.taskworker``: db_worker's, plus processes, threads, drain.

The same parser validates an entry's ARGS in the console before anything starts, so a bad
option is one line in its pane instead of a crash loop.
"""

from __future__ import annotations

import argparse
import math
import os
import sys


class OptionError(ValueError):
    """argparse's complaint, raised instead of printed and exited."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise OptionError(message)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def _verbosity(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 3:
        raise ValueError(text)
    return value


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise ValueError(text)
    return lowered in ("1", "true", "yes", "on")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m backends.taskworker",
        description=(
            "django-tasks database worker with processes x threads. Scale while running: "
            "SIGTTIN / SIGTTOU to the master add / remove a process, SIGUSR1 / SIGUSR2 add / "
            "remove a thread in every process (the console instead sends absolute targets over "
            "the Unix datagram socket named by $PRODSERVER_TUI_CONTROL). SIGTERM or Ctrl-C "
            "drains: no new tasks, running ones finish (up to --drain-timeout), then exit; a "
            "second Ctrl-C kills."
        ),
    )
    p.add_argument("--processes", type=_positive_int, default=1)
    p.add_argument("--threads", type=_positive_int, default=1, help="threads per process")
    p.add_argument(
        "--queue-name",
        "--queue",
        "--queues",
        dest="queue_name",
        default="default",
        help="queues to process, comma separated, or '*' for all (default: default)",
    )
    p.add_argument("--exclude-queues", default="", help="with --queue-name='*': queues to skip")
    p.add_argument(
        "--interval",
        type=_seconds,
        default=1.0,
        help="seconds between polls when idle and push wake-up is unavailable",
    )
    p.add_argument(
        "--wake",
        choices=("auto", "poll"),
        default="auto",
        help="auto: PostgreSQL LISTEN/NOTIFY or the SQLite doorbell start tasks at once; "
        "poll: only poll (e.g. behind PgBouncer in transaction mode, where LISTEN cannot work)",
    )
    p.add_argument(
        "--safety-interval",
        type=_seconds,
        default=5.0,
        help="seconds between polls while push wake-up works, for producers that ring nothing",
    )
    p.add_argument("--batch", action="store_true", help="run what is due, then exit")
    p.add_argument("--backend", dest="backend_name", default="default")
    p.add_argument("--max-tasks", type=_positive_int, help="tasks per thread, then recycle")
    p.add_argument("--startup-delay", type=_flag, default=True, help="random 0-1 s start delay")
    p.add_argument("--no-startup-delay", dest="startup_delay", action="store_false")
    p.add_argument("--verbosity", "-v", type=_verbosity, default=1, help="0 errors .. 3 debug")
    p.add_argument(
        "--on-crash",
        choices=("requeue", "fail"),
        default="requeue",
        help="what to do with tasks left RUNNING by a worker process that died",
    )
    p.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=30.0,
        help="seconds running tasks get to finish on stop, then they are killed",
    )
    # db_worker's own (every manage.py command has them): a worker given its own settings
    # says at start which database they point it at, and the console compares.
    p.add_argument("--settings", help="settings module, instead of DJANGO_SETTINGS_MODULE")
    p.add_argument("--pythonpath", help="a folder to add to the import path")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p


def use_project(settings: str | None, pythonpath: str | None) -> None:
    """As manage.py's ``--settings`` and ``--pythonpath``, in the environment too, which the
    worker processes inherit."""
    if settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings
    if pythonpath:
        sys.path.insert(0, pythonpath)
        inherited = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, inherited]))


def main(argv: list[str] | None = None) -> None:
    try:
        options = parser().parse_args(argv)
    except OptionError as e:
        raise SystemExit(f"taskworker: error: {e}") from None
    use_project(options.settings, options.pythonpath)
    if options.child:
        from backends.taskworker.process import run_process

        raise SystemExit(run_process(options))
    from backends.taskworker.master import run_master

    raise SystemExit(run_master(options))
