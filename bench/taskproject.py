"""The throwaway Django project the task-worker benchmarks run in, on SQLite and PostgreSQL.

Why this exists
---------------
``bench/taskworker.py`` (throughput) and ``bench/latency.py`` (enqueue to start, idle load)
measure the same two workers on the same project: a tiny app ``benchapp`` whose tasks record
each run, a settings module per ``CONN_MAX_AGE``, a SQLite file or a scratch PostgreSQL
database, and one exactly-once check. Kept here once, so both scripts judge a worker the same
way and each holds only what it measures.

* ``write_project``: ``benchapp`` (tasks ``noop(n)`` and ``sleep50(n)``, each appending ``n``
  to the runs file named by ``$BENCH_RUNS``), ``manage.py``, the app ``benchcount`` and the
  script's own files;
* ``sqlite_database`` / ``postgres_database``: a `Database` with its settings modules, a
  connection of the bench's own for polling, and, on PostgreSQL, the server's transaction
  count for the scratch database (created here, dropped on the way out);
* ``Database.exactly_once``: every result SUCCESSFUL with one worker id, each run recorded once;
* ``benchcount``: with ``$BENCH_COUNT_DIR`` set, every process of the project counts the
  statements its Django connections execute (``execute_wrapper``; on SQLite also every
  statement the library runs, COMMIT included) in a file per process, rewritten on each one,
  so a count can be read at any moment (`statement_counts`);
* ``db_worker_argv`` / ``ours_argv`` and ``start``: the two workers, logging to a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.harness import PG_DSN, REPO, Reaper

TABLE = "django_tasks_database_dbtaskresult"
APPS = ["django_tasks_db", "benchapp"]

SETTINGS = """\
import importlib.util

SECRET_KEY = "bench"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = (
    ["django_tasks"] if importlib.util.find_spec("django.tasks") is None else []
) + {apps!r}
TASKS = {{"default": {{"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}}}
DATABASES = {{"default": {database!r}}}
"""

TASKS = """\
import os
import time

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task


def ran(n):
    \"\"\"One line per run in the runs file: what tells a task run twice from one run once.\"\"\"
    fd = os.open(os.environ["BENCH_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"%d\\n" % n)
    finally:
        os.close(fd)


@task()
def noop(n):
    ran(n)


@task()
def sleep50(n):
    time.sleep(0.05)
    ran(n)
"""

COUNTING = """\
\"\"\"With $BENCH_COUNT_DIR set, this process's statements, counted in a file of its own:
"<Django statements> <SQLite statements>", rewritten in place after each one.\"\"\"

import os
import threading

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class Counting(AppConfig):
    name = "benchcount"

    def ready(self):
        folder = os.environ.get("BENCH_COUNT_DIR")
        if folder:
            connection_created.connect(Counter(folder).attach, weak=False)


class Counter:
    def __init__(self, folder):
        path = os.path.join(folder, str(os.getpid()))
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.counts = [0, 0]
        self.lock = threading.Lock()
        self.write()

    def write(self):
        os.pwrite(self.fd, b"%20d %20d\\n" % tuple(self.counts), 0)

    def add(self, which):
        with self.lock:
            self.counts[which] += 1
            self.write()

    def attach(self, sender, connection, **kwargs):
        if self.django not in connection.execute_wrappers:  # it outlives a reconnect
            connection.execute_wrappers.append(self.django)
        if connection.vendor == "sqlite":
            connection.connection.set_trace_callback(lambda sql: self.add(1))

    def django(self, execute, sql, params, many, context):
        self.add(0)
        return execute(sql, params, many, context)
"""

MANAGE = """\
import sys

from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""


def write_project(folder: Path, files: dict[str, str]) -> None:
    """The apps, manage.py, and ``files`` (name -> source) of the script at the top."""
    for app, sources in (("benchapp", {"tasks.py": TASKS}), ("benchcount", {"apps.py": COUNTING})):
        (folder / app).mkdir()
        (folder / app / "__init__.py").write_text("")
        for name, source in sources.items():
            (folder / app / name).write_text(source)
    for name, source in {"manage.py": MANAGE, **files}.items():
        (folder / name).write_text(source)


def statement_counts(folder: Path) -> tuple[int, int]:
    """(Django statements, SQLite statements) of every process that counted into ``folder``."""
    django = engine = 0
    for path in folder.iterdir():
        words = path.read_text().split()
        if len(words) == 2:
            django += int(words[0])
            engine += int(words[1])
    return django, engine


class Conn(Protocol):
    def execute(self, sql: str, /) -> Any: ...

    def close(self) -> None: ...


@dataclass
class Database:
    """One database under test: a settings module per CONN_MAX_AGE, a connection for polling,
    and on PostgreSQL the server's count of transactions in it."""

    name: str
    folder: Path
    connect: Callable[[], Conn]
    truncate: str
    transactions: Callable[[], int] | None = None
    conn: Conn | None = None

    def write_settings(
        self, database: dict[str, Any], ages: tuple[int, ...], apps: list[str]
    ) -> None:
        for age in ages:
            module = self.folder / f"settings_{self.name}_{age}.py"
            settings = {**database, "CONN_MAX_AGE": age}
            module.write_text(SETTINGS.format(database=settings, apps=apps))

    def env(self, age: int = 0, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = f"settings_{self.name}_{age}"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.folder), str(REPO), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        env["BENCH_RUNS"] = str(self.runs_file)
        env.update(extra)
        return env

    @property
    def runs_file(self) -> Path:
        return self.folder / f"runs-{self.name}.txt"

    def django(self, *args: str, age: int = 0) -> None:
        subprocess.run(
            [sys.executable, *args],
            cwd=self.folder,
            env=self.env(age),
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

    def ran(self) -> int:
        """Runs recorded in the runs file: progress read without touching the database."""
        with contextlib.suppress(FileNotFoundError):
            return self.runs_file.read_bytes().count(b"\n")
        return 0

    def reset(self) -> None:
        self.query(self.truncate)
        self.runs_file.unlink(missing_ok=True)

    def exactly_once(self, count: int) -> str:
        """ "" when every task is SUCCESSFUL, ran by one worker id and recorded one run."""
        problems = []
        results = self.query(f"SELECT status, worker_ids FROM {TABLE}")
        statuses = Counter(status for status, _ in results)
        if statuses != Counter({"SUCCESSFUL": count}):
            problems.append(", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
        ids = [w if isinstance(w, list) else json.loads(w) for _, w in results]
        several = sum(1 for w in ids if len(w) != 1)
        if several:
            problems.append(f"{several} without exactly one worker id")
        text = self.runs_file.read_text() if self.runs_file.exists() else ""
        runs = Counter(int(n) for n in text.split())
        twice = sum(1 for n in runs.values() if n > 1)
        if twice:
            problems.append(f"{twice} ran twice")
        if len(runs) != count:
            problems.append(f"{count - len(runs)} never ran")
        return "; ".join(problems)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


def sqlite_database(
    folder: Path, ages: tuple[int, ...], apps: list[str] = APPS, *, wal: bool = False
) -> Database:
    """Django's default journal, or WAL as ``--check`` suggests (``init_command``)."""
    name = "sqlite_wal" if wal else "sqlite"
    path = folder / f"{name}.sqlite3"

    def connect() -> Conn:
        return sqlite3.connect(path, timeout=20, isolation_level=None)

    options: dict[str, Any] = {"timeout": 20}
    if wal:
        options["init_command"] = "PRAGMA journal_mode=WAL;"
    database = Database(name, folder, connect, f"DELETE FROM {TABLE}")
    database.write_settings(
        {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": options},
        ages,
        apps,
    )
    return database


@contextlib.contextmanager
def postgres_database(
    folder: Path, ages: tuple[int, ...], apps: list[str] = APPS
) -> Iterator[Database | str]:
    """A scratch database ``prodserver_bench_<pid>``, dropped on the way out; a string says
    why there is none."""
    try:
        import psycopg
    except ImportError:
        yield "psycopg not installed (.venv/bin/pip install 'psycopg[binary]')"
        return
    name = f"prodserver_bench_{os.getpid()}"
    try:
        admin = psycopg.connect(f"{PG_DSN} dbname=postgres", autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        yield f"no server ({PG_DSN}): {str(e).strip().splitlines()[0]}"
        return
    try:
        admin.execute(f'CREATE DATABASE "{name}"')

        def connect() -> Conn:
            return psycopg.connect(f"{PG_DSN} dbname={name}", autocommit=True)

        def transactions() -> int:
            """Commits and rollbacks in the scratch database, read from another one."""
            row = admin.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                (name,),
            ).fetchone()
            return int(row[0]) if row else 0

        database = Database("postgresql", folder, connect, f"TRUNCATE {TABLE}", transactions)
        database.write_settings(
            {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": name,
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": "5432",
            },
            ages,
            apps,
        )
        try:
            yield database
        finally:
            database.close()
    finally:
        with contextlib.suppress(psycopg.Error):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# -- the workers ---------------------------------------------------------------------------------


def db_worker_argv(*options: str) -> list[str]:
    """django-tasks-db's ``manage.py db_worker`` on the default queue."""
    return [
        sys.executable,
        "manage.py",
        "db_worker",
        "--no-reload",
        "--no-startup-delay",
        *options,
        "--queue-name",
        "default",
    ]


def ours_argv(*options: str) -> list[str]:
    return [sys.executable, "-m", "backends.taskworker", *options]


def start(
    reaper: Reaper, database: Database, argvs: list[list[str]], env: dict[str, str], log: Path
) -> list[subprocess.Popen[bytes]]:
    """Each argv in the project's folder, in its own session, output appended to ``log``."""
    with log.open("ab") as out:
        return [
            reaper.start(
                argv,
                cwd=database.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            for argv in argvs
        ]
