"""Our task worker (``python -m backends.taskworker``) against django-tasks-db's ``db_worker``.

Why this exists
---------------
The console ships its own django-tasks worker: a prefork master with processes x threads of
django-tasks-db's own ``Worker`` loop, with persistent, health-checked connections forced on
(``CONN_MAX_AGE=None``) whatever the settings say. This measures whether that pays off against
the reference, ``manage.py db_worker``, in ONE run, on the SAME database, with Django's default
``CONN_MAX_AGE=0`` (with it db_worker opens a new connection for every task). Targets:

* PostgreSQL, noop tasks: ours with 1 process >= 3x one db_worker;
* noop, both databases: K processes x 1 thread never slower than K db_workers (K = 1, 2);
* 50 ms tasks: 1 x 8 >= 6x one db_worker, 2 x 8 >= 10x;
* idle (empty queue, default ``--interval`` of 1 s): ours under 1 % of one core.

What it does
------------
* Databases: SQLite (a file in a temporary folder, ``OPTIONS={"timeout": 20}``) and PostgreSQL
  on 127.0.0.1:5432 (trust auth, user postgres) in a scratch database ``prodserver_bench_<pid>``
  created here and dropped at the end. No server or no psycopg: a skip row says why.
* A throwaway settings module and a tiny app ``benchapp`` (tasks ``noop`` and ``sleep50``) are
  written to the temporary folder and migrated with ``python -m django migrate``.
* Each run empties the result table, enqueues the workload with the real ``.enqueue()`` in one
  transaction (a helper script), then starts the worker(s) and polls the number of finished
  tasks every 50 ms over a direct connection until all are done. Wall time counts from the
  worker start (start-up included); the main number is the steady throughput between 10 % and
  90 % completion.
* Workers: ``db_worker --no-reload --no-startup-delay --interval 0.1 --queue-name default`` x K
  (K separate processes), ours ``--processes K --threads 1`` (K = 1, 2) and, for 50 ms tasks,
  ``1 x 8`` and ``2 x 8``, with ``--no-startup-delay --interval 0.1``. Both at their default
  verbosity, output to a log file. Every worker runs in its own session; its process group is
  stopped at the end of its run and killed on any exit, Ctrl-C included.
* Idle overhead: ours 1 x 2 and 2 x 8, and one db_worker, on an empty queue: after 3 s of
  settling, the CPU time (user + system) of the whole process tree over 20 s, as % of a core,
  at the default ``--interval`` (1 s, the target) and at 0.1 s (information). The database
  server's own CPU is not counted.

Run from the repository root (about 11 minutes; ``--repeat 3`` about 35; ``--quick`` 3)::

    .venv/bin/python bench/taskworker.py
    .venv/bin/python bench/taskworker.py --quick --no-postgres
    .venv/bin/python bench/taskworker.py --repeat 3          # median of 3 runs per row

The table goes to stdout, progress to stderr. The machine should be otherwise idle: on a busy
machine the ratios move by tens of percent.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import psutil

ROOT = Path(__file__).resolve().parent.parent
TABLE = "django_tasks_database_dbtaskresult"
POLL = 0.05
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"

# -- the throwaway project ----------------------------------------------------------------------

SETTINGS = """\
import importlib.util

SECRET_KEY = "bench"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = (
    ["django_tasks"] if importlib.util.find_spec("django.tasks") is None else []
) + ["django_tasks_db", "benchapp"]
TASKS = {{"default": {{"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}}}
DATABASES = {{"default": {database!r}}}
"""

TASKS = """\
import time

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task


@task()
def noop():
    return None


@task()
def sleep50():
    time.sleep(0.05)
"""

ENQUEUE = """\
import sys

import django

django.setup()

from django.db import transaction

from benchapp import tasks

task, count = getattr(tasks, sys.argv[1]), int(sys.argv[2])
with transaction.atomic():
    for _ in range(count):
        task.enqueue()
"""

MANAGE = """\
import sys

from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""


def write_project(folder: Path) -> None:
    (folder / "benchapp").mkdir()
    (folder / "benchapp" / "__init__.py").write_text("")
    (folder / "benchapp" / "tasks.py").write_text(TASKS)
    (folder / "enqueue.py").write_text(ENQUEUE)
    (folder / "manage.py").write_text(MANAGE)


class Conn(Protocol):
    def execute(self, sql: str, /) -> Any: ...

    def close(self) -> None: ...


@dataclass
class Database:
    """One database under test: its settings module and a direct connection for polling."""

    name: str
    folder: Path
    module: str
    connect: Callable[[], Conn]
    truncate: str
    conn: Conn | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = self.module
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.folder), str(ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def django(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, *args],
            cwd=self.folder,
            env=self.env(),
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.conn is None:
            self.conn = self.connect()
        for attempt in range(50):  # SQLite: a writer may hold the lock for a moment
            try:
                cursor = self.conn.execute(sql)
                return list(cursor.fetchall()) if cursor.description else []
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.01)
        return []

    def finished(self) -> tuple[int, int]:
        counts = dict(
            self.query(
                f"SELECT status, COUNT(*) FROM {TABLE} "
                "WHERE status IN ('SUCCESSFUL', 'FAILED') GROUP BY status"
            )
        )
        return int(counts.get("SUCCESSFUL", 0)), int(counts.get("FAILED", 0))

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


def sqlite_database(folder: Path) -> Database:
    path = folder / "bench.sqlite3"
    settings = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {"timeout": 20},
    }
    (folder / "settings_sqlite.py").write_text(SETTINGS.format(database=settings))

    def connect() -> Conn:
        conn = sqlite3.connect(path, timeout=20, isolation_level=None)
        return conn

    return Database("sqlite", folder, "settings_sqlite", connect, f"DELETE FROM {TABLE}")


@contextlib.contextmanager
def postgres_database(folder: Path) -> Iterator[Database | str]:
    """A scratch database, dropped on the way out; a string says why there is none."""
    try:
        import psycopg
    except ImportError:
        yield "psycopg not installed (.venv/bin/pip install 'psycopg[binary]')"
        return
    name = f"prodserver_bench_{os.getpid()}"
    dsn = f"host={PG_HOST} port={PG_PORT} user={PG_USER}"
    try:
        admin = psycopg.connect(f"{dsn} dbname=postgres", autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        yield f"no server at {PG_HOST}:{PG_PORT}: {str(e).strip().splitlines()[0]}"
        return
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        settings = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": PG_USER,
            "HOST": PG_HOST,
            "PORT": str(PG_PORT),
        }
        (folder / "settings_postgres.py").write_text(SETTINGS.format(database=settings))

        def connect() -> Conn:
            return psycopg.connect(f"{dsn} dbname={name}", autocommit=True)

        database = Database("postgresql", folder, "settings_postgres", connect, f"TRUNCATE {TABLE}")
        try:
            yield database
        finally:
            database.close()
    finally:
        with contextlib.suppress(psycopg.Error):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# -- workers ------------------------------------------------------------------------------------

LIVE: set[subprocess.Popen[bytes]] = set()  # every worker started and not yet reaped


@dataclass(frozen=True)
class Config:
    worker: str  # "db_worker" or "ours"
    processes: int
    threads: int = 1

    @property
    def label(self) -> str:
        if self.worker == "db_worker":
            return f"x {self.processes}"
        return f"{self.processes} x {self.threads}"

    def argvs(self, interval: float | None) -> list[list[str]]:
        every = [] if interval is None else ["--interval", str(interval)]
        if self.worker == "db_worker":
            one = [sys.executable, "manage.py", "db_worker", "--no-reload", "--no-startup-delay"]
            return [[*one, *every, "--queue-name", "default"]] * self.processes
        return [
            [
                sys.executable,
                "-m",
                "backends.taskworker",
                f"--processes={self.processes}",
                f"--threads={self.threads}",
                "--queue-name=default",
                "--no-startup-delay",
                *every,
            ]
        ]


def start(database: Database, config: Config, interval: float | None, log: Path) -> list[int]:
    pids = []
    with log.open("ab") as out:
        for argv in config.argvs(interval):
            proc = subprocess.Popen(
                argv,
                cwd=database.folder,
                env=database.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            LIVE.add(proc)
            pids.append(proc.pid)
    return pids


def stop(pids: list[int], timeout: float = 15.0) -> None:
    """SIGTERM to each group, then SIGKILL to what is left after ``timeout``."""
    procs = [p for p in LIVE if p.pid in pids]
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group: stray children too
        proc.wait()
        LIVE.discard(proc)


def kill_all() -> None:
    for proc in list(LIVE):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(5)
        LIVE.discard(proc)


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Run:
    tasks: int
    done: int = 0
    failed: int = 0
    wall: float = float("nan")  # worker start -> all finished
    first: float = float("nan")  # worker start -> first finished
    steady: float = float("nan")  # tasks/s between 10 % and 90 % done
    cpu_ms: float = float("nan")  # worker CPU per task, steady window
    machine_cores: float = float("nan")  # CPUs busy machine-wide (the database's too), steady
    workers_seen: int = 0
    error: str = ""


@dataclass(frozen=True)
class Mark:
    """The state at the first poll past a threshold: time, tasks done, CPU seconds used."""

    at: float
    done: int
    worker_cpu: float  # user + system of the worker trees
    machine_busy: float  # all CPUs, everything but idle and iowait

    @classmethod
    def take(cls, at: float, done: int, pids: list[int]) -> Mark:
        total = psutil.cpu_times()
        busy = sum(total) - total.idle - getattr(total, "iowait", 0.0)
        return cls(at, done, sum(tree_cpu(pids).values()), busy)


def throughput(
    database: Database, config: Config, task: str, count: int, log: Path, timeout: float
) -> Run:
    database.query(database.truncate)
    database.django("enqueue.py", task, str(count))
    run = Run(count)
    lo: Mark | None = None
    hi: Mark | None = None
    t0 = time.monotonic()
    pids = start(database, config, 0.1, log)
    try:
        while True:
            ok, failed = database.finished()
            now = time.monotonic() - t0
            done = run.done = ok + failed
            run.failed = failed
            if done and run.first != run.first:
                run.first = now
            if lo is None and done >= 0.1 * count:
                lo = Mark.take(now, done, pids)
            if hi is None and done >= 0.9 * count:
                hi = Mark.take(now, done, pids)
            if done >= count:
                run.wall = now
                break
            if now > timeout:
                run.error = f"timeout after {timeout:.0f} s ({done}/{count} done)"
                break
            if all(p.poll() is not None for p in LIVE if p.pid in pids):
                run.error = f"worker exited ({done}/{count} done), see {log}"
                break
            time.sleep(POLL)
    finally:
        stop(pids)
    if lo and hi and hi.at > lo.at and hi.done > lo.done:
        run.steady = (hi.done - lo.done) / (hi.at - lo.at)
        run.cpu_ms = 1000 * (hi.worker_cpu - lo.worker_cpu) / (hi.done - lo.done)
        run.machine_cores = (hi.machine_busy - lo.machine_busy) / (hi.at - lo.at)
    if not run.error:
        (seen,) = database.query(f"SELECT COUNT(DISTINCT worker_ids) FROM {TABLE}")[0]
        run.workers_seen = int(seen)
    if run.failed:
        run.error = f"{run.failed} task(s) FAILED, see {log}"
    return run


def tree_cpu(pids: list[int]) -> dict[int, float]:
    """user + system seconds of each process in the trees rooted at ``pids``."""
    seen: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    times = proc.cpu_times()
                    seen[proc.pid] = times.user + times.system
    return seen


def idle_cpu(
    database: Database,
    config: Config,
    interval: float | None,
    settle: float,
    span: float,
    log: Path,
) -> list[float]:
    """% of one core used by each process of the worker trees on an empty queue, root first."""
    database.query(database.truncate)
    pids = start(database, config, interval, log)
    try:
        time.sleep(settle)
        before = tree_cpu(pids)
        t0 = time.monotonic()
        time.sleep(span)
        after = tree_cpu(pids)
        elapsed = time.monotonic() - t0
    finally:
        stop(pids)
    return [100.0 * (after[pid] - before.get(pid, 0.0)) / elapsed for pid in after]


# -- the table ----------------------------------------------------------------------------------

HEADERS = (
    "database",
    "workload",
    "worker",
    "config",
    "tasks",
    "wall s",
    "tasks/s (steady)",
    "vs 1 db_worker",
    "cpu ms/task",
    "target",
    "ok",
)


@dataclass
class Table:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        self.rows.append(tuple(cells) + ("",) * (len(HEADERS) - len(cells)))
        if cells[-1] == "NO":
            self.misses.append(" ".join(c for c in cells[:4] if c))

    def render(self) -> str:
        rows = [HEADERS, *self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
        right = {4, 5, 6, 7, 8}

        def line(row: tuple[str, ...]) -> str:
            cells = (
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(HEADERS), rule, *(line(r) for r in self.rows)])


def ratio(value: float, reference: float) -> str:
    if value != value or reference != reference or reference <= 0:
        return "-"
    return f"{value / reference:.2f}x"


def judge(passed: bool | None) -> str:
    return "-" if passed is None else ("yes" if passed else "NO")


# -- the plan -----------------------------------------------------------------------------------

NOOP_CONFIGS = [
    Config("db_worker", 1),
    Config("db_worker", 2),
    Config("ours", 1),
    Config("ours", 2),
]
SLEEP_CONFIGS = [*NOOP_CONFIGS, Config("ours", 1, 8), Config("ours", 2, 8)]
IDLE_CONFIGS = [
    (Config("db_worker", 1), None),
    (Config("ours", 1, 2), None),
    (Config("ours", 2, 8), None),
    (Config("db_worker", 1), 0.1),
    (Config("ours", 1, 2), 0.1),
    (Config("ours", 2, 8), 0.1),
]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bench_database(database: Database, options: argparse.Namespace, table: Table) -> None:
    say(f"{database.name}: migrating")
    database.django("-m", "django", "migrate", "--noinput", "-v", "0")
    logs = database.folder / f"logs-{database.name}"
    logs.mkdir()
    for task, count, configs in (
        ("noop", options.noop, NOOP_CONFIGS),
        ("sleep50", options.sleep, SLEEP_CONFIGS),
    ):
        runs: dict[Config, list[Run]] = {c: [] for c in configs}
        for attempt in range(options.repeat):  # interleaved: drift hits every config alike
            for config in configs:
                log = logs / f"{task}-{config.worker}-{config.processes}x{config.threads}.log"
                run = throughput(database, config, task, count, log, options.timeout)
                runs[config].append(run)
                say(
                    f"  {task:<8}{config.worker:>10} {config.label:<7} #{attempt + 1}: "
                    + (
                        run.error
                        or f"wall {run.wall:6.2f} s, first done {run.first:5.2f} s, "
                        f"steady {run.steady:7.1f}/s, worker cpu {run.cpu_ms:5.2f} ms/task, "
                        f"machine {run.machine_cores:4.2f} cores busy, "
                        f"{run.workers_seen} worker ids"
                    )
                )
        steady = {c: median([r.steady for r in rs]) for c, rs in runs.items()}
        one = steady[Config("db_worker", 1)]
        for config in configs:
            rs = runs[config]
            errors = [r.error for r in rs if r.error]
            target, passed = target_for(database.name, task, config, steady)
            cells = [database.name, f"{task}", config.worker, config.label, f"{count:,}"]
            if errors:
                table.add(
                    *cells, "-", errors[0], "-", "-", target, judge(False if target else None)
                )
                continue
            rate = steady[config]
            table.add(
                *cells,
                f"{median([r.wall for r in rs]):.2f}",
                f"{rate:,.1f}",
                ratio(rate, one),
                f"{median([r.cpu_ms for r in rs]):.2f}",
                target or "-",
                judge(passed),
            )
    idle_reference: dict[float | None, float] = {}
    for config, interval in IDLE_CONFIGS:
        log = logs / f"idle-{config.worker}-{config.processes}x{config.threads}-{interval}.log"
        each = idle_cpu(database, config, interval, options.settle, options.idle, log)
        cpu, procs = sum(each), len(each)
        every = "1 s (default)" if interval is None else f"{interval} s"
        parts = ", ".join(f"{c:.2f}" for c in each)
        say(
            f"  idle {config.worker:>10} {config.label:<7} interval {every}: "
            f"{cpu:.2f}% of a core (per process, master first: {parts})"
        )
        if config.worker == "db_worker":
            idle_reference[interval] = cpu
        target = "< 1% core" if config.worker == "ours" and interval is None else ""
        table.add(
            database.name,
            f"idle, interval {every}",
            config.worker,
            config.label,
            f"{procs} proc",
            f"{options.idle:.0f}",
            f"cpu {cpu:.2f}%",
            ratio(cpu, idle_reference.get(interval, float("nan"))) + " cpu"
            if config.worker == "ours"
            else "-",
            "-",
            target or "-",
            judge(cpu < 1.0 if target else None),
        )


def median(values: list[float]) -> float:
    good = [v for v in values if v == v]
    return statistics.median(good) if good else float("nan")


def target_for(
    db: str, task: str, config: Config, steady: dict[Config, float]
) -> tuple[str, bool | None]:
    if config.worker != "ours":
        return "", None
    rate = steady[config]
    one = steady[Config("db_worker", 1)]
    if config.threads == 1 and task == "noop":
        same = steady[Config("db_worker", config.processes)]
        target = f">= db_worker x {config.processes}"
        passed = rate >= same
        if db == "postgresql" and config.processes == 1:
            target, passed = ">= 3x db_worker", rate >= 3 * one
        return target, passed
    if task == "sleep50" and config.threads == 8:
        need = 6 if config.processes == 1 else 10
        return f">= {need}x db_worker", rate >= need * one
    return "", None


# -- main ---------------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="smaller counts, shorter idle window")
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    p.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    p.add_argument("--noop", type=int, help="noop tasks per run (default 2000, quick 400)")
    p.add_argument("--sleep", type=int, help="50 ms tasks per run (default 400, quick 120)")
    p.add_argument("--idle", type=float, help="idle CPU window, s (default 20, quick 5)")
    p.add_argument("--settle", type=float, default=3.0, help="idle: wait before measuring, s")
    p.add_argument("--repeat", type=int, default=1, help="runs per row, median reported")
    p.add_argument("--timeout", type=float, default=300.0, help="give up on a run after, s")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    options = p.parse_args()
    options.noop = options.noop or (400 if options.quick else 2000)
    options.sleep = options.sleep or (120 if options.quick else 400)
    options.idle = options.idle or (5.0 if options.quick else 20.0)
    return options


def interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.strsignal(signum))


def main() -> int:
    options = arguments()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT: even if inherited ignored
        signal.signal(sig, interrupted)
    folder = Path(tempfile.mkdtemp(prefix="taskworker-bench-"))
    table = Table()
    interrupted_at = ""
    cpus = os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    django_world = "django.tasks" if importlib.util.find_spec("django.tasks") else "django_tasks"
    try:
        write_project(folder)
        if not options.no_sqlite:
            bench_database(sqlite_database(folder), options, table)
        if not options.no_postgres:
            with postgres_database(folder) as pg:
                if isinstance(pg, str):
                    say(f"postgresql: skipped: {pg}")
                    table.add("postgresql", "-", "-", "-", "-", "-", f"skipped: {pg}")
                else:
                    bench_database(pg, options, table)
    except KeyboardInterrupt:
        say("interrupted: stopping workers, removing the scratch database and folder")
        interrupted_at = " (INTERRUPTED: rows so far)"
    finally:
        kill_all()
        if options.keep:
            say(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(
        textwrap.dedent(f"""
        Task workers, CONN_MAX_AGE=0 in settings (ours forces persistent connections),
        {options.noop:,} noop / {options.sleep:,} x 50 ms tasks per run, median of {options.repeat},
        poll interval 0.1 s; {cpus} CPUs, load average at start {load}; tasks from {django_world}.
        tasks/s (steady) = between 10 % and 90 % done; wall s = worker start to all done;
        cpu ms/task = CPU of the worker processes per task in the steady window.
        """).strip()
        + interrupted_at
    )
    print()
    print(table.render())
    if table.misses:
        print("\nmissed targets: " + "; ".join(table.misses))
    return 130 if interrupted_at else 1 if table.misses else 0


if __name__ == "__main__":
    sys.exit(main())
