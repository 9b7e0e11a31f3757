"""Where one task's time goes: claim, run, save, worker CPU and round trips per task.

Why this exists
---------------
bench/taskworker.py says how many tasks per second a worker does; this says why, per task,
for our task loop and django-tasks-db's own ``Worker`` (what ``manage.py db_worker`` runs)
with persistent connections (``CONN_MAX_AGE=600``), on SQLite (Django's default journal, and
WAL as ``--check`` suggests) and PostgreSQL, in one run.
Each measurement is one thread in a child process of its own (Django is set up once per
process), working through a queue of noop tasks in ``--batch`` mode, the loop's own code
unchanged; only timers are put around it:

* ``claim ms``: the loop's time outside running a task (claim, connection checks, logging);
* ``run ms``: running the task (django-tasks-db's ``run_task``: import, signals, the call,
  ``done`` logging) less its save; ``save ms``: ``set_successful`` (the result's UPDATE);
* ``cpu ms``: the process's CPU time per task (client side only; the server's is not counted);
* ``round trips``: PostgreSQL: the times the client sent and then read the server's answer
  (a run of frontend messages followed by backend ones in libpq's own protocol trace, so a
  pipeline's batch counts once), in a separate, traced run;
  SQLite: statements executed (``sqlite3`` trace callback), BEGIN and COMMIT included.

Logging is as each worker does it at its default verbosity (db_worker: django-tasks' two
INFO lines per task; ours: the ``done`` line), to a file.

Run from the repository root (about 1 minute)::

    .venv/bin/python bench/taskcost.py [--tasks 2000] [--repeat 3] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import Column, Report, log, median, trap_signals
from bench.taskproject import Database, postgres_database, sqlite_database, write_project

AGES = (0, 600)  # settings for both: migrate at Django's default, the workers at 600
WORKERS = ("db_worker", "ours")


# -- the child: one worker, in this process -----------------------------------------------------


class Counter:
    """Round trips of every connection Django opens from now on (see the module docstring)."""

    def __init__(self, trace_path: Path) -> None:
        self.statements = 0
        self.trace_path = trace_path
        self.trace_files: list[Any] = []

    def attach(self, connection: Any) -> None:
        raw = connection.connection
        if connection.vendor == "sqlite":
            raw.set_trace_callback(self._statement)
        elif connection.vendor == "postgresql":
            from psycopg import pq

            trace = self.trace_path.open("ab")
            self.trace_files.append(trace)
            raw.pgconn.trace(trace.fileno())
            raw.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

    def _statement(self, _sql: str) -> None:
        self.statements += 1

    def count(self) -> int:
        for trace in self.trace_files:
            trace.flush()
        if not self.trace_path.exists():
            return self.statements
        trips = 0
        sending = False
        with self.trace_path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                direction = line[:1]
                if direction == "B" and sending:
                    trips += 1
                sending = direction == "F" or (sending and direction != "B")
        return trips


def timed(function: Callable[..., Any], into: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - began)

    return wrapper


def make_worker(kind: str) -> Any:
    options: dict[str, Any] = {
        "queue_names": ["default"],
        "interval": 0.0,
        "batch": True,
        "backend_name": "default",
        "startup_delay": False,
        "max_tasks": None,
        "worker_id": f"bench-{os.getpid()}",
        "excluded_queue_names": [],
    }
    if kind == "ours":
        from backends.taskworker.worker import TaskLoop

        def admit(worker: Any) -> bool:
            worker.busy = True
            return True

        return TaskLoop(idle_wait=lambda _w: None, found=lambda: None, admit=admit, **options)
    from django_tasks_db.management.commands.db_worker import Worker

    return Worker(**options)


def child(kind: str, count: int, trace: Path | None, out: Path) -> None:
    if kind == "ours":
        from backends.taskworker.setup import setup_django, setup_logging

        setup_logging(1)
        setup_django()
    else:
        import django

        django.setup()
        from django_tasks_db.management.commands.db_worker import Command

        Command().configure_logging(1)
    from benchapp import tasks  # type: ignore[import-not-found]
    from django.db import connection, transaction
    from django.db.backends.signals import connection_created
    from django_tasks_db.models import DBTaskResult

    with transaction.atomic():
        for n in range(count):
            tasks.noop.enqueue(n)
    counter = Counter(trace) if trace else None
    if counter:
        connection_created.connect(lambda connection, **_: counter.attach(connection), weak=False)
        if connection.connection is not None:
            counter.attach(connection)
    runs: list[float] = []
    saves: list[float] = []
    DBTaskResult.set_successful = timed(DBTaskResult.set_successful, saves)  # type: ignore[method-assign]
    worker = make_worker(kind)
    worker.run_task = timed(worker.run_task, runs)
    cpu, began = time.process_time(), time.perf_counter()
    worker.run()
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    done = len(runs)
    result = {
        "done": done,
        "wall_ms": 1000 * wall / done,
        "claim_ms": 1000 * (wall - sum(runs)) / done,
        "run_ms": 1000 * (sum(runs) - sum(saves)) / done,
        "save_ms": 1000 * sum(saves) / done,
        "cpu_ms": 1000 * cpu / done,
        "trips": counter.count() / done if counter else None,
    }
    out.write_text(json.dumps(result))


# -- the parent: every database, every worker, interleaved ---------------------------------------


def measure(database: Database, kind: str, count: int, traced: bool) -> dict[str, Any]:
    out = database.folder / "result.json"
    trace = database.folder / "trace.txt"
    trace.unlink(missing_ok=True)
    database.reset()
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--tasks", str(count)]
    argv += ["--out", str(out)] + (["--trace", str(trace)] if traced else [])
    with (database.folder / f"log-{database.name}-{kind}.txt").open("ab") as logfile:
        subprocess.run(
            argv,
            cwd=database.folder,
            env=database.env(600),
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            check=True,
        )
    result: dict[str, Any] = json.loads(out.read_text())
    problem = database.exactly_once(count)
    if problem or result["done"] != count:
        raise SystemExit(f"{database.name} {kind}: not exactly once: {problem or result}")
    return result


COLUMNS = [
    Column("database", "database"),
    Column("worker", "worker (1 thread)"),
    Column("rate", "tasks/s", "{:,.0f}", right=True),
    Column("wall_ms", "ms/task", "{:.3f}", right=True),
    Column("claim_ms", "claim ms", "{:.3f}", right=True),
    Column("run_ms", "run ms", "{:.3f}", right=True),
    Column("save_ms", "save ms", "{:.3f}", right=True),
    Column("cpu_ms", "cpu ms/task", "{:.3f}", right=True),
    Column("trips", "round trips/task", "{:.2f}", right=True),
    Column("vs", "ms/task vs db_worker", "{:.2f}x", right=True),
]


def bench(database: Database, options: argparse.Namespace, table: Any) -> None:
    log(f"{database.name}: migrating")
    database.django("-m", "django", "migrate", "--noinput", "-v", "0")
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in WORKERS}
    for attempt in range(options.repeat):  # interleaved: drift hits both alike
        for kind in WORKERS:
            result = measure(database, kind, options.tasks, traced=False)
            runs[kind].append(result)
            log(f"  {kind:<10} #{attempt + 1}: {result['wall_ms']:.3f} ms/task")
    trips = {kind: measure(database, kind, options.trace_tasks, True)["trips"] for kind in WORKERS}
    reference = median([r["wall_ms"] for r in runs["db_worker"]])
    for kind in WORKERS:
        cells = {
            key: median([r[key] for r in runs[kind]])
            for key in ("wall_ms", "claim_ms", "run_ms", "save_ms", "cpu_ms")
        }
        wall = cells["wall_ms"]
        table.add(
            database=database.name,
            worker=kind if kind == "ours" else "db_worker, CONN_MAX_AGE=600",
            rate=1000 / wall if wall else None,
            trips=trips[kind],
            vs=reference / wall if wall and reference else None,
            **cells,
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--tasks", type=int, default=2000, help="noop tasks per run (%(default)s)")
    p.add_argument("--trace-tasks", type=int, default=300, help="tasks in the traced run")
    p.add_argument("--repeat", type=int, default=3, help="runs per row, median reported")
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    p.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    p.add_argument("--child", choices=WORKERS, help=argparse.SUPPRESS)
    p.add_argument("--trace", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    options = p.parse_args()
    if options.child:
        child(options.child, options.tasks, options.trace, options.out)
        return 0
    trap_signals()
    report = Report("taskcost")
    table = report.table(
        f"Per-task cost, one thread, {options.tasks:,} noop tasks, median of {options.repeat}",
        COLUMNS,
    )
    table.notes += [
        "claim ms = the loop outside run_task; run ms = run_task less the save; "
        "cpu = the worker process's;",
        "round trips: PostgreSQL sends answered (libpq trace), SQLite statements.",
    ]
    folder = Path(tempfile.mkdtemp(prefix="taskcost-bench-"))
    try:
        write_project(folder, {})
        if not options.no_sqlite:
            bench(sqlite_database(folder, AGES), options, table)
            bench(sqlite_database(folder, AGES, wal=True), options, table)
        if not options.no_postgres:
            with postgres_database(folder, AGES) as pg:
                if isinstance(pg, str):
                    table.add(database="postgresql", worker=f"skipped: {pg}")
                else:
                    bench(pg, options, table)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return report.finish(options.json)


if __name__ == "__main__":
    sys.exit(main())
