"""Our task worker (``python -m backends.taskworker``) against django-tasks-db's ``db_worker``.

Why this exists
---------------
The console ships its own django-tasks worker: a prefork master with processes x threads of
django-tasks-db's own ``Worker`` loop, with persistent, health-checked connections forced on
(``CONN_MAX_AGE=None``) whatever the settings say. This measures whether that pays off against
the reference, ``manage.py db_worker``, in ONE run, on the SAME database, with db_worker both at
Django's default ``CONN_MAX_AGE=0`` (a new connection for every task) and with persistent
connections (``CONN_MAX_AGE=600``), and checks that every task ran exactly once. Targets:

* PostgreSQL, noop tasks: ours with 1 process >= 3x one db_worker at ``CONN_MAX_AGE=0``;
* noop, both databases: K processes x 1 thread never slower than K db_workers (K = 1, 2) at
  the same ``CONN_MAX_AGE=0``;
* noop, both databases: K processes x 1 thread >= 1.5x K db_workers with persistent
  connections (``CONN_MAX_AGE=600``): the same tasks at a time and connections kept, so
  what is left is the cost per task (bench/taskcost.py breaks it down);
* 50 ms tasks: 1 x 8 >= 6x one db_worker, 2 x 8 >= 10x;
* PostgreSQL, noop: ours' best >= 60 % of pgbench's ceiling / 2 (a task is two write
  transactions), pgbench's default TPC-B-like script run in the same run on the same server
  at 2, 4 and 8 clients, the best of them;
* idle (empty queue, default ``--interval`` of 1 s): ours under 1 % of one core.

What it does
------------
* Databases: SQLite (a file in a temporary folder, ``OPTIONS={"timeout": 20}``; with
  ``--sqlite-journal wal`` or ``both`` also ``init_command`` WAL, as ``--check`` suggests,
  its rows named ``sqlite_wal``) and PostgreSQL
  on 127.0.0.1:5432 (trust auth, user postgres) in a scratch database ``prodserver_bench_<pid>``
  created here and dropped at the end. No server or no psycopg: a skip row says why.
* A throwaway project with a tiny app ``benchapp`` (tasks ``noop(n)`` and ``sleep50(n)``) and one
  settings module per ``CONN_MAX_AGE``, migrated with ``python -m django migrate`` (the project
  of ``bench/taskproject.py``, shared with ``bench/latency.py``).
* Each run empties the result table, enqueues the workload with the real ``.enqueue()`` in one
  transaction, then starts the worker(s) and polls the number of finished tasks every 50 ms
  until all are done. The main number is the steady throughput between 10 % and 90 % done.
* Exactly once, every row: each task appends its number to a runs file (``O_APPEND``, one
  small write, so the database work of a task stays what it was), and after the run every
  result must be SUCCESSFUL with exactly one worker id, and the runs file must hold each
  number once. A row failing this says so in its ``exactly once`` cell and the script exits 1.
* Workers: ``db_worker --no-reload --no-startup-delay --interval 0.1`` x K (K processes, at
  ``CONN_MAX_AGE`` 0 and 600), ours ``--processes K --threads T`` (1 x 1, 2 x 1, 1 x 8, 2 x 8)
  with ``--no-startup-delay --interval 0.1``, output to a log file, each in its own session,
  stopped at the end of its run and killed on any exit, Ctrl-C included.
* Idle overhead: ours 1 x 2 and 2 x 8, and one db_worker, on an empty queue at the default
  ``--interval`` (1 s): after 5 s of settling (start-up done), the CPU time of the whole
  process tree over ``--idle`` seconds, as % of a core. The database's CPU is not counted.

Run from the repository root (about 12 minutes on a quiet 2-core machine, 31 at a load
average of 8-10; ``--quick``, one run per row, a third of that)::

    .venv/bin/python bench/taskworker.py --json /tmp/taskworker.json
    .venv/bin/python bench/taskworker.py --quick --no-postgres

The table goes to stdout, progress to stderr. On a busy machine the ratios move by tens of
percent: compare the columns of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import taskproject
from bench.harness import (
    Column,
    Reaper,
    Report,
    Table,
    log,
    median,
    terminate,
    trap_signals,
    tree_cpu,
)
from bench.taskproject import (
    Database,
    db_worker_argv,
    ours_argv,
    postgres_database,
    sqlite_database,
    write_project,
)

POLL = 0.05
AGES = (0, 600)  # db_worker's CONN_MAX_AGE: Django's default, and persistent connections

# -- the bulk enqueue (the project itself: bench/taskproject.py) --------------------------------

ENQUEUE = """\
import sys

import django

django.setup()

from django.db import transaction

from benchapp import tasks

task, count = getattr(tasks, sys.argv[1]), int(sys.argv[2])
with transaction.atomic():
    for n in range(count):
        task.enqueue(n)
"""

# -- workers ------------------------------------------------------------------------------------

REAPER = Reaper()  # every worker started: killed on any exit


@dataclass(frozen=True)
class Config:
    worker: str  # "db_worker" or "ours"
    processes: int
    threads: int = 1
    age: int = 0  # CONN_MAX_AGE in the settings (ours forces persistent connections anyway)

    @property
    def label(self) -> str:
        if self.worker == "db_worker":
            return f"db_worker x {self.processes}, CONN_MAX_AGE={self.age}"
        return f"ours {self.processes} x {self.threads}"

    def argvs(self, interval: float | None) -> list[list[str]]:
        every = [] if interval is None else ["--interval", str(interval)]
        if self.worker == "db_worker":
            return [db_worker_argv(*every)] * self.processes
        return [
            ours_argv(
                f"--processes={self.processes}",
                f"--threads={self.threads}",
                "--queue-name=default",
                "--no-startup-delay",
                *every,
            )
        ]


def start(
    database: Database, config: Config, interval: float | None, log: Path
) -> list[subprocess.Popen[bytes]]:
    return taskproject.start(
        REAPER, database, config.argvs(interval), database.env(config.age), log
    )


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Run:
    tasks: int
    done: int = 0
    wall: float = float("nan")  # worker start -> all finished
    steady: float = float("nan")  # tasks/s between 10 % and 90 % done
    cpu_ms: float = float("nan")  # worker CPU per task, steady window
    error: str = ""  # the run did not finish
    once: str = ""  # what the exactly-once check found wrong


@dataclass(frozen=True)
class Mark:
    """The state at the first poll past a threshold: time, tasks done, CPU seconds used."""

    at: float
    done: int
    worker_cpu: float  # user + system of the worker trees

    @classmethod
    def take(cls, at: float, done: int, procs: list[subprocess.Popen[bytes]]) -> Mark:
        return cls(at, done, sum(tree_cpu([p.pid for p in procs]).values()))


def throughput(
    database: Database, config: Config, task: str, count: int, log: Path, timeout: float
) -> Run:
    database.reset()
    database.django("enqueue.py", task, str(count))
    run = Run(count)
    lo: Mark | None = None
    hi: Mark | None = None
    t0 = time.monotonic()
    procs = start(database, config, 0.1, log)
    try:
        while True:
            ok, failed = database.finished()
            now = time.monotonic() - t0
            done = run.done = ok + failed
            if lo is None and done >= 0.1 * count:
                lo = Mark.take(now, done, procs)
            if hi is None and done >= 0.9 * count:
                hi = Mark.take(now, done, procs)
            if done >= count:
                run.wall = now
                break
            if now > timeout:
                run.error = f"timeout after {timeout:.0f} s ({done}/{count} done)"
                break
            if all(p.poll() is not None for p in procs):
                run.error = f"worker exited ({done}/{count} done), see {log}"
                break
            time.sleep(POLL)
    finally:
        terminate(procs)
    if lo and hi and hi.at > lo.at and hi.done > lo.done:
        run.steady = (hi.done - lo.done) / (hi.at - lo.at)
        run.cpu_ms = 1000 * (hi.worker_cpu - lo.worker_cpu) / (hi.done - lo.done)
    run.once = database.exactly_once(count)
    return run


def idle_cpu(database: Database, config: Config, settle: float, span: float, log: Path) -> float:
    """% of one core used by the worker trees on an empty queue, default interval."""
    database.reset()
    procs = start(database, config, None, log)
    pids = [p.pid for p in procs]
    try:
        time.sleep(settle)
        before = tree_cpu(pids)
        t0 = time.monotonic()
        time.sleep(span)
        after = tree_cpu(pids)
        elapsed = time.monotonic() - t0
    finally:
        terminate(procs)
    return sum(100.0 * (after[pid] - before.get(pid, 0.0)) / elapsed for pid in after)


# -- the plan -----------------------------------------------------------------------------------

REFERENCE = [Config("db_worker", k, 1, age) for age in AGES for k in (1, 2)]
OURS = [Config("ours", 1), Config("ours", 2), Config("ours", 1, 8), Config("ours", 2, 8)]
CONFIGS = [*REFERENCE, *OURS]
IDLE_CONFIGS = [Config("db_worker", 1), Config("ours", 1, 2), Config("ours", 2, 8)]
WORKLOADS = {"noop": "noop", "sleep50": "50 ms"}

ROWS = [
    Column("database", "database"),
    Column("workload", "workload"),
    Column("worker", "worker"),
    Column("tasks", "tasks", right=True),
    Column("wall", "wall s", "{:.2f}", right=True),
    Column("rate", "tasks/s (steady)", "{:,.1f}", right=True),
    Column("ratio", "vs db_worker x 1, CONN_MAX_AGE=0", "{:.2f}x", right=True),
    Column("ratio600", "vs db_worker x 1, CONN_MAX_AGE=600", "{:.2f}x", right=True),
    Column("same", "vs db_worker x K, CONN_MAX_AGE=600 (ours K x 1)", "{:.2f}x", right=True),
    Column("cpu", "cpu ms/task", "{:.2f}", right=True),
    Column("once", "exactly once"),
    Column("target", "target"),
    Column("ok", "ok"),
]
WIDE = [
    Column("database", "database"),
    Column("workload", "workload"),
    *(
        Column(f"{c.worker}{c.processes}x{c.threads}@{c.age}", title, "{:,.0f}", right=True)
        for c, title in zip(
            CONFIGS,
            [
                "db_worker x 1",
                "db_worker x 2",
                "db_worker x 1, persistent",
                "db_worker x 2, persistent",
                "ours 1 x 1",
                "ours 2 x 1",
                "ours 1 x 8",
                "ours 2 x 8",
            ],
            strict=True,
        )
    ),
]


def key(config: Config) -> str:
    return f"{config.worker}{config.processes}x{config.threads}@{config.age}"


def target_for(
    db: str, task: str, config: Config, steady: dict[Config, float | None]
) -> list[tuple[str, bool]]:
    """The targets a row of ours has, each with whether it held."""
    rate = steady[config]
    one = steady[Config("db_worker", 1)]
    if config.worker != "ours" or rate is None or one is None:
        return []
    found = []
    if config.threads == 1 and task == "noop":
        if db == "postgresql" and config.processes == 1:
            found.append((">= 3x db_worker", rate >= 3 * one))
        same = steady[Config("db_worker", config.processes)]
        found.append((f">= db_worker x {config.processes}", same is not None and rate >= same))
        persistent = steady[Config("db_worker", config.processes, 1, 600)]
        found.append(
            (
                f">= {PERSISTENT_TARGET}x db_worker x {config.processes} persistent",
                persistent is not None and rate >= PERSISTENT_TARGET * persistent,
            )
        )
    if task == "sleep50" and config.threads == 8:
        need = 6 if config.processes == 1 else 10
        found.append((f">= {need}x db_worker", rate >= need * one))
    return found


def equal_concurrency(config: Config, steady: dict[Config, float | None]) -> float | None:
    """Ours K x 1 against K db_workers with persistent connections: the same number of
    tasks at a time, the same connections kept."""
    rate = steady[config]
    if config.worker != "ours" or config.threads != 1 or rate is None:
        return None
    peer = steady[Config("db_worker", config.processes, 1, 600)]
    return rate / peer if peer else None


def bench_database(
    database: Database,
    options: argparse.Namespace,
    report: Report,
    rows: Table,
    wide: Table,
    best: dict[str, float | None],
) -> None:
    log(f"{database.name}: migrating")
    database.django("-m", "django", "migrate", "--noinput", "-v", "0")
    logs = database.folder / f"logs-{database.name}"
    logs.mkdir()
    for task, count in (("noop", options.noop), ("sleep50", options.sleep)):
        runs: dict[Config, list[Run]] = {c: [] for c in CONFIGS}
        for attempt in range(options.repeat):  # interleaved: drift hits every config alike
            for config in CONFIGS:
                log_file = logs / f"{task}-{key(config)}.log"
                run = throughput(database, config, task, count, log_file, options.timeout)
                runs[config].append(run)
                log(
                    f"  {task:<8}{config.label:<36} #{attempt + 1}: "
                    + (run.error or f"wall {run.wall:6.2f} s, steady {run.steady:7.1f}/s, ")
                    + f"worker cpu {run.cpu_ms:5.2f} ms/task"
                    + (f"; NOT EXACTLY ONCE: {run.once}" if run.once else "")
                )
        steady = {c: median([r.steady for r in rs]) for c, rs in runs.items()}
        line: dict[str, Any] = {"database": database.name, "workload": WORKLOADS[task]}
        for config in CONFIGS:
            rs = runs[config]
            errors = [r.error for r in rs if r.error]
            once = "; ".join(sorted({r.once for r in rs if r.once}))
            if once:
                report.failed.append(f"{database.name} {task} {config.label}: {once}")
            targets = target_for(database.name, task, config, steady)
            rate = steady[config]
            one, one600 = steady[Config("db_worker", 1)], steady[Config("db_worker", 1, 1, 600)]
            line[key(config)] = rate if not errors else "error"
            rows.add(
                database=database.name,
                workload=WORKLOADS[task],
                worker=config.label,
                tasks=count,
                wall=median([r.wall for r in rs]),
                rate=errors[0] if errors else rate,
                ratio=rate / one if rate and one else None,
                ratio600=rate / one600 if rate and one600 else None,
                same=equal_concurrency(config, steady),
                cpu=median([r.cpu_ms for r in rs]),
                once=f"NO: {once}" if once else "yes",
                target="; ".join(text for text, _ in targets),
                ok="; ".join("yes" if passed else "NO" for _, passed in targets),
            )
        wide.add(**line)
        if task == "noop":
            best[database.name] = max((r for c in OURS if (r := steady[c])), default=None)
    for config in IDLE_CONFIGS:
        log_file = logs / f"idle-{key(config)}.log"
        cpu = idle_cpu(database, config, options.settle, options.idle, log_file)
        log(f"  idle {config.label}: {cpu:.2f}% of a core")
        ours = config.worker == "ours"
        rows.add(
            database=database.name,
            workload="idle, interval 1 s",
            worker=config.label,
            rate=f"cpu {cpu:.2f}%",
            target="< 1% core" if ours else "",
            ok=("yes" if cpu < 1.0 else "NO") if ours else "",
        )


# -- pgbench: the server's own ceiling on this machine -------------------------------------------

JOURNALS = {"delete": ("delete",), "wal": ("wal",), "both": ("delete", "wal")}
PERSISTENT_TARGET = 1.5  # ours K x 1 against K db_workers with persistent connections
PGBENCH_TARGET = 0.60  # best PostgreSQL noop against pgbench's transactions/s / 2
PGBENCH_CLIENTS = (2, 4, 8)


def pgbench_binary() -> str | None:
    """The newest server's pgbench, or one on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), key=lambda p: p.parts[-3])
    versions = sorted(found, key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return str(versions[-1]) if versions else shutil.which("pgbench")


def pgbench(database: Database, seconds: float) -> list[tuple[int, float]] | str:
    """pgbench's default TPC-B-like script (per transaction: three single-row UPDATEs, a
    SELECT and an INSERT; a task's claim and save are two one-row UPDATE transactions) on a
    scale-1 data set in the scratch database: transactions/s at a few client counts, or why
    not. A string says why it could not run."""
    binary = pgbench_binary()
    if binary is None:
        return "no pgbench (/usr/lib/postgresql/*/bin or PATH)"
    name = str(database.query("SELECT current_database()")[0][0])
    base = [binary, "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
    subprocess.run([*base, "-i", "-q", "-s", "1", name], check=True, capture_output=True)
    found = []
    for clients in PGBENCH_CLIENTS:
        argv = [*base, "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1))]
        done = subprocess.run(
            [*argv, "-T", str(round(seconds)), name], capture_output=True, text=True, check=True
        )
        tps = [line for line in done.stdout.splitlines() if line.startswith("tps = ")]
        if not tps:
            return f"pgbench said no tps: {done.stdout[-200:]!r}"
        found.append((clients, float(tps[-1].split()[2])))
    database.query(
        "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers"
    )
    return found


def bench_pgbench(
    database: Database, options: argparse.Namespace, rows: Table, best: float | None
) -> None:
    log("postgresql: pgbench")
    found = pgbench(database, options.pgbench)
    if isinstance(found, str):
        rows.add(database="postgresql", workload="pgbench", worker=f"skipped: {found}")
        return
    for clients, tps in found:
        rows.add(
            database="postgresql",
            workload="pgbench",
            worker=f"pgbench TPC-B-like, {clients} clients",
            rate=tps,
        )
    ceiling = max(tps for _, tps in found) / 2  # two write transactions per task
    rows.add(
        database="postgresql",
        workload="noop",
        worker="best of ours vs pgbench / 2",
        rate=best,
        target=f">= {PGBENCH_TARGET:.0%} of {ceiling:,.0f}/s"
        + (f" (is {best / ceiling:.0%})" if best else ""),
        ok="yes" if best and best >= PGBENCH_TARGET * ceiling else "NO",
    )


# -- main ---------------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="one run per row, shorter idle window")
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    p.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    p.add_argument(
        "--sqlite-journal",
        choices=sorted(JOURNALS),
        default="delete",
        help="SQLite's journal: Django's default (delete), WAL as --check suggests, or both",
    )
    p.add_argument("--noop", type=int, default=600, help="noop tasks per run (%(default)s)")
    p.add_argument("--sleep", type=int, default=120, help="50 ms tasks per run (%(default)s)")
    p.add_argument("--idle", type=float, help="idle CPU window, s (default 10, quick 5)")
    p.add_argument("--settle", type=float, default=5.0, help="idle: wait before measuring, s")
    p.add_argument("--repeat", type=int, help="runs per row, median reported (default 3)")
    p.add_argument("--timeout", type=float, default=300.0, help="give up on a run after, s")
    p.add_argument("--pgbench", type=float, default=10.0, help="pgbench: seconds per client count")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    p.add_argument("--json", metavar="PATH", help="also write the tables as JSON")
    options = p.parse_args()
    options.repeat = options.repeat or (1 if options.quick else 3)
    options.idle = options.idle or (5.0 if options.quick else 10.0)
    return options


def main() -> int:
    options = arguments()
    trap_signals()
    report = Report("taskworker")
    caption = (
        f"{options.noop:,} noop / {options.sleep:,} x 50 ms tasks per run, "
        f"median of {options.repeat}, --interval 0.1"
    )
    rows = report.table(f"Task workers, every run ({caption})", ROWS)
    wide = report.table(f"Task workers, steady tasks/s ({caption})", WIDE)
    rows.notes += [
        "tasks/s (steady) = between 10 % and 90 % done; wall s = worker start to all done;",
        "cpu ms/task = CPU of the worker processes per task in the steady window;",
        "exactly once = every result SUCCESSFUL with one worker id, each task's run recorded once.",
        "vs db_worker x K = ours K x 1 against K db_workers, CONN_MAX_AGE=600: equal concurrency;",
        "pgbench = its default TPC-B-like script, same run, same server (see pgbench()).",
    ]
    folder = Path(tempfile.mkdtemp(prefix="taskworker-bench-"))
    code = 0
    best: dict[str, float | None] = {}  # database -> ours' best noop tasks/s
    try:
        write_project(folder, {"enqueue.py": ENQUEUE})
        for journal in () if options.no_sqlite else JOURNALS[options.sqlite_journal]:
            database = sqlite_database(folder, AGES, wal=journal == "wal")
            bench_database(database, options, report, rows, wide, best)
        if not options.no_postgres:
            with postgres_database(folder, AGES) as pg:
                if isinstance(pg, str):
                    log(f"postgresql: skipped: {pg}")
                    rows.add(database="postgresql", worker=f"skipped: {pg}")
                else:
                    bench_database(pg, options, report, rows, wide, best)
                    bench_pgbench(pg, options, rows, best.get("postgresql"))
    except KeyboardInterrupt:
        log("interrupted: stopping workers, removing the scratch database and folder")
        rows.notes.append("INTERRUPTED: rows so far")
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
