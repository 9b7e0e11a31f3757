"""Enqueue to start: how long a task waits for a worker, and what an idle worker costs the database.

Why this exists
---------------
A web request that enqueues "send the email now" waits on nobody, but its user does: a worker
that polls every second starts the task half a second later on average, and a shorter interval
buys that back with ten times the idle queries. Our worker (``python -m backends.taskworker``)
is to be woken by the database instead (PostgreSQL LISTEN/NOTIFY from a trigger installed by
the ``backends.taskworker`` app's migration; on SQLite a doorbell rung on commit of an
enqueue), polling only as a safety net, with ``--wake poll`` as today's polling for setups
where push cannot work. This measures, in ONE run, interleaved round by round, against
django-tasks-db's ``manage.py db_worker`` at its default ``--interval`` of 1 s and at 0.1 s:

* enqueue to start: p50 / p95 / max of ``started_at - enqueued_at`` (both stamped by the same
  machine's clock) of noop tasks enqueued at 5 per second. Targets for ours with its defaults:
  PostgreSQL p50 <= 10 ms and p95 <= 30 ms, SQLite p50 <= 20 ms; ours ``--wake poll`` no worse
  than db_worker's default (p50 and p95 within 10 %);
* idle database load on an empty queue: statements per minute. Target: ours fewer than
  db_worker's default on every count, by 10 % at least (a tie of two 1 s pollers must not
  pass on the jitter of the window);
* a burst of 10,000 tasks, in one transaction (PostgreSQL folds its notifications into one
  ring) and in one transaction each (10,000 rings), on ours 2 processes x 4 threads with push
  and with ``--wake poll``: statements per task, claims that found nothing included, and tasks
  per second. Target: no thundering herd: a ring wakes one idle thread per process, never
  every idle thread, so push adds at most one empty claim per task per other process to
  polling's statements (2 statements); every task exactly once.

What it does
------------
* The project of ``bench/taskproject.py`` with ``backends.taskworker`` in INSTALLED_APPS and
  migrated (so its trigger and doorbell apply), ``CONN_MAX_AGE=600`` for every process (ours
  forces persistent connections, so db_worker gets them too), on SQLite and on a scratch
  PostgreSQL database on 127.0.0.1:5432. No server: a skip row says why.
* Workers, each alone, one process of one thread: ours with its defaults, ours ``--wake poll``,
  ``db_worker`` and ``db_worker --interval 0.1``, all with ``--no-startup-delay``. A row whose
  worker has no ``--wake`` option (``--help`` says so) reads "n/a".
* Latency run: a producer process, the project's own Django, enqueues one warm-up task and
  waits for it to finish (the worker is up and idle), waits a second, then enqueues ``noop(n)``
  with the real ``.enqueue()``, one transaction each (autocommit, as a web request), evenly at
  ``--rate`` per second for ``--seconds``. The bench waits for every task to finish, stops the
  worker, and reads the timestamps of the result rows (the warm-up left out); until the last
  task has run it watches the runs file, not the database, so its reads cannot delay a claim
  on SQLite. Every run checks exactly once: every result SUCCESSFUL with one worker id, each
  task's run recorded once; a run that fails it says so in its row and the script exits 1.
* Idle run: the worker on an empty queue; after ``--settle`` seconds (12: PostgreSQL reports
  an idle backend's counts up to 10 s late, so the start-up stays out), statements counted over
  ``--idle`` seconds, identically for every worker: each process of the project counts what its
  Django connections execute (an ``execute_wrapper`` installed on every connection; the
  ``benchcount`` app of taskproject.py). What a wrapper cannot see is counted by the database:
  on SQLite every statement the library runs for those connections (COMMIT included), on
  PostgreSQL the commits and rollbacks of the scratch database in ``pg_stat_database``, which
  sees every connection, a raw listening one too; only the workers use that database during
  the window (the bench reads the statistics from another one; autovacuum may add a visit).
* Medians of ``--repeat`` runs (3) per row.

Run from the repository root (about 30 minutes: 3 rounds of 8 latency and 6 idle runs of
30 s and 8 bursts; ``--quick``, one round of 10 s runs and bursts of 2,000, about 5)::

    .venv/bin/python bench/latency.py --json bench/results/latency.json
    .venv/bin/python bench/latency.py --quick --no-postgres

The table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (
    REPO,
    Column,
    Reaper,
    Report,
    Skip,
    log,
    median,
    percentile,
    rounds,
    terminate,
    trap_signals,
)
from bench.taskproject import (
    TABLE,
    Database,
    db_worker_argv,
    ours_argv,
    postgres_database,
    sqlite_database,
    start,
    statement_counts,
    write_project,
)

AGE = 600  # CONN_MAX_AGE of every process: ours forces persistent connections, db_worker gets them
APPS = ["django_tasks_db", "backends.taskworker", "benchapp", "benchcount"]
POLL = 0.05
WARM_UP = 60.0  # seconds the producer waits for its warm-up task to finish
WAKE_MISSING = "n/a: --wake not supported by this worker"
REAPER = Reaper()  # every process started: killed on any exit

PRODUCER = """\
\"\"\"Enqueue a warm-up task and wait for it, then noop(0..count-1) at rate per second,
each in its own transaction (autocommit, as a web request would); rate inf: back to back;
rate 0: all in one transaction.\"\"\"

import sys
import time

import django

django.setup()

from benchapp.tasks import noop

from django.db import transaction

rate, count = float(sys.argv[1]), int(sys.argv[2])
warm = noop.enqueue(count)
deadline = time.monotonic() + float(sys.argv[3])
while warm.status != "SUCCESSFUL":
    if warm.status == "FAILED" or time.monotonic() > deadline:
        sys.exit(f"producer: the warm-up task is {warm.status} after {sys.argv[3]} s")
    time.sleep(0.02)
    warm.refresh()
time.sleep(1.0)  # the worker back to waiting
if rate == 0:  # a burst: all at once, in one transaction
    with transaction.atomic():
        for n in range(count):
            noop.enqueue(n)
    sys.exit()
began = time.monotonic()
for n in range(count):
    if rate != float("inf"):  # inf: a burst of transactions, one per task, back to back
        time.sleep(max(0.0, began + n / rate - time.monotonic()))
    noop.enqueue(n)
"""


@dataclass(frozen=True)
class Worker:
    label: str
    argv: tuple[str, ...]
    wake: bool = False  # needs the --wake option

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")


OURS = Worker("ours, defaults", tuple(ours_argv("--no-startup-delay")))
OURS_POLL = Worker(
    "ours --wake poll", tuple(ours_argv("--no-startup-delay", "--wake", "poll")), True
)
DB_WORKER = Worker("db_worker (interval 1 s)", tuple(db_worker_argv()))
DB_WORKER_FAST = Worker("db_worker --interval 0.1", tuple(db_worker_argv("--interval", "0.1")))
LATENCY_WORKERS = [OURS, OURS_POLL, DB_WORKER, DB_WORKER_FAST]
BURST_SHAPE = ("--processes", "2", "--threads", "4")
BURST_PUSH = Worker("ours 2 x 4", tuple(ours_argv("--no-startup-delay", *BURST_SHAPE)))
BURST_POLL = Worker(
    "ours 2 x 4 --wake poll",
    tuple(ours_argv("--no-startup-delay", *BURST_SHAPE, "--wake", "poll")),
    True,
)
BURSTS = {"one transaction": 0.0, "one transaction each": float("inf")}
#: No thundering herd: a ring wakes at most one idle thread per process, so push may add at
#: most one claim that finds nothing per task for each other process (2 processes: one). An
#: empty claim is at most 2 statements (the claim and, on PostgreSQL, the look at free slots).
HERD_BOUND = 2.0 * (int(BURST_SHAPE[1]) - 1)
IDLE_WORKERS = [OURS, DB_WORKER, DB_WORKER_FAST]


def wake_supported() -> bool:
    """Whether this checkout's worker has the --wake option (its --help names it)."""
    done = subprocess.run(
        ours_argv("--help"), cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    return "--wake" in done.stdout


# -- one latency run ----------------------------------------------------------------------------


@dataclass
class Latency:
    p50: float = float("nan")  # ms
    p95: float = float("nan")
    max: float = float("nan")
    error: str = ""  # the run did not finish
    once: str = ""  # what the exactly-once check found wrong

    def describe(self) -> str:
        found = self.error or f"p50 {self.p50:.1f}, p95 {self.p95:.1f}, max {self.max:.1f} ms"
        return found + (f"; NOT EXACTLY ONCE: {self.once}" if self.once else "")


def moment(value: Any) -> datetime:
    """A timestamp column as psycopg (datetime) or sqlite3 (ISO text, UTC) returns it."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def waits_ms(rows: list[tuple[Any, ...]], warm_up: int) -> list[float]:
    """started_at - enqueued_at of each started task but the warm-up, in ms."""
    waits = []
    for args_kwargs, enqueued, started in rows:
        args = args_kwargs if isinstance(args_kwargs, dict) else json.loads(args_kwargs)
        if started is not None and args["args"] != [warm_up]:
            waits.append((moment(started) - moment(enqueued)).total_seconds() * 1000)
    return waits


def produce(
    database: Database,
    worker: Worker,
    rate: float,
    count: int,
    within: float,
    log_file: Path,
    env: dict[str, str],
) -> str:
    """Run ``worker`` while the producer enqueues ``count`` tasks at ``rate``, until every
    task (and the warm-up) has finished; what went wrong, or ""."""
    database.reset()
    workers = start(REAPER, database, [list(worker.argv)], env, log_file)
    argv = [sys.executable, "producer.py", str(rate), str(count), str(WARM_UP)]
    producer = start(REAPER, database, [argv], env, log_file)[0]
    try:
        deadline = time.monotonic() + WARM_UP + within
        while True:  # progress from the runs file: the bench's reads stay out of SQLite's way
            ran = database.ran()
            if ran > count and sum(database.finished()) > count:  # the warm-up too
                return ""
            if producer.poll() not in (None, 0):
                return f"producer failed ({ran} ran), see {log_file}"
            if workers[0].poll() is not None:
                return f"worker exited ({ran} ran), see {log_file}"
            if time.monotonic() > deadline:
                return f"timeout ({ran} of {count + 1} ran)"
            time.sleep(POLL)
    finally:
        terminate(workers)
        terminate([producer])


def latency_run(
    database: Database, worker: Worker, options: argparse.Namespace, logs: Path
) -> Latency:
    count = round(options.rate * options.seconds)
    log_file = logs / f"latency-{database.name}-{worker.slug}.log"
    within = options.seconds + options.timeout
    run = Latency(
        error=produce(database, worker, options.rate, count, within, log_file, database.env(AGE))
    )
    waits = waits_ms(
        database.query(f"SELECT args_kwargs, enqueued_at, started_at FROM {TABLE}"), count
    )
    if waits:
        run.p50, run.p95, run.max = percentile(waits, 50), percentile(waits, 95), max(waits)
    run.once = database.exactly_once(count + 1)
    return run


# -- one burst run ------------------------------------------------------------------------------


@dataclass
class Burst:
    per_task: float = float("nan")  # Django statements per task, the warm-up's included
    rate: float = float("nan")  # tasks per second, first enqueue to last finish
    error: str = ""
    once: str = ""

    def describe(self) -> str:
        found = self.error or f"{self.per_task:.2f} statements/task, {self.rate:,.0f} tasks/s"
        return found + (f"; NOT EXACTLY ONCE: {self.once}" if self.once else "")


def burst_run(
    database: Database, worker: Worker, rate: float, options: argparse.Namespace, logs: Path
) -> Burst:
    counts = logs / f"counts-{next(COUNT_DIRS)}"
    counts.mkdir()
    env = database.env(AGE, BENCH_COUNT_DIR=str(counts))
    log_file = logs / f"burst-{database.name}-{worker.slug}.log"
    run = Burst(
        error=produce(database, worker, rate, options.burst, options.timeout * 5, log_file, env)
    )
    rows = database.query(f"SELECT args_kwargs, enqueued_at, finished_at FROM {TABLE}")
    burst = [(moment(e), moment(f)) for a, e, f in rows if f is not None and not warm(a, options)]
    if not run.error and burst:
        run.per_task = statement_counts(counts)[0] / (options.burst + 1)
        took = max(f for _, f in burst) - min(e for e, _ in burst)
        run.rate = len(burst) / max(1e-3, took.total_seconds())
    run.once = database.exactly_once(options.burst + 1)
    return run


def warm(args_kwargs: Any, options: argparse.Namespace) -> bool:
    """Whether a row is the producer's warm-up task (its argument is the task count)."""
    args = args_kwargs if isinstance(args_kwargs, dict) else json.loads(args_kwargs)
    return bool(args["args"] == [options.burst])


# -- one idle run -------------------------------------------------------------------------------


@dataclass
class Idle:
    django: float = float("nan")  # statements per minute, as Django's connections executed them
    database: float | None = None  # per minute: SQLite statements, PostgreSQL transactions
    error: str = ""

    def describe(self) -> str:
        if self.error:
            return self.error
        counted = "" if self.database is None else f", database {self.database:.1f}/min"
        return f"Django statements {self.django:.1f}/min{counted}"


COUNT_DIRS = itertools.count(1)


def idle_run(database: Database, worker: Worker, options: argparse.Namespace, logs: Path) -> Idle:
    database.reset()
    database.close()  # its statistics reach the server now, not inside the window
    counts = logs / f"counts-{next(COUNT_DIRS)}"
    counts.mkdir()
    env = database.env(AGE, BENCH_COUNT_DIR=str(counts))
    log_file = logs / f"idle-{database.name}-{worker.slug}.log"
    workers = start(REAPER, database, [list(worker.argv)], env, log_file)
    try:
        time.sleep(options.settle)
        before, server_before, began = statement_counts(counts), server(database), time.monotonic()
        time.sleep(options.idle)
        after, server_after, ended = statement_counts(counts), server(database), time.monotonic()
        if workers[0].poll() is not None:
            return Idle(error=f"worker exited, see {log_file}")
    finally:
        terminate(workers)
    per_minute = 60.0 / (ended - began)
    if server_before is not None and server_after is not None:
        counted: float | None = (server_after - server_before) * per_minute
    else:
        counted = (after[1] - before[1]) * per_minute if database.name == "sqlite" else None
    return Idle((after[0] - before[0]) * per_minute, counted)


def server(database: Database) -> int | None:
    return database.transactions() if database.transactions else None


# -- the tables ---------------------------------------------------------------------------------

LATENCY_COLUMNS = [
    Column("database", "database"),
    Column("worker", "worker"),
    Column("p50", "p50 ms", "{:,.1f}", right=True),
    Column("p95", "p95 ms", "{:,.1f}", right=True),
    Column("max", "max ms", "{:,.1f}", right=True),
    Column("runs", "runs", right=True),
    Column("once", "exactly once"),
    Column("target", "target"),
    Column("ok", "ok"),
]
IDLE_COLUMNS = [
    Column("database", "database"),
    Column("worker", "worker"),
    Column("django", "Django statements/min", "{:,.1f}", right=True),
    Column("counted", "counted by the database/min", "{:,.1f}", right=True),
    Column("ratio", "vs db_worker (interval 1 s)", "{:.2f}x", right=True),
    Column("runs", "runs", right=True),
    Column("target", "target"),
    Column("ok", "ok"),
]


BURST_COLUMNS = [
    Column("database", "database"),
    Column("burst", "enqueued"),
    Column("worker", "worker"),
    Column("per_task", "statements/task", "{:.2f}", right=True),
    Column("rate", "tasks/s", "{:,.0f}", right=True),
    Column("runs", "runs", right=True),
    Column("once", "exactly once"),
    Column("target", "target"),
    Column("ok", "ok"),
]


def verdict(passed: bool | None) -> str:
    return "" if passed is None else "yes" if passed else "NO"


def latency_target(
    db: str, worker: Worker, rows: dict[Worker, dict[str, float | None]]
) -> tuple[str, bool | None]:
    got = rows[worker]
    p50, p95 = got["p50"], got["p95"]
    if worker is OURS and p50 is not None and p95 is not None:
        if db == "postgresql":
            return "p50 <= 10, p95 <= 30", p50 <= 10 and p95 <= 30
        return "p50 <= 20", p50 <= 20
    peer = rows[DB_WORKER]
    if worker is OURS_POLL and None not in (p50, p95, peer["p50"], peer["p95"]):
        within = all(got[k] <= 1.1 * peer[k] for k in ("p50", "p95"))  # type: ignore[operator]
        return "p50, p95 <= db_worker (1 s) + 10 %", within
    return "", None


def latency_rows(
    report: Report, db: str, results: dict[Worker, list[Latency]], skipped: dict[Worker, str]
) -> None:
    table = report.tables[0]
    medians = {
        w: {k: median([getattr(r, k) for r in rs]) for k in ("p50", "p95", "max")}
        for w, rs in results.items()
    }
    for worker, runs in results.items():
        if worker in skipped:
            table.add(database=db, worker=f"{worker.label}: {skipped[worker]}")
            continue
        once = "; ".join(sorted({r.once for r in runs if r.once}))
        if once:
            report.failed.append(f"{db} latency {worker.label}: {once}")
        errors = [r.error for r in runs if r.error]
        target, passed = latency_target(db, worker, medians)
        table.add(
            database=db,
            worker=worker.label,
            p50=errors[0] if errors else medians[worker]["p50"],
            p95=medians[worker]["p95"],
            max=medians[worker]["max"],
            runs=f"{len(runs) - len(errors)}/{len(runs)}",
            once=f"NO: {once}" if once else "yes",
            target=target,
            ok=verdict(passed),
        )


def idle_rows(report: Report, db: str, results: dict[Worker, list[Idle]]) -> None:
    table = report.tables[1]
    medians = {
        w: (median([r.django for r in rs]), median([r.database for r in rs]))
        for w, rs in results.items()
    }
    theirs = medians[DB_WORKER]
    for worker, runs in results.items():
        errors = [r.error for r in runs if r.error]
        django, counted = medians[worker]
        target, passed = "", None
        if worker is OURS and None not in (django, theirs[0]):
            target = "<= 0.9x db_worker (1 s), every count"
            pairs = [(django, theirs[0]), (counted, theirs[1])]
            passed = all(o <= 0.9 * t for o, t in pairs if o is not None and t is not None)
        table.add(
            database=db,
            worker=worker.label,
            django=errors[0] if errors else django,
            counted=counted,
            ratio=django / theirs[0] if django is not None and theirs[0] else None,
            runs=f"{len(runs) - len(errors)}/{len(runs)}",
            target=target,
            ok=verdict(passed),
        )


def burst_rows(
    report: Report, db: str, results: dict[tuple[str, Worker], list[Burst]], skipped: set[Worker]
) -> None:
    table = report.tables[2]
    medians = {
        k: {f: median([getattr(r, f) for r in rs]) for f in ("per_task", "rate")}
        for k, rs in results.items()
    }
    for (burst, worker), runs in results.items():
        if worker in skipped:
            table.add(database=db, burst=burst, worker=f"{worker.label}: {WAKE_MISSING}")
            continue
        once = "; ".join(sorted({r.once for r in runs if r.once}))
        if once:
            report.failed.append(f"{db} burst {burst} {worker.label}: {once}")
        errors = [r.error for r in runs if r.error]
        target, passed = "", None
        ours, polled = medians[burst, worker]["per_task"], medians[burst, BURST_POLL]["per_task"]
        if worker is BURST_PUSH and ours is not None and polled is not None:
            target = f"statements/task <= polling's + {HERD_BOUND:g}"
            passed = ours <= polled + HERD_BOUND
        table.add(
            database=db,
            burst=burst,
            worker=worker.label,
            per_task=errors[0] if errors else ours,
            rate=medians[burst, worker]["rate"],
            runs=f"{len(runs) - len(errors)}/{len(runs)}",
            once=f"NO: {once}" if once else "yes",
            target=target,
            ok=verdict(passed),
        )


def rows_for(
    report: Report, db: str, results: dict[str, list[Any]], skipped: dict[str, str]
) -> None:
    """This database's rows of both tables, from the runs of every round."""

    def key(kind: str, worker: Worker) -> str:
        return f"{db} {kind} {worker.label}"

    latency_rows(
        report,
        db,
        {w: results[key("latency", w)] for w in LATENCY_WORKERS},
        {w: skipped[key("latency", w)] for w in LATENCY_WORKERS if key("latency", w) in skipped},
    )
    idle_rows(report, db, {w: results[key("idle", w)] for w in IDLE_WORKERS})
    bursts = {(b, w): f"{db} burst {b} {w.label}" for b in BURSTS for w in (BURST_PUSH, BURST_POLL)}
    burst_rows(
        report,
        db,
        {k: results[name] for k, name in bursts.items()},
        {w for (_, w), name in bursts.items() if name in skipped},
    )


# -- main ---------------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="one round, 10 s runs")
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    p.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    p.add_argument(
        "--rate", type=float, default=5.0, help="tasks enqueued per second (%(default)s)"
    )
    p.add_argument(
        "--seconds", type=float, help="enqueueing time per run, s (default 30, quick 10)"
    )
    p.add_argument("--idle", type=float, help="idle counting window, s (default 30, quick 10)")
    # PostgreSQL (15) sends an idle backend's counts to pg_stat_database up to 10 s late: a
    # shorter settle counted the start-up's transactions inside the window.
    p.add_argument("--settle", type=float, default=12.0, help="idle: wait before counting, s")
    p.add_argument("--burst", type=int, help="tasks per burst (default 10,000, quick 2,000)")
    p.add_argument("--repeat", type=int, help="runs per row, median reported (default 3)")
    p.add_argument("--timeout", type=float, default=60.0, help="wait for the last tasks, s")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    p.add_argument("--json", metavar="PATH", help="also write the tables as JSON")
    options = p.parse_args()
    options.repeat = options.repeat or (1 if options.quick else 3)
    options.seconds = options.seconds or (10.0 if options.quick else 30.0)
    options.idle = options.idle or (10.0 if options.quick else 30.0)
    options.burst = options.burst or (2000 if options.quick else 10000)
    for name in ("rate", "seconds", "idle", "burst"):
        if not getattr(options, name) > 0:
            p.error(f"--{name} must be more than 0")
    if options.repeat < 1:
        p.error("--repeat must be at least 1")
    return options


Peers = list[tuple[str, Callable[[], Latency | Idle | Burst]]]


def peers_of(database: Database, options: argparse.Namespace, logs: Path, wake: bool) -> Peers:
    """This database's latency and idle runs, named "<database> <kind> <worker>"."""

    def latency(worker: Worker) -> Callable[[], Latency]:
        def run() -> Latency:
            if worker.wake and not wake:
                raise Skip(WAKE_MISSING)
            return latency_run(database, worker, options, logs)

        return run

    def idle(worker: Worker) -> Callable[[], Idle]:
        return lambda: idle_run(database, worker, options, logs)

    def burst(worker: Worker, rate: float) -> Callable[[], Burst]:
        def run() -> Burst:
            if worker.wake and not wake:
                raise Skip(WAKE_MISSING)
            return burst_run(database, worker, rate, options, logs)

        return run

    return [
        *((f"{database.name} latency {w.label}", latency(w)) for w in LATENCY_WORKERS),
        *((f"{database.name} idle {w.label}", idle(w)) for w in IDLE_WORKERS),
        *(
            (f"{database.name} burst {b} {w.label}", burst(w, rate))
            for b, rate in BURSTS.items()
            for w in (BURST_PUSH, BURST_POLL)
        ),
    ]


def main() -> int:
    options = arguments()
    trap_signals()
    report = Report("latency")
    every = f"median of {options.repeat}, CONN_MAX_AGE=600, 1 process x 1 thread"
    latency = report.table(
        f"Enqueue to start, ms: noop tasks at {options.rate:g}/s for {options.seconds:g} s, "
        f"one transaction each ({every})",
        LATENCY_COLUMNS,
    )
    latency.notes += [
        "started_at - enqueued_at of each task (one clock); p50/p95/max per run, median of runs;",
        "exactly once = every result SUCCESSFUL with one worker id, each task's run recorded once.",
    ]
    idle = report.table(
        f"Idle database load: empty queue, {options.idle:g} s after {options.settle:g} s ({every})",
        IDLE_COLUMNS,
    )
    idle.notes += [
        "Django statements = what every connection of the worker's processes executed "
        "(execute_wrapper);",
        "counted by the database = SQLite: every statement the library ran for them, COMMIT "
        "included; PostgreSQL: commits + rollbacks in the scratch database (pg_stat_database).",
    ]
    bursts = report.table(
        f"A burst: {options.burst:,} noop tasks enqueued at once, ours {' '.join(BURST_SHAPE)} "
        f"(median of {options.repeat}, CONN_MAX_AGE=600)",
        BURST_COLUMNS,
    )
    bursts.notes += [
        "statements/task = every statement the Django connections of the producer (its "
        "inserts) and the worker (claims, those that found nothing included, and saves) "
        "executed, per task;",
        "each ring wakes at most one idle thread per process (a thread that claims wakes the "
        "next): push may add one empty claim per task per other process, never one per idle "
        "thread.",
    ]
    wake = wake_supported()
    log(f"--wake: {'supported' if wake else 'not supported by this worker'}")
    folder = Path(tempfile.mkdtemp(prefix="latency-bench-"))
    logs = folder / "logs"
    code = 0
    try:
        write_project(folder, {"producer.py": PRODUCER})
        logs.mkdir()
        with contextlib.ExitStack() as stack:
            databases: list[Database] = []
            if not options.no_sqlite:
                databases.append(sqlite_database(folder, (AGE,), APPS))
            if not options.no_postgres:
                pg = stack.enter_context(postgres_database(folder, (AGE,), APPS))
                if isinstance(pg, str):
                    log(f"postgresql: skipped: {pg}")
                    latency.add(database="postgresql", worker=f"skipped: {pg}")
                else:
                    databases.append(pg)
            peers: Peers = []
            for database in databases:
                log(f"{database.name}: migrating")
                database.django("-m", "django", "migrate", "--noinput", "-v", "0", age=AGE)
                peers += peers_of(database, options, logs, wake)
            results, skipped = rounds(
                REAPER, options.repeat, peers, lambda r: r.describe(), "measured"
            )
            for database in databases:
                rows_for(report, database.name, results, skipped)
    except KeyboardInterrupt:
        log("interrupted: stopping workers, removing the scratch database and folder")
        latency.notes.append("INTERRUPTED")
        code = 130
    finally:
        REAPER.kill_all()
        if options.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return report.finish(options.json) or code


if __name__ == "__main__":
    sys.exit(main())
